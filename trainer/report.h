/*
 * What rank 0 tells the user: a one-line progress bar redrawn in place on a terminal, plain
 * lines otherwise, and --metrics JSON lines (one per optimizer step, one per epoch):
 *   {"step","epoch","loss","step_ms","compute_ms","comm_ms","exposed_comm_ms","bytes_sent"}
 *   {"epoch","test_acc","test_loss"}
 */
#ifndef RDX_TRAINER_REPORT_H
#define RDX_TRAINER_REPORT_H

#include <stdint.h>
#include <stdio.h>

typedef struct report {
    int enabled;         /* rank 0 and not --quiet */
    int tty;             /* redraw a bar on stdout */
    FILE *metrics;
    long log_every;
    int epochs;
    long steps_per_epoch;
    long samples_per_step;
    double t_epoch;      /* ms at the epoch's first step */
    double t_bar;        /* ms of the last redraw */
    long epoch_first_step; /* steps done before this epoch */
    int bar_drawn;
} report_t;

typedef struct report_step {
    long step;           /* 1-based, over the whole run */
    int epoch;           /* 1-based */
    double loss, lr, step_ms, compute_ms, comm_ms, exposed_ms;
    uint64_t bytes_sent;
} report_step_t;

/* metrics_path may be NULL; with "%r" in it every rank writes its own file. Returns -1
 * (message printed) if the file cannot be opened. */
int report_open(report_t *r, int rank, int quiet, const char *metrics_path, long log_every,
                int epochs, long steps_per_epoch, long samples_per_step);
void report_close(report_t *r);
void report_epoch_begin(report_t *r, long first_step);
void report_step(report_t *r, const report_step_t *s);
void report_epoch_end(report_t *r, int epoch, double train_loss, double test_acc,
                      double test_loss);
/* printf to stdout on rank 0 unless quiet, clearing the bar first. */
void report_line(report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
