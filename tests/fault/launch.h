/*
 * A minimal launcher for the fault tests: forks N ranks of the calling program (each runs a
 * function, after setting RDX_RANK / RDX_SIZE / RDX_ADDR / RDX_JOB_KEY), with a shared
 * anonymous mapping for results, so the parent can kill a rank, time the survivors and
 * tell a hang (hard deadline, then SIGKILL) from a crash (death by a signal). rdx-run is
 * not used because it stops every rank as soon as one fails, which is what these tests
 * must observe instead.
 */
#ifndef RDX_TESTS_FAULT_LAUNCH_H
#define RDX_TESTS_FAULT_LAUNCH_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FL_MAX_RANKS 16

static inline uint64_t fl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void fl_sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000L, .tv_nsec = (us % 1000000L) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A zeroed mapping shared with the children forked after it. */
static inline void *fl_shared(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}

/* A port that was free a moment ago on 127.0.0.1 (rank 0 binds it with SO_REUSEADDR). */
static inline int fl_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("fl_free_port");
        exit(2);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

typedef struct fl_job {
    int n;
    pid_t pid[FL_MAX_RANKS];
    int wstatus[FL_MAX_RANKS];
    int reaped[FL_MAX_RANKS];
    int hung[FL_MAX_RANKS];   /* still alive at the deadline: killed */
} fl_job_t;

/* Forks n ranks; rank r runs fn(r, arg) and exits with its return value. */
static inline void fl_spawn(fl_job_t *job, int n, int (*fn)(int rank, void *arg), void *arg)
{
    char addr[64], key[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", fl_free_port());
    snprintf(key, sizeof(key), "fault-%d-%llu", (int)getpid(), (unsigned long long)fl_now_ns());
    memset(job, 0, sizeof(*job));
    job->n = n;
    fflush(NULL);
    for (int r = 0; r < n; r++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            exit(2);
        }
        if (pid == 0) {
            char v[16];
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
            snprintf(v, sizeof(v), "%d", r);
            setenv("RDX_RANK", v, 1);
            snprintf(v, sizeof(v), "%d", n);
            setenv("RDX_SIZE", v, 1);
            setenv("RDX_ADDR", addr, 1);
            setenv("RDX_JOB_KEY", key, 1);
            int rc = fn(r, arg);
            fflush(NULL);
            _exit(rc);
        }
        job->pid[r] = pid;
    }
}

/* Reaps the ranks until deadline (CLOCK_MONOTONIC ns); then SIGKILLs and marks the rest hung.
 * Returns the number of hung ranks. */
static inline int fl_wait(fl_job_t *job, uint64_t deadline)
{
    int left = 0;
    for (;;) {
        left = 0;
        for (int r = 0; r < job->n; r++) {
            if (job->reaped[r])
                continue;
            pid_t p = waitpid(job->pid[r], &job->wstatus[r], WNOHANG);
            if (p == job->pid[r])
                job->reaped[r] = 1;
            else
                left++;
        }
        if (!left || fl_now_ns() > deadline)
            break;
        fl_sleep_us(2000);
    }
    for (int r = 0; r < job->n && left; r++) {
        if (job->reaped[r])
            continue;
        job->hung[r] = 1;
        kill(job->pid[r], SIGKILL);
        waitpid(job->pid[r], &job->wstatus[r], 0);
        job->reaped[r] = 1;
    }
    return left;
}

/* "exit 0", "exit 3", "killed by signal 11 (Segmentation fault)", "hung (killed)". */
static inline const char *fl_how(const fl_job_t *job, int r, char *buf, size_t len)
{
    int w = job->wstatus[r];
    if (job->hung[r])
        snprintf(buf, len, "hung (killed at the deadline)");
    else if (WIFEXITED(w))
        snprintf(buf, len, "exit %d", WEXITSTATUS(w));
    else if (WIFSIGNALED(w))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(w), strsignal(WTERMSIG(w)));
    else
        snprintf(buf, len, "status 0x%x", w);
    return buf;
}

/* True when msg names peer p ("peer 3:", "peer 3 ", "peer 3)" ...), not "peer 31". */
static inline int fl_names_peer(const char *msg, int p)
{
    char pat[24];
    int n = snprintf(pat, sizeof(pat), "peer %d", p);
    for (const char *s = strstr(msg, pat); s; s = strstr(s + 1, pat))
        if (s[n] < '0' || s[n] > '9')
            return 1;
    return 0;
}

/* splitmix64: the same stream on every rank for the same seed. */
static inline uint64_t fl_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
