/*
 * vt.h: what the verbs test programs share. Ranks are forked processes (forked before any
 * verbs call) that meet through the real bootstrap on a free loopback port and open the
 * verbs transport with settings from the environment (RDX_CHUNK_BYTES, RDX_SLOTS, RDX_IB_*).
 * The parent kills any rank still alive after the deadline: a hang is a failure.
 */
#ifndef RDX_TESTS_VERBS_VT_H
#define RDX_TESTS_VERBS_VT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "src/bootstrap.h"
#include "src/config.h"
#include "src/error.h"
#include "src/log.h"
#include "transport/transport.h"
#include "transport/verbs.h"

#define VT_KILL_GRACE_S 15

static inline double vt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "127.0.0.1:PORT" with a port the kernel just handed out (free, barring a race). */
static inline void vt_free_addr(char *addr, size_t len)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("vt_free_addr");
        exit(2);
    }
    close(fd);
    snprintf(addr, len, "127.0.0.1:%d", ntohs(sa.sin_port));
}

/* One rank's communication context. */
typedef struct vt_rank {
    int rank;
    int size;
    rdx_settings_t set;
    rdx_bootstrap_t *bs;
    rdx_tp_t *tp;
    const rdx_tp_ops_t *ops;
    rdx_tp_props_t props;
} vt_rank_t;

/* Settings from the environment and a bootstrap; *st_create gets the transport's status. */
static inline int vt_rank_open(vt_rank_t *v, int rank, int size, const char *addr,
                               int deadline_s, rdx_status_t *st_create)
{
    memset(v, 0, sizeof(*v));
    v->rank = rank;
    v->size = size;
    v->ops = &rdx_tp_verbs_ops;
    if (rdx_settings_from_env(&v->set) != RDX_SUCCESS) {
        fprintf(stderr, "rank %d: settings: %s\n", rank, rdx_err_last());
        return -1;
    }
    if (v->set.spin_us < 0)
        v->set.spin_us = RDX_SPIN_US_DEDICATED; /* "auto" is resolved by a communicator */
    rdx_log_set_rank(rank);
    rdx_log_set_level((rdx_log_level_t)v->set.log_level);
    rdx_bootstrap_params_t bp = {.rank = rank, .size = size, .addr = addr, .job_key = "",
                                 .ifname = "", .connect_timeout_ms = 30000,
                                 .timeout_ms = 1000L * deadline_s};
    if (rdx_bootstrap_create(&bp, &v->bs) != RDX_SUCCESS) {
        fprintf(stderr, "rank %d: FAIL bootstrap: %s\n", rank, rdx_err_last());
        return -1;
    }
    rdx_tp_params_t tpp = {.rank = rank, .size = size, .slot_bytes = v->set.chunk_bytes,
                           .slots = v->set.slots, .pool_bytes = v->set.pool_mb << 20,
                           .bs = v->bs, .settings = &v->set};
    *st_create = v->ops->create(&tpp, &v->tp);
    if (*st_create == RDX_SUCCESS)
        v->ops->props(v->tp, &v->props);
    return 0;
}

static inline void vt_rank_close(vt_rank_t *v)
{
    if (v->tp)
        v->ops->destroy(v->tp);
    if (v->bs)
        rdx_bootstrap_destroy(v->bs);
    v->tp = NULL;
    v->bs = NULL;
}

/* Forks n ranks running fn(rank, arg) (its return value is the exit status), waits for all,
 * kills the survivors VT_KILL_GRACE_S after the deadline. Returns 0 iff all exited 0. */
static inline int vt_spawn(int n, int deadline_s, int (*fn)(int rank, void *arg), void *arg)
{
    pid_t *pids = calloc((size_t)n, sizeof(*pids));
    int failed = 0, left = 0;
    fflush(NULL);
    for (int r = 0; r < n; r++) {
        pids[r] = fork();
        if (pids[r] < 0) {
            perror("fork");
            failed = 1;
            break;
        }
        if (pids[r] == 0) {
            int rc = fn(r, arg);
            fflush(NULL);
            _exit(rc);
        }
        left++;
    }
    double kill_at = vt_now() + deadline_s + VT_KILL_GRACE_S;
    while (left > 0) {
        int status, r = -1;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            left--;
            for (int i = 0; i < n; i++)
                if (pids[i] == pid)
                    r = i;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "rank %d failed (%s %d)\n", r,
                        WIFEXITED(status) ? "exit" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                failed = 1;
            }
            continue;
        }
        if (vt_now() > kill_at) {
            fprintf(stderr, "FAIL: ranks still running %d s after the %d s deadline: killing "
                    "them (a hang)\n", VT_KILL_GRACE_S, deadline_s);
            for (int i = 0; i < n; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGKILL);
            kill_at = vt_now() + 3600;
            failed = 1;
        }
        usleep(20000);
    }
    free(pids);
    return failed;
}

#endif
