/* Stall reports at a timeout: a mismatch that exchanges no message, told from a hang. */
#ifndef RDX_COMM_STALL_H
#define RDX_COMM_STALL_H

#include <stdbool.h>
#include <stddef.h>

#include "rdx/rdx.h"

#define RDX_STALL_REPORT_MAX 256 /* = RDX_BS_STALL_MAX */

struct rdx_comm;

/* Called once when comm's wait in `label` (a point-to-point call if p2p) has made no
 * progress for RDX_TIMEOUT_MS. Reports the stall to
 * the root and waits (bounded) for its verdict. Returns the job's verdict (RDX_ERR_MISMATCH
 * naming who waits where, or another rank's failure; the last error says it), or
 * RDX_SUCCESS when there is none: the caller then reports its own timeout, appending hint
 * (the root's who-waits-where; empty on other ranks). */
rdx_status_t rdx_comm_stall(struct rdx_comm *comm, const char *label, bool p2p, char *hint,
                            size_t hint_len);

/* The root's comparison, on its own for tests: reports[r] is rank r's report text ("<comm
 * id hex> <c|p|b> <label>": collective, point-to-point, bootstrap collective; NULL if none).
 * Writes who waits where into out ("ranks 0-1 wait in X; rank 2 waits in Y; rank 3 reported
 * no stall ..."). RDX_ERR_MISMATCH if two ranks of one communicator wait in different calls
 * (not both point-to-point) or one waits in a bootstrap collective, else RDX_SUCCESS. */
rdx_status_t rdx_stall_verdict(int n, const char *const *reports, char *out, size_t len);

/* How long rank 0 collects reports (a quarter of RDX_TIMEOUT_MS, 0.1-5 s); a non-root waits
 * twice that for the verdict. */
long rdx_comm_stall_wait_ms(const struct rdx_comm *comm);

#endif
