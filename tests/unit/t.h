/* Minimal unit-test harness: one "ok"/"not ok" line per check, counted by
 * tests/run.sh. */
#ifndef SBX_T_H
#define SBX_T_H
#include <stdio.h>
#include <string.h>

static int t_failed_;

#define T_OK(cond, ...)                                                                          \
    do {                                                                                         \
        if (cond) {                                                                              \
            printf("ok - ");                                                                     \
        } else {                                                                                 \
            t_failed_++;                                                                         \
            printf("not ok - %s:%d: ", __FILE__, __LINE__);                                      \
        }                                                                                        \
        printf(__VA_ARGS__);                                                                     \
        printf("\n");                                                                            \
    } while (0)

#define T_STREQ(a, b, ...)                                                                       \
    do {                                                                                         \
        const char *t_a_ = (a), *t_b_ = (b);                                                     \
        int t_eq_ = t_a_ && t_b_ && strcmp(t_a_, t_b_) == 0;                                     \
        T_OK(t_eq_, __VA_ARGS__);                                                                \
        if (!t_eq_)                                                                              \
            printf("#   got \"%s\", want \"%s\"\n", t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)"); \
    } while (0)

#define T_DONE() return t_failed_ ? 1 : 0
#endif
