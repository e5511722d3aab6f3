#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fnv.h"

#define CKPT_MAGIC "RDXCKPT1"
#define CKPT_VERSION 1u

typedef struct ckpt_header {
    char magic[8];
    uint32_t version, rank, ranks, pad;
    uint64_t step, nparams, nresid;
    char fingerprint[CKPT_FINGERPRINT_MAX];
} ckpt_header_t;

static void ckpt_path(char *buf, size_t len, const char *dir, int rank, int64_t step)
{
    snprintf(buf, len, "%s/ckpt-r%d-s%08" PRId64 ".bin", dir, rank, step);
}

static int ckpt_write_all(int fd, const void *p, size_t len, uint64_t *h)
{
    *h = fnv_hash(p, len, *h);
    const char *c = p;
    while (len > 0) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

static int ckpt_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Calls fn for each of rank's checkpoint steps in dir. */
static void ckpt_scan(const char *dir, int rank, void (*fn)(void *, int64_t), void *ctx)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char prefix[32];
    int plen = snprintf(prefix, sizeof prefix, "ckpt-r%d-s", rank);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        char *end;
        if (strncmp(name, prefix, (size_t)plen) != 0)
            continue;
        long long step = strtoll(name + plen, &end, 10);
        if (end != name + plen && strcmp(end, ".bin") == 0 && step >= 0)
            fn(ctx, step);
    }
    closedir(d);
}

static void ckpt_max_fn(void *ctx, int64_t step)
{
    int64_t *best = ctx;
    if (step > *best)
        *best = step;
}

int64_t ckpt_latest(const char *dir, int rank)
{
    int64_t best = -1;
    ckpt_scan(dir, rank, ckpt_max_fn, &best);
    return best;
}

typedef struct ckpt_prune { const char *dir; int rank; int64_t keep_from; } ckpt_prune_t;

static void ckpt_below_fn(void *ctx, int64_t step)
{
    int64_t *below = ctx; /* [0]: limit, [1]: largest step under it */
    if (step < below[0] && step > below[1])
        below[1] = step;
}

static void ckpt_unlink_fn(void *ctx, int64_t step)
{
    ckpt_prune_t *p = ctx;
    if (step < p->keep_from) {
        char path[4096];
        ckpt_path(path, sizeof path, p->dir, p->rank, step);
        unlink(path);
    }
}

/* Keeps the newest file and the one before it. */
static void ckpt_prune(const char *dir, int rank, int64_t newest)
{
    int64_t below[2] = {newest, -1};
    ckpt_scan(dir, rank, ckpt_below_fn, below);
    ckpt_prune_t p = {dir, rank, below[1] < 0 ? newest : below[1]};
    ckpt_scan(dir, rank, ckpt_unlink_fn, &p);
}

int ckpt_save(const char *dir, const ckpt_data_t *c, char *err, size_t errlen)
{
    char tmp[4096], path[4096];
    ckpt_path(path, sizeof path, dir, c->rank, c->step);
    snprintf(tmp, sizeof tmp, "%s/.ckpt-r%d.tmp", dir, c->rank);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "checkpoint: mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "checkpoint: create %s: %s", tmp, strerror(errno));
        return -1;
    }
    ckpt_header_t h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.version = CKPT_VERSION;
    h.rank = (uint32_t)c->rank;
    h.ranks = (uint32_t)c->ranks;
    h.step = (uint64_t)c->step;
    h.nparams = c->nparams;
    h.nresid = c->nresid;
    snprintf(h.fingerprint, sizeof h.fingerprint, "%s", c->fingerprint);
    uint64_t hash = FNV_INIT;
    int rc = ckpt_write_all(fd, &h, sizeof h, &hash);
    rc = rc ? rc : ckpt_write_all(fd, c->params, c->nparams * sizeof(float), &hash);
    rc = rc ? rc : ckpt_write_all(fd, c->mom, c->nparams * sizeof(float), &hash);
    if (c->nresid)
        rc = rc ? rc : ckpt_write_all(fd, c->resid, c->nresid * sizeof(float), &hash);
    uint64_t sum = hash;
    rc = rc ? rc : ckpt_write_all(fd, &sum, sizeof sum, &hash);
    rc = rc ? rc : fsync(fd);
    int saved = errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        snprintf(err, errlen, "checkpoint: write %s: %s", path, strerror(saved));
        unlink(tmp);
        return -1;
    }
    if (ckpt_fsync_dir(dir) != 0) {
        snprintf(err, errlen, "checkpoint: fsync %s: %s", dir, strerror(errno));
        return -1;
    }
    ckpt_prune(dir, c->rank, c->step);
    return 0;
}

static int ckpt_read_all(FILE *f, void *p, size_t len, uint64_t *h)
{
    if (fread(p, 1, len, f) != len)
        return -1;
    *h = fnv_hash(p, len, *h);
    return 0;
}

static int ckpt_check_header(const ckpt_header_t *h, const ckpt_data_t *c, const char *path,
                             char *err, size_t errlen)
{
    if (memcmp(h->magic, CKPT_MAGIC, 8) != 0 || h->version != CKPT_VERSION)
        snprintf(err, errlen, "%s: not an rdx-train checkpoint (version %u)", path,
                 CKPT_VERSION);
    else if ((int)h->ranks != c->ranks || (int)h->rank != c->rank)
        snprintf(err, errlen, "%s: written by rank %u of %u, this is rank %d of %d (resume "
                 "with the same rank count)", path, h->rank, h->ranks, c->rank, c->ranks);
    else if (h->nparams != c->nparams || h->nresid != c->nresid)
        snprintf(err, errlen, "%s: holds %" PRIu64 " parameters and %" PRIu64 " residuals, "
                 "this model has %zu and %zu", path, h->nparams, h->nresid, c->nparams,
                 c->nresid);
    else if (strncmp(h->fingerprint, c->fingerprint, CKPT_FINGERPRINT_MAX) != 0)
        snprintf(err, errlen, "%s: options differ from the checkpointed run:\n  saved: %.*s\n"
                 "  now:   %s", path, CKPT_FINGERPRINT_MAX, h->fingerprint, c->fingerprint);
    else
        return 0;
    return -1;
}

int ckpt_load(const char *dir, ckpt_data_t *c, char *err, size_t errlen)
{
    char path[4096];
    ckpt_path(path, sizeof path, dir, c->rank, c->step);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    ckpt_header_t h;
    uint64_t hash = FNV_INIT, sum = 0;
    int rc = ckpt_read_all(f, &h, sizeof h, &hash);
    if (rc != 0)
        snprintf(err, errlen, "%s: truncated header", path);
    else
        rc = ckpt_check_header(&h, c, path, err, errlen);
    if (rc == 0) {
        rc = ckpt_read_all(f, c->params, c->nparams * sizeof(float), &hash);
        rc = rc ? rc : ckpt_read_all(f, c->mom, c->nparams * sizeof(float), &hash);
        if (c->nresid)
            rc = rc ? rc : ckpt_read_all(f, c->resid, c->nresid * sizeof(float), &hash);
        uint64_t expect = hash;
        rc = rc ? rc : ckpt_read_all(f, &sum, sizeof sum, &hash);
        if (rc != 0)
            snprintf(err, errlen, "%s: truncated", path);
        else if (sum != expect || fgetc(f) != EOF) {
            snprintf(err, errlen, "%s: checksum mismatch or trailing data: corrupted", path);
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}
