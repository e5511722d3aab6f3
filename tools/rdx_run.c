/*
 * rdx-run: start N local ranks of a program, like mpirun or torchrun on one machine.
 *
 * Each rank gets RDX_RANK, RDX_SIZE, RDX_LOCAL_RANK, RDX_ADDR (a free port on 127.0.0.1)
 * and RDX_JOB_KEY (fresh and random, so a stray process cannot join), plus RDX_TRANSPORT
 * when --transport is given. Output is relayed line by line with a "[R] " prefix on the
 * stream it came from. The first rank to fail (non-zero exit or signal) is reported and
 * the others are stopped: SIGTERM, then SIGKILL after 3 s.
 *
 * Every rank runs in its own process group, so a terminal's Ctrl-C reaches only rdx-run,
 * which forwards it exactly once per rank group (grandchildren included: a `sh -c` rank's
 * children stop with it). One poll() loop watches the output pipes and a self-pipe fed by
 * the signal handlers (SIGCHLD, SIGINT, SIGTERM, SIGHUP): no work happens in handlers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/net.h"

#define RUN_MAX_RANKS 1024
#define RUN_KILL_GRACE_MS 3000
#define RUN_ORPHAN_GRACE_MS 200  /* after the last exit, wait this long for pipes to close */
#define RUN_READ_CHUNK 65536
#define RUN_LINE_MAX (1 << 20)   /* a longer line is cut into pieces of this size */
#define RUN_EXIT_USAGE 2
#define RUN_EXIT_NOT_FOUND 127
#define RUN_EXIT_TIMEOUT 124

typedef struct run_opts {
    int n;
    const char *transport; /* NULL: inherit */
    int tag;
    double timeout_s;      /* 0: none */
    char **argv;           /* PROGRAM ARGS..., NULL-terminated */
} run_opts_t;

typedef struct run_stream {
    int fd;     /* read end of the rank's pipe; -1 at EOF */
    int out_fd; /* where its lines go: 1 or 2 */
    char *buf;
    size_t len;
    size_t cap;
} run_stream_t;

typedef struct run_rank {
    pid_t pid; /* also its process group */
    int reaped;
    run_stream_t streams[2];
} run_rank_t;

typedef struct run_state {
    run_opts_t opt;
    run_rank_t *ranks;
    int live;          /* ranks not yet reaped */
    int first_fail;    /* rank, or -1 */
    int exit_code;
    int timed_out;
    int signals_seen;
    long deadline;     /* --timeout, 0: none */
    long kill_at;      /* SIGKILL stragglers at this time, 0: not armed */
    long all_exited_at;
    struct rlimit saved_nofile;
} run_state_t;

static int g_sig_pipe[2] = {-1, -1};

/* ---- usage ------------------------------------------------------------------------------ */

static void run_usage(FILE *out)
{
    fprintf(out,
            "usage: rdx-run -n N [--transport ucx|verbs] [--tag-output|--no-tag] "
            "[--timeout SECS] [--] PROGRAM [ARGS...]\n"
            "\n"
            "Starts N ranks of PROGRAM on this machine, each with RDX_RANK, RDX_SIZE,\n"
            "RDX_LOCAL_RANK, RDX_ADDR (a free port on 127.0.0.1) and a fresh RDX_JOB_KEY.\n"
            "PROGRAM is looked up in PATH, then next to rdx-run itself.\n"
            "\n"
            "  -n, --np N        number of ranks, 1..%d\n"
            "  --transport T     set RDX_TRANSPORT=T (ucx or verbs) for every rank;\n"
            "                    default: inherited from the environment\n"
            "  --tag-output      prefix each output line with \"[RANK] \" (default)\n"
            "  --no-tag          leave output untouched\n"
            "  --timeout SECS    stop all ranks after SECS seconds and exit %d\n"
            "  -h, --help        this text\n"
            "\n"
            "Exit status: 0 when every rank exits 0; else the first failing rank's code\n"
            "(128+N for signal N), %d on timeout, %d on usage errors, %d if PROGRAM is not "
            "found.\n",
            RUN_MAX_RANKS, RUN_EXIT_TIMEOUT, RUN_EXIT_TIMEOUT, RUN_EXIT_USAGE,
            RUN_EXIT_NOT_FOUND);
}

