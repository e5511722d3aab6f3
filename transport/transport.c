/* Transport registry: the one place that knows which backends exist. */
#include "transport/transport.h"

const rdx_tp_ops_t *rdx_tp_lookup(int kind)
{
    switch (kind) {
    case RDX_TRANSPORT_UCX:
        return &rdx_tp_ucx_ops;
#ifdef RDX_HAVE_VERBS
    case RDX_TRANSPORT_VERBS:
        return &rdx_tp_verbs_ops;
#endif
    default:
        return NULL;
    }
}
