/* Rank-prefixed logging on stderr. One write(2) per line so ranks sharing a terminal
 * or a pipe never interleave within a line. */
#include "src/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

static rdx_log_level_t g_level = RDX_LOG_WARN;
static int g_rank = -1;

static const char *const g_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

void rdx_log_set_level(rdx_log_level_t level) { g_level = level; }
void rdx_log_set_rank(int rank) { g_rank = rank; }
rdx_log_level_t rdx_log_level(void) { return g_level; }

int rdx_log_level_parse(const char *s)
{
    static const char *const lower[] = {"error", "warn", "info", "debug", "trace"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(s, lower[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return RDX_LOG_WARN;
    return -1;
}

void rdx_log_write(rdx_log_level_t level, const char *file, int line, const char *fmt, ...)
{
    char buf[1024];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    int n;
    if (g_rank >= 0)
        n = snprintf(buf, sizeof(buf), "rdx %ld.%06ld rank %d %s ", (long)tv.tv_sec % 100000,
                     (long)tv.tv_usec, g_rank, g_names[level]);
    else
        n = snprintf(buf, sizeof(buf), "rdx %ld.%06ld rank ? %s ", (long)tv.tv_sec % 100000,
                     (long)tv.tv_usec, g_names[level]);
    if (level >= RDX_LOG_DEBUG && n < (int)sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s:%d ", base, line);
    va_list ap;
    va_start(ap, fmt);
    if (n < (int)sizeof(buf))
        n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
}