static void run_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "rdx-run: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n");
    run_usage(stderr);
    exit(RUN_EXIT_USAGE);
}

/* "--name VALUE" or "--name=VALUE" (and "-n4" for -n). NULL if a is not this option. */
static const char *run_opt_value(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t len = strlen(name);
    if (strncmp(a, name, len) != 0)
        return NULL;
    if (a[len] == '=')
        return a + len + 1;
    if (a[len] != '\0') {
        if (strcmp(name, "-n") == 0)
            return a + len;
        return NULL;
    }
    if (*i + 1 >= argc)
        run_usage_error("option %s needs a value", name);
    return argv[++*i];
}

static void run_parse_n(const char *v, run_opts_t *o)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 1 || n > RUN_MAX_RANKS)
        run_usage_error("-n must be an integer in 1..1024, not '%s'", v);
    o->n = (int)n;
}

static void run_parse_timeout(const char *v, run_opts_t *o)
{
    char *end;
    errno = 0;
    double t = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(t > 0) || t > 1e7)
        run_usage_error("--timeout needs a positive number of seconds, not '%s'", v);
    o->timeout_s = t;
}

static void run_parse_args(int argc, char **argv, run_opts_t *o)
{
    const char *v;
    int i = 1;
    *o = (run_opts_t){.n = 0, .tag = 1};
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            run_usage(stdout);
            exit(0);
        } else if ((v = run_opt_value(argc, argv, &i, "-n")) != NULL ||
                   (v = run_opt_value(argc, argv, &i, "--np")) != NULL ||
                   (v = run_opt_value(argc, argv, &i, "-np")) != NULL) {
            run_parse_n(v, o);
        } else if ((v = run_opt_value(argc, argv, &i, "--transport")) != NULL) {
            if (strcmp(v, "ucx") != 0 && strcmp(v, "verbs") != 0)
                run_usage_error("--transport must be ucx or verbs, not '%s'", v);
            o->transport = v;
        } else if ((v = run_opt_value(argc, argv, &i, "--timeout")) != NULL) {
            run_parse_timeout(v, o);
        } else if (strcmp(a, "--tag-output") == 0) {
            o->tag = 1;
        } else if (strcmp(a, "--no-tag") == 0) {
            o->tag = 0;
        } else {
            run_usage_error("unknown option '%s'", a);
        }
    }
    if (o->n == 0)
        run_usage_error("%s", "-n N is required");
    if (i >= argc)
        run_usage_error("%s", "no PROGRAM given");
    o->argv = argv + i;
}

/* ---- program lookup --------------------------------------------------------------------- */

static int run_is_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static char *run_join(const char *dir, size_t dlen, const char *name)
{
    size_t nlen = strlen(name);
    char *p = malloc(dlen + nlen + 2);
    if (p == NULL)
        return NULL;
    memcpy(p, dir, dlen);
    p[dlen] = '/';
    memcpy(p + dlen + 1, name, nlen + 1);
    return p;
}

/* PATH first (like a shell), then rdx-run's own directory, so `build/bin/rdx-run -n 2
 * rdx-perf` works without PATH. Returns a malloc'd path, or NULL. */
static char *run_find_program(const char *name)
{
    if (strchr(name, '/') != NULL)
        return strdup(name);
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *dir = path;; dir++) {
        const char *end = strchrnul(dir, ':');
        char *cand = end == dir ? run_join(".", 1, name) : run_join(dir, (size_t)(end - dir), name);
        if (cand != NULL && run_is_executable(cand))
            return cand;
        free(cand);
        if (*end == '\0')
            break;
        dir = end;
    }
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0)
        return NULL;
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return NULL;
    char *cand = run_join(self, (size_t)(slash - self), name);
    if (cand != NULL && run_is_executable(cand))
        return cand;
    free(cand);
    return NULL;
}

