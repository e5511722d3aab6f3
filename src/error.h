/*
 * Error recording. The layer that sees a failure calls rdx_err() once, with the cause
 * (strerror, ibv_wc_status_str, ucs_status_string) and the peer; the message is kept in a
 * thread-local buffer and logged at debug. The public API copies it into the communicator
 * (rdx_comm_last_error) and logs it at error, prefixed with the operation.
 */
#ifndef RDX_ERROR_H
#define RDX_ERROR_H

#include "rdx/rdx.h"

#define RDX_ERRMSG_MAX 512

/* Records "fmt..." as the last error of this thread and returns st. */
rdx_status_t rdx_err(rdx_status_t st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message recorded by the last rdx_err() on this thread ("" if none). */
const char *rdx_err_last(void);
void rdx_err_clear(void);

/* Propagate a failing status upward, leaving a breadcrumb at trace level. */
#define RDX_CHECK(call)                                                        \
    do {                                                                       \
        rdx_status_t rdx_check_st_ = (call);                                   \
        if (rdx_check_st_ != RDX_SUCCESS) {                                    \
            rdx_log_trace("%s failed: %s", #call, rdx_strerror(rdx_check_st_)); \
            return rdx_check_st_;                                              \
        }                                                                      \
    } while (0)

#endif
