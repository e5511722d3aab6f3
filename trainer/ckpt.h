/*
 * Checkpoints: one file per rank per step, DIR/ckpt-r<rank>-s<step>.bin, holding everything
 * that makes the run continue bit for bit: parameters, momentum, the top-k residual (which
 * differs per rank) and the step. The data order and learning rate are functions of the
 * step and the seed, so they need no saving.
 *
 * Written atomically: a temporary file in DIR, fsync, rename over the final name, fsync of
 * DIR. A crash leaves either the old set or the new one. Each rank keeps its last two
 * files: ranks may crash between their own renames, and resume takes the newest step every
 * rank has (the minimum over ranks of each rank's newest).
 *
 * Format (host byte order, little-endian on every machine this runs on):
 *   "RDXCKPT1" | u32 version | u32 rank | u32 ranks | u32 0 | u64 step | u64 nparams |
 *   u64 nresid | char fingerprint[512] | f32 params[n] | f32 mom[n] | f32 resid[nresid] |
 *   u64 FNV-1a of everything before
 */
#ifndef RDX_TRAINER_CKPT_H
#define RDX_TRAINER_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_FINGERPRINT_MAX 512

typedef struct ckpt_data {
    int rank, ranks;
    int64_t step;
    char fingerprint[CKPT_FINGERPRINT_MAX]; /* the options that shape the trajectory */
    float *params, *mom, *resid;            /* caller's buffers */
    size_t nparams, nresid;
} ckpt_data_t;

/* Writes this rank's checkpoint, then removes its files older than the previous one. */
int ckpt_save(const char *dir, const ckpt_data_t *c, char *err, size_t errlen);

/* Newest step with a file of this rank in dir, or -1 if none. */
int64_t ckpt_latest(const char *dir, int rank);

/* Loads step c->step of c->rank into c's buffers after checking that the file matches
 * c's shape and fingerprint; the message says what differs. */
int ckpt_load(const char *dir, ckpt_data_t *c, char *err, size_t errlen);

#endif