/* ---- output relay ----------------------------------------------------------------------- */

static void run_write_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* EPIPE (SIGPIPE is ignored): nobody reads our output any more */
        }
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

/* One writev per line, so lines of different ranks never interleave. */
static void run_emit_line(int rank, int out_fd, const char *line, size_t len, int add_newline)
{
    char prefix[16];
    int plen = snprintf(prefix, sizeof(prefix), "[%d] ", rank);
    struct iovec iov[3] = {{prefix, (size_t)plen}, {(void *)line, len}, {"\n", 1}};
    run_write_all(out_fd, iov, add_newline ? 3 : 2);
}

static void run_stream_emit(int rank, run_stream_t *s, int at_eof)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (nl == NULL)
            break;
        size_t end = (size_t)(nl - s->buf) + 1;
        run_emit_line(rank, s->out_fd, s->buf + start, end - start, 0);
        start = end;
    }
    /* A line longer than RUN_LINE_MAX, or a last line without newline, goes out as is. */
    if (s->len - start >= RUN_LINE_MAX || (at_eof && s->len > start)) {
        run_emit_line(rank, s->out_fd, s->buf + start, s->len - start, 1);
        start = s->len;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

static void run_stream_close(int rank, run_stream_t *s)
{
    run_stream_emit(rank, s, 1);
    close(s->fd);
    s->fd = -1;
}

/* Reads one chunk; returns 1 if more may be waiting, 0 otherwise. */
static int run_stream_read(int rank, run_stream_t *s)
{
    if (s->cap - s->len < RUN_READ_CHUNK) {
        size_t cap = s->len + RUN_READ_CHUNK;
        char *nb = realloc(s->buf, cap);
        if (nb == NULL) {
            run_stream_emit(rank, s, 1); /* out of memory: flush what we hold, keep going */
            return 1;
        }
        s->buf = nb;
        s->cap = cap;
    }
    ssize_t r = read(s->fd, s->buf + s->len, RUN_READ_CHUNK);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return errno == EINTR;
    if (r <= 0) {
        run_stream_close(rank, s);
        return 0;
    }
    s->len += (size_t)r;
    run_stream_emit(rank, s, 0);
    return 1;
}

/* Everything a rank wrote before it exited, so its last words precede our verdict. */
static void run_drain_rank(run_state_t *st, int rank)
{
    for (int k = 0; k < 2; k++) {
        run_stream_t *s = &st->ranks[rank].streams[k];
        while (s->fd >= 0 && run_stream_read(rank, s))
            ;
    }
}

/* ---- signals and children --------------------------------------------------------------- */

static void run_on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(g_sig_pipe[1], &b, 1);
    (void)w;
    errno = saved;
}

