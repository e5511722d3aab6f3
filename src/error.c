/* Status strings and the per-thread "last error" message. */
#include "src/error.h"

#include <stdarg.h>
#include <stdio.h>

#include "src/log.h"

static _Thread_local char g_last[RDX_ERRMSG_MAX];

const char *rdx_strerror(rdx_status_t status)
{
    switch (status) {
    case RDX_SUCCESS: return "success";
    case RDX_ERR_INVALID_ARG: return "invalid argument";
    case RDX_ERR_NO_MEMORY: return "out of memory";
    case RDX_ERR_CONFIG: return "bad configuration";
    case RDX_ERR_BOOTSTRAP: return "bootstrap failed";
    case RDX_ERR_TRANSPORT: return "transport error";
    case RDX_ERR_TIMEOUT: return "timed out";
    case RDX_ERR_PEER_LOST: return "peer lost";
    case RDX_ERR_MISMATCH: return "collective mismatch across ranks";
    case RDX_ERR_UNSUPPORTED: return "unsupported";
    case RDX_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

rdx_status_t rdx_err(rdx_status_t st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last, sizeof(g_last), fmt, ap);
    va_end(ap);
    rdx_log_debug("error recorded (%s): %s", rdx_strerror(st), g_last);
    return st;
}

const char *rdx_err_last(void) { return g_last; }
void rdx_err_clear(void) { g_last[0] = '\0'; }
