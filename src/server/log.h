/* One line per event on stderr, plain or JSON; level set at start. */
#ifndef SBX_LOG_H
#define SBX_LOG_H

enum { SBX_LOG_ERROR = 0, SBX_LOG_WARN, SBX_LOG_INFO, SBX_LOG_DEBUG };
void sbx_log_setup(int level, int json);
void sbx_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