static int run_install_signals(void)
{
    if (pipe2(g_sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    struct sigaction sa = {.sa_handler = run_on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static void run_block_signals(int block, sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(block ? SIG_BLOCK : SIG_SETMASK, block ? &set : old, block ? old : NULL);
}

static const char *run_signame(int sig, char buf[32])
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev != NULL)
        snprintf(buf, 32, "SIG%s", abbrev);
    else
        snprintf(buf, 32, "%d", sig);
    return buf;
}

/* Signals every rank's process group (the rank and whatever it started). */
static void run_signal_all(run_state_t *st, int sig)
{
    for (int r = 0; r < st->opt.n; r++) {
        pid_t pid = st->ranks[r].pid;
        if (pid <= 0)
            continue;
        if (kill(-pid, sig) != 0 && !st->ranks[r].reaped)
            kill(pid, sig);
    }
}

static void run_terminate(run_state_t *st)
{
    run_signal_all(st, SIGTERM);
    if (st->kill_at == 0)
        st->kill_at = rdx_net_now_ms() + RUN_KILL_GRACE_MS;
}

static void run_note_exit(run_state_t *st, int rank, int status)
{
    char name[32];
    st->ranks[rank].reaped = 1;
    st->live--;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    if (st->first_fail >= 0 || st->timed_out)
        return; /* ranks we stopped, or after the first failure: only the first is news */
    run_drain_rank(st, rank);
    st->first_fail = rank;
    if (WIFEXITED(status)) {
        st->exit_code = WEXITSTATUS(status);
        fprintf(stderr, "rdx-run: rank %d exited with code %d\n", rank, st->exit_code);
    } else {
        st->exit_code = 128 + WTERMSIG(status);
        fprintf(stderr, "rdx-run: rank %d killed by signal %s\n", rank,
                run_signame(WTERMSIG(status), name));
    }
    if (st->live > 0) {
        fprintf(stderr, "rdx-run: stopping the other %d rank%s\n", st->live,
                st->live == 1 ? "" : "s");
        run_terminate(st);
    }
}

static void run_reap(run_state_t *st)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int r = 0; r < st->opt.n; r++)
            if (st->ranks[r].pid == pid && !st->ranks[r].reaped) {
                run_note_exit(st, r, status);
                break;
            }
    }
    if (st->live == 0 && st->all_exited_at == 0)
        st->all_exited_at = rdx_net_now_ms();
}

static void run_handle_signals(run_state_t *st)
{
    unsigned char sigs[64];
    ssize_t n;
    char name[32];
    while ((n = read(g_sig_pipe[0], sigs, sizeof(sigs))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (sigs[i] == SIGCHLD)
                continue; /* reaped below, whatever the count */
            st->signals_seen++;
            /* First and second: forward (ranks may clean up); third: no more patience. */
            int sig = st->signals_seen >= 3 ? SIGKILL : sigs[i];
            fprintf(stderr, "rdx-run: got %s: sending %s to %d rank%s\n",
                    run_signame(sigs[i], name), sig == SIGKILL ? "SIGKILL" : name, st->live,
                    st->live == 1 ? "" : "s");
            run_signal_all(st, sig);
        }
    }
    run_reap(st);
}

/* ---- launching -------------------------------------------------------------------------- */

static void run_child_env(const run_state_t *st, int rank, int port, const char *key)
{
    char v[64];
    snprintf(v, sizeof(v), "%d", rank);
    setenv("RDX_RANK", v, 1);
    setenv("RDX_LOCAL_RANK", v, 1);
    snprintf(v, sizeof(v), "%d", st->opt.n);
    setenv("RDX_SIZE", v, 1);
    snprintf(v, sizeof(v), "127.0.0.1:%d", port);
    setenv("RDX_ADDR", v, 1);
    setenv("RDX_JOB_KEY", key, 1);
    if (st->opt.transport != NULL)
        setenv("RDX_TRANSPORT", st->opt.transport, 1);
}

static void run_child(const run_state_t *st, int rank, int port, const char *key,
                      const char *path, const int out[2], const int err[2], const sigset_t *mask)
{
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, mask, NULL);
    if (st->opt.tag) {
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
    }
    /* Ranks are in background process groups: a terminal read would stop them (SIGTTIN).
     * Rank 0 keeps a piped or redirected stdin; everyone else reads nothing. */
    if (rank != 0 || isatty(STDIN_FILENO)) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0 && devnull != STDIN_FILENO) {
            dup2(devnull, STDIN_FILENO);
            close(devnull);
        }
    }
    setrlimit(RLIMIT_NOFILE, &st->saved_nofile);
    run_child_env(st, rank, port, key);
    execv(path, st->opt.argv);
    fprintf(stderr, "rdx-run: rank %d: cannot execute %s: %s\n", rank, path, strerror(errno));
    _exit(RUN_EXIT_NOT_FOUND);
}

