/* Logging: rank-prefixed lines on stderr, filtered by RDX_LOG. */
#ifndef RDX_LOG_H
#define RDX_LOG_H

#include <stdarg.h>

typedef enum {
    RDX_LOG_ERROR = 0,
    RDX_LOG_WARN,
    RDX_LOG_INFO,
    RDX_LOG_DEBUG,
    RDX_LOG_TRACE
} rdx_log_level_t;

/* Called by rdx_comm_init once rank is known; before that lines say "rank ?". */
void rdx_log_set_level(rdx_log_level_t level);
void rdx_log_set_rank(int rank);
rdx_log_level_t rdx_log_level(void);
/* Parses "error|warn|info|debug|trace"; returns -1 if unknown. */
int rdx_log_level_parse(const char *s);

void rdx_log_write(rdx_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define RDX_LOG_AT(lvl, ...)                                                   \
    do {                                                                       \
        if ((lvl) <= rdx_log_level())                                          \
            rdx_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);             \
    } while (0)

#define rdx_log_error(...) RDX_LOG_AT(RDX_LOG_ERROR, __VA_ARGS__)
#define rdx_log_warn(...)  RDX_LOG_AT(RDX_LOG_WARN, __VA_ARGS__)
#define rdx_log_info(...)  RDX_LOG_AT(RDX_LOG_INFO, __VA_ARGS__)
#define rdx_log_debug(...) RDX_LOG_AT(RDX_LOG_DEBUG, __VA_ARGS__)
#define rdx_log_trace(...) RDX_LOG_AT(RDX_LOG_TRACE, __VA_ARGS__)

#endif
