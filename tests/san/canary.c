/* Proves, before a sanitizer run, that reports reach the directory
 * tests/run.sh checks afterwards: `canary leak` leaks a block (LSan at
 * exit), `canary heap` reads past a block (ASan), `canary ub` overflows a
 * signed int (UBSan); each of those is fatal. Built only by
 * SAN=1; without this a clean check could mean reports went elsewhere. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *volatile canary_sink;

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "leak") == 0) {
        canary_sink = malloc(42);
        canary_sink = NULL; /* the only pointer is gone: a direct leak */
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "heap") == 0) {
        char *volatile p = malloc(8);
        printf("%d\n", p[8]); /* one past the end */
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "ub") == 0) {
        volatile int big = INT_MAX;
        printf("%d\n", big + argc); /* signed overflow */
        return 0;
    }
    fprintf(stderr, "usage: canary leak|heap|ub\n");
    return 2;
}