static int run_spawn(run_state_t *st, int rank, int port, const char *key, const char *path)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    sigset_t old;
    if (st->opt.tag && (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)) {
        fprintf(stderr, "rdx-run: rank %d: pipe: %s\n", rank, strerror(errno));
        return -1;
    }
    run_block_signals(1, &old);
    pid_t pid = fork();
    if (pid == 0)
        run_child(st, rank, port, key, path, out, err, &old);
    int fork_errno = errno;
    if (pid > 0)
        setpgid(pid, pid); /* also here: we may signal the group before the child runs */
    run_block_signals(0, &old);
    if (st->opt.tag) {
        close(out[1]);
        close(err[1]);
    }
    if (pid < 0) {
        fprintf(stderr, "rdx-run: rank %d: fork: %s\n", rank, strerror(fork_errno));
        if (st->opt.tag) {
            close(out[0]);
            close(err[0]);
        }
        return -1;
    }
    run_rank_t *rk = &st->ranks[rank];
    rk->pid = pid;
    st->live++;
    rk->streams[0] = (run_stream_t){.fd = st->opt.tag ? out[0] : -1, .out_fd = STDOUT_FILENO};
    rk->streams[1] = (run_stream_t){.fd = st->opt.tag ? err[0] : -1, .out_fd = STDERR_FILENO};
    for (int k = 0; k < 2; k++)
        if (rk->streams[k].fd >= 0)
            rdx_net_set_nonblock(rk->streams[k].fd);
    return 0;
}

static int run_job_key(char out[33])
{
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t r = getrandom(raw + got, sizeof(raw) - got, 0);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r > 0)
            got += (size_t)r;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* Each rank holds two pipe ends here: make room for 1024 ranks under a 1024 soft limit. */
