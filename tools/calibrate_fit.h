/* rdx-info --calibrate, second half: per-algorithm measured factors (calibrate_fit.c). */
#ifndef RDX_TOOLS_CALIBRATE_FIT_H
#define RDX_TOOLS_CALIBRATE_FIT_H

#include <stdio.h>

#include "collectives/coll.h"
#include "rdx/rdx.h"

/* Collective over comm: takes rank 0's alpha/overhead/beta/gamma in *m (broadcast to all),
 * times each allreduce algorithm at rdx_coll_fit_bytes, and fills m->fit and m->fit_ranks.
 * Rank 0 writes a line per algorithm to report (may be NULL). Restores comm's RDX_ALGO. */
rdx_status_t rdx_info_fit(rdx_comm_t *comm, rdx_coll_model_t *m, FILE *report);

#endif
