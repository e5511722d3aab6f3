/*
 * rdx-train's command line: one table (name, kind, field, help) drives parsing, --help
 * and the run fingerprint (the options that shape the trajectory, compared across ranks at
 * start and stored in checkpoints).
 */
#ifndef RDX_TRAINER_OPTS_H
#define RDX_TRAINER_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mlp.h"

typedef struct train_opts {
    const char *data_dir;
    int dims[MLP_MAX_LAYERS + 1];
    int ndims;
    int epochs, batch, accum, threads;
    double lr, momentum, wd;
    long warmup;             /* steps; -1: auto */
    int cosine;
    unsigned long seed;
    int overlap;
    int progress_thread;
    double bucket_mb;
    int wire;                /* ddp_wire_t */
    double topk;
    const char *ckpt_dir;
    long ckpt_every;
    int resume;
    const char *metrics;
    const char *save_weights;
    long check_every, log_every, max_steps;
    long train_limit, test_limit;
    int quiet;
} train_opts_t;

void opts_defaults(train_opts_t *o);
/* 0: run; 1: --help was printed; -1: error (message in err). */
int opts_parse(train_opts_t *o, int argc, char **argv, char *err, size_t errlen);
void opts_usage(FILE *out);
/* Canonical text of the trajectory-shaping options plus rank and sample counts. */
void opts_fingerprint(const train_opts_t *o, int ranks, int train_count, char *buf,
                      size_t len);
const char *opts_wire_name(int wire);

#endif