static void run_raise_nofile(run_state_t *st)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    st->saved_nofile = rl;
    rlim_t need = (rlim_t)st->opt.n * 2 + 64;
    if (rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* ---- main loop -------------------------------------------------------------------------- */

static int run_open_streams(const run_state_t *st)
{
    int open_streams = 0;
    for (int r = 0; r < st->opt.n; r++)
        for (int k = 0; k < 2; k++)
            open_streams += st->ranks[r].streams[k].fd >= 0;
    return open_streams;
}

static long run_next_wakeup(const run_state_t *st)
{
    long wake = -1;
    long cands[3] = {st->deadline, st->kill_at,
                     st->all_exited_at ? st->all_exited_at + RUN_ORPHAN_GRACE_MS : 0};
    for (int i = 0; i < 3; i++)
        if (cands[i] != 0 && (wake < 0 || cands[i] < wake))
            wake = cands[i];
    if (wake < 0)
        return -1;
    long left = wake - rdx_net_now_ms();
    return left > 0 ? left : 0;
}

static void run_check_timers(run_state_t *st)
{
    long now = rdx_net_now_ms();
    if (st->deadline != 0 && now >= st->deadline) {
        st->deadline = 0;
        if (st->live > 0) {
            st->timed_out = 1;
            fprintf(stderr, "rdx-run: timeout after %g s: stopping all %d ranks\n",
                    st->opt.timeout_s, st->live);
            run_terminate(st);
        }
    }
    if (st->kill_at != 0 && now >= st->kill_at) {
        st->kill_at = 0;
        if (st->live > 0)
            fprintf(stderr, "rdx-run: %d rank%s still alive after %d ms: sending SIGKILL\n",
                    st->live, st->live == 1 ? "" : "s", RUN_KILL_GRACE_MS);
        run_signal_all(st, SIGKILL);
    }
}

static void run_loop(run_state_t *st)
{
    size_t cap = 1 + 2 * (size_t)st->opt.n;
    struct pollfd *pfd = calloc(cap, sizeof(*pfd));
    int *who = calloc(cap, sizeof(*who));
    if (pfd == NULL || who == NULL) {
        fprintf(stderr, "rdx-run: out of memory\n");
        run_signal_all(st, SIGKILL);
        exit(1);
    }
    for (;;) {
        run_reap(st);
        int streams = run_open_streams(st);
        if (st->live == 0 &&
            (streams == 0 || rdx_net_now_ms() >= st->all_exited_at + RUN_ORPHAN_GRACE_MS))
            break;
        int n = 0;
        pfd[n] = (struct pollfd){.fd = g_sig_pipe[0], .events = POLLIN};
        who[n++] = -1;
        for (int r = 0; r < st->opt.n; r++)
            for (int k = 0; k < 2; k++)
                if (st->ranks[r].streams[k].fd >= 0) {
                    pfd[n] = (struct pollfd){.fd = st->ranks[r].streams[k].fd, .events = POLLIN};
                    who[n++] = 2 * r + k;
                }
        long wait = run_next_wakeup(st);
        int rc = poll(pfd, (nfds_t)n, wait < 0 ? -1 : (wait > INT_MAX ? INT_MAX : (int)wait));
        if (rc < 0 && errno != EINTR) {
            fprintf(stderr, "rdx-run: poll: %s\n", strerror(errno));
            break;
        }
        for (int i = 1; i < n && rc > 0; i++)
            if (pfd[i].revents)
                run_stream_read(who[i] / 2, &st->ranks[who[i] / 2].streams[who[i] % 2]);
        if (rc > 0 && pfd[0].revents)
            run_handle_signals(st);
        run_check_timers(st);
    }
    /* Orphans of a rank may still hold a pipe: flush what we have and let go. */
    for (int r = 0; r < st->opt.n; r++)
        for (int k = 0; k < 2; k++) {
            run_stream_t *s = &st->ranks[r].streams[k];
            if (s->fd >= 0)
                run_stream_close(r, s);
            free(s->buf);
        }
    if (st->first_fail >= 0 || st->timed_out)
        run_signal_all(st, SIGKILL); /* leftovers in the ranks' groups */
    free(who);
    free(pfd);
}

int main(int argc, char **argv)
{
    run_state_t st = {.first_fail = -1};
    char key[33];

    run_parse_args(argc, argv, &st.opt);
    char *path = run_find_program(st.opt.argv[0]);
    if (path == NULL) {
        fprintf(stderr, "rdx-run: %s: command not found (searched PATH and the directory of "
                        "rdx-run)\n", st.opt.argv[0]);
        return RUN_EXIT_NOT_FOUND;
    }
    int port = rdx_net_free_port("127.0.0.1");
    if (port < 0) {
        fprintf(stderr, "rdx-run: cannot find a free TCP port on 127.0.0.1: %s\n",
                strerror(errno));
        return 1;
    }
    if (run_job_key(key) != 0) {
        fprintf(stderr, "rdx-run: getrandom: %s\n", strerror(errno));
        return 1;
    }
    st.ranks = calloc((size_t)st.opt.n, sizeof(*st.ranks));
    if (st.ranks == NULL || run_install_signals() != 0) {
        fprintf(stderr, "rdx-run: setup: %s\n", strerror(errno));
        return 1;
    }
    run_raise_nofile(&st);
    if (st.opt.timeout_s > 0)
        st.deadline = rdx_net_now_ms() + (long)(st.opt.timeout_s * 1000.0);
    for (int r = 0; r < st.opt.n; r++)
        if (run_spawn(&st, r, port, key, path) != 0) {
            st.first_fail = r;
            st.exit_code = 1;
            run_terminate(&st);
            break;
        }
    run_loop(&st);
    free(path);
    free(st.ranks);
    if (st.timed_out)
        return RUN_EXIT_TIMEOUT;
    return st.first_fail >= 0 ? st.exit_code : 0;
}
