/*
 * Sub-communicators (rdx_comm_split) and what the communicator lifecycle must do for them.
 * A child shares its parent's transport and bootstrap: it owns only its request queue and
 * its rank -> transport peer map.
 */
#ifndef RDX_COMM_SPLIT_H
#define RDX_COMM_SPLIT_H

#include <stdbool.h>
#include "src/comm.h"

/* rdx_comm_destroy of a communicator with comm->parent != NULL: frees what the child owns
 * (never the shared transport/bootstrap) and drops the parent's child count. */
rdx_status_t rdx_comm_split_destroy(rdx_comm_t *child);

/* For rdx_comm_destroy of any communicator: RDX_ERR_INVALID_ARG (with the reason recorded)
 * while sub-communicators split from comm are alive, because they use its transport. */
rdx_status_t rdx_comm_split_check_destroy(const rdx_comm_t *comm);

/* True when comm or a communicator it was split from has a collective outstanding: posting
 * one on comm now would interleave two communicators' messages on the shared FIFOs. */
bool rdx_comm_split_busy(const rdx_comm_t *comm);

#endif
