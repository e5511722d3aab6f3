#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_U8_1D 0x00000801u
#define IDX_MAGIC_U8_3D 0x00000803u
#define DATA_MEAN 0.2860f
#define DATA_STD 0.3530f

typedef struct blob { uint8_t *p; size_t len; } blob_t;

/* Finds NAME.gz or NAME (gzopen reads plain files as well) and reads it whole. */
static int data_file_read(const char *dir, const char *name, blob_t *out, char *path,
                          size_t pathlen, char *err, size_t errlen)
{
    snprintf(path, pathlen, "%s/%s.gz", dir, name);
    if (access(path, R_OK) != 0)
        snprintf(path, pathlen, "%s/%s", dir, name);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s/%s.gz: cannot open: %s (install the Debian package "
                 "dataset-fashion-mnist or pass --data DIR)", dir, name,
                 errno ? strerror(errno) : "zlib error");
        return -1;
    }
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    int n = 0;
    while (buf) {
        if (cap - len < (1 << 16)) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        n = gzread(f, buf + len, (unsigned)(cap - len));
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    int zerr = Z_OK;
    const char *zmsg = n < 0 ? gzerror(f, &zerr) : NULL;
    if (!buf || n < 0) {
        snprintf(err, errlen, "%s: read failed: %s", path, buf ? zmsg : "out of memory");
        free(buf);
        gzclose(f);
        return -1;
    }
    gzclose(f);
    out->p = buf;
    out->len = len;
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the IDX header: magic, dimension count, and that the payload is exactly there. */
static int data_idx_check(const blob_t *b, const char *path, uint32_t magic, int ndims,
                          uint32_t *dims, char *err, size_t errlen)
{
    size_t hdr = 4 + 4 * (size_t)ndims;
    if (b->len < hdr) {
        snprintf(err, errlen, "%s: %zu bytes, too short for an IDX header", path, b->len);
        return -1;
    }
    uint32_t m = be32(b->p);
    if (m != magic) {
        snprintf(err, errlen, "%s: bad magic 0x%08x, expected 0x%08x (IDX unsigned byte, "
                 "%d dimension%s)", path, m, magic, ndims, ndims > 1 ? "s" : "");
        return -1;
    }
    size_t payload = 1;
    for (int i = 0; i < ndims; i++) {
        dims[i] = be32(b->p + 4 + 4 * i);
        payload *= dims[i];
    }
    if (b->len != hdr + payload) {
        snprintf(err, errlen, "%s: %zu bytes but the header promises %zu (%s)", path, b->len,
                 hdr + payload, b->len < hdr + payload ? "truncated" : "trailing data");
        return -1;
    }
    return 0;
}

int data_load(dataset_t *d, const char *dir, const char *prefix, char *err, size_t errlen)
{
    char name[256], ipath[4096], lpath[4096];
    blob_t img = {0}, lab = {0};
    uint32_t idims[3], ldims[1];
    memset(d, 0, sizeof *d);

    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    if (data_file_read(dir, name, &img, ipath, sizeof ipath, err, errlen))
        goto fail;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    if (data_file_read(dir, name, &lab, lpath, sizeof lpath, err, errlen))
        goto fail;
    if (data_idx_check(&img, ipath, IDX_MAGIC_U8_3D, 3, idims, err, errlen) ||
        data_idx_check(&lab, lpath, IDX_MAGIC_U8_1D, 1, ldims, err, errlen))
        goto fail;
    if (idims[0] != ldims[0] || idims[0] == 0) {
        snprintf(err, errlen, "%s has %u images but %s has %u labels", ipath, idims[0],
                 lpath, ldims[0]);
        goto fail;
    }
    for (uint32_t i = 0; i < ldims[0]; i++) {
        if (lab.p[8 + i] >= DATA_CLASSES) {
            snprintf(err, errlen, "%s: label %u of sample %u is not a class 0..%d", lpath,
                     lab.p[8 + i], i, DATA_CLASSES - 1);
            goto fail;
        }
    }
    /* Keep the payloads only: shift out the headers in place. */
    size_t ibytes = (size_t)idims[0] * idims[1] * idims[2];
    memmove(img.p, img.p + 16, ibytes);
    memmove(lab.p, lab.p + 8, ldims[0]);
    d->count = (int)idims[0];
    d->pixels = (int)(idims[1] * idims[2]);
    d->images = img.p;
    d->labels = lab.p;
    return 0;
fail:
    free(lab.p);
    free(img.p);
    return -1;
}

void data_free(dataset_t *d)
{
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

void data_gather(const dataset_t *d, const uint32_t *idx, int rows, float *x, uint8_t *y)
{
    const float a = 1.0f / (255.0f * DATA_STD), b = -DATA_MEAN / DATA_STD;
    for (int r = 0; r < rows; r++) {
        const uint8_t *src = d->images + (size_t)idx[r] * d->pixels;
        float *dst = x + (size_t)r * d->pixels;
        for (int p = 0; p < d->pixels; p++)
            dst[p] = (float)src[p] * a + b;
        y[r] = d->labels[idx[r]];
    }
}
