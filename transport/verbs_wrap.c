/*
 * Thin libibverbs wrappers: the one place that turns verbs failures (errno) into rdx
 * statuses with a message naming rank, peer and operation, and that writes out the queue
 * pair state machine with its attribute masks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "src/error.h"
#include "src/log.h"
#include "transport/verbs.h"

#define RDX_CAP_IPC_LOCK 14 /* linux/capability.h; no libcap dependency for one bit */

rdx_status_t rdx_verbs_fork_init(int rank)
{
    /* Kernels >= 5.13 keep registered pages safe across fork by themselves; there
     * ibv_fork_init() would only add an madvise per registration. */
    enum ibv_fork_status fs = ibv_is_fork_initialized();
    if (fs == IBV_FORK_UNNEEDED || fs == IBV_FORK_ENABLED)
        return RDX_SUCCESS;
    int rc = ibv_fork_init();
    if (rc != 0)
        return rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: ibv_fork_init: %s", rank,
                       strerror(rc > 0 ? rc : errno));
    rdx_log_debug("verbs: ibv_fork_init done (kernel lacks fork-safe pinning)");
    return RDX_SUCCESS;
}

bool rdx_verbs_has_ipc_lock(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    bool has = false;
    if (!f)
        return false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long caps;
        if (sscanf(line, "CapEff: %llx", &caps) == 1) {
            has = (caps >> RDX_CAP_IPC_LOCK) & 1;
            break;
        }
    }
    fclose(f);
    return has;
}

static rdx_status_t memlock_error(int rank, size_t bytes, unsigned long long limit)
{
    return rdx_err(RDX_ERR_NO_MEMORY,
                   "rank %d: verbs: registering %zu KiB needs that much locked memory, but "
                   "RLIMIT_MEMLOCK is %llu KiB: raise it with `ulimit -l unlimited` (or "
                   "\"* - memlock unlimited\" in /etc/security/limits.conf, "
                   "LimitMEMLOCK=infinity for systemd, --ulimit memlock=-1 for docker), or "
                   "lower RDX_POOL_MB / RDX_CHUNK_BYTES / RDX_SLOTS",
                   rank, (bytes + 1023) / 1024, limit / 1024);
}

rdx_status_t rdx_verbs_memlock_check(int rank, size_t bytes)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= bytes)
        return RDX_SUCCESS;
    if (rdx_verbs_has_ipc_lock()) {
        rdx_log_debug("verbs: RLIMIT_MEMLOCK %llu KiB < %zu KiB, but CAP_IPC_LOCK lifts it",
                      (unsigned long long)rl.rlim_cur / 1024, bytes / 1024);
        return RDX_SUCCESS;
    }
    return memlock_error(rank, bytes, (unsigned long long)rl.rlim_cur);
}

rdx_status_t rdx_verbs_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, int rank,
                              const char *what, struct ibv_mr **mr)
{
    struct ibv_mr *m = ibv_reg_mr(pd, addr, len, access);
    if (m) {
        *mr = m;
        return RDX_SUCCESS;
    }
    int e = errno;
    struct rlimit rl;
    if ((e == ENOMEM || e == EPERM || e == EAGAIN) && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY && !rdx_verbs_has_ipc_lock())
        return memlock_error(rank, len, (unsigned long long)rl.rlim_cur);
    return rdx_err(e == ENOMEM ? RDX_ERR_NO_MEMORY : RDX_ERR_TRANSPORT,
                   "rank %d: verbs: ibv_reg_mr(%s, %zu bytes): %s", rank, what, len,
                   strerror(e));
}

static rdx_status_t qp_modify(struct ibv_qp *qp, struct ibv_qp_attr *attr, int mask,
                              const char *state, int rank, int peer)
{
    int rc = ibv_modify_qp(qp, attr, mask);
    if (rc == 0)
        return RDX_SUCCESS;
    return rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: QP 0x%x to %s: %s", rank, peer,
                   qp->qp_num, state, strerror(rc > 0 ? rc : errno));
}

rdx_status_t rdx_verbs_qp_init(struct ibv_qp *qp, uint8_t port, int rank, int peer)
{
    struct ibv_qp_attr attr = {
        .qp_state = IBV_QPS_INIT,
        .pkey_index = 0,
        .port_num = port,
        /* Peers only ever WRITE into our slots (and credits are SENDs). */
        .qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE,
    };
    int mask = IBV_QP_STATE |
               IBV_QP_PKEY_INDEX |
               IBV_QP_PORT |
               IBV_QP_ACCESS_FLAGS;
    return qp_modify(qp, &attr, mask, "INIT", rank, peer);
}

rdx_status_t rdx_verbs_qp_rtr(struct ibv_qp *qp, const rdx_verbs_path_t *path, int rank, int peer)
{
    struct ibv_qp_attr attr = {
        .qp_state = IBV_QPS_RTR,
        .path_mtu = path->mtu,
        .dest_qp_num = path->remote_qpn,
        .rq_psn = path->remote_psn,
        .max_dest_rd_atomic = 1,
        .min_rnr_timer = 12, /* 0.64 ms: receives are reposted at once, RNR is rare */
        .ah_attr = {
            .dlid = path->dlid,
            .sl = path->sl,
            .src_path_bits = 0,
            .is_global = path->is_global,
            .port_num = path->port,
        },
    };
    if (path->is_global) {
        attr.ah_attr.grh.dgid = path->dgid;
        attr.ah_attr.grh.sgid_index = (uint8_t)path->sgid_index;
        attr.ah_attr.grh.hop_limit = 64;
        attr.ah_attr.grh.traffic_class = path->traffic_class;
        attr.ah_attr.grh.flow_label = 0;
    }
    int mask = IBV_QP_STATE |
               IBV_QP_AV |
               IBV_QP_PATH_MTU |
               IBV_QP_DEST_QPN |
               IBV_QP_RQ_PSN |
               IBV_QP_MAX_DEST_RD_ATOMIC |
               IBV_QP_MIN_RNR_TIMER;
    return qp_modify(qp, &attr, mask, "RTR", rank, peer);
}

rdx_status_t rdx_verbs_qp_rts(struct ibv_qp *qp, const rdx_verbs_path_t *path, int rank, int peer)
{
    struct ibv_qp_attr attr = {
        .qp_state = IBV_QPS_RTS,
        .timeout = path->timeout,
        .retry_cnt = path->retry_cnt,
        .rnr_retry = 7, /* 7 = retry forever: the peer reposts, it is only late */
        .sq_psn = path->local_psn,
        .max_rd_atomic = 1,
    };
    int mask = IBV_QP_STATE |
               IBV_QP_TIMEOUT |
               IBV_QP_RETRY_CNT |
               IBV_QP_RNR_RETRY |
               IBV_QP_SQ_PSN |
               IBV_QP_MAX_QP_RD_ATOMIC;
    return qp_modify(qp, &attr, mask, "RTS", rank, peer);
}
