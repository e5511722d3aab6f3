#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ddp.h"

#define REPORT_BAR_WIDTH 24

int report_open(report_t *r, int rank, int quiet, const char *metrics_path, long log_every,
                int epochs, long steps_per_epoch, long samples_per_step)
{
    memset(r, 0, sizeof *r);
    r->enabled = rank == 0 && !quiet;
    r->tty = r->enabled && isatty(STDOUT_FILENO);
    r->epochs = epochs;
    r->steps_per_epoch = steps_per_epoch;
    r->samples_per_step = samples_per_step;
    r->log_every = log_every > 0 ? log_every : (steps_per_epoch + 9) / 10;
    /* "%r" in the name: every rank writes its own file (benchmarks compare ranks). */
    const char *pct = metrics_path ? strstr(metrics_path, "%r") : NULL;
    if (metrics_path && (rank == 0 || pct)) {
        char path[4096];
        if (pct)
            snprintf(path, sizeof path, "%.*s%d%s", (int)(pct - metrics_path), metrics_path,
                     rank, pct + 2);
        else
            snprintf(path, sizeof path, "%s", metrics_path);
        r->metrics = fopen(path, "w");
        if (!r->metrics) {
            fprintf(stderr, "rdx-train: rank %d: --metrics %s: cannot open for writing: %s\n",
                    rank, path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

void report_close(report_t *r)
{
    if (r->bar_drawn)
        fputc('\n', stdout);
    if (r->metrics)
        fclose(r->metrics);
    r->metrics = NULL;
}

static void report_clear_bar(report_t *r)
{
    if (r->bar_drawn) {
        fputs("\r\033[K", stdout);
        r->bar_drawn = 0;
    }
}

void report_line(report_t *r, const char *fmt, ...)
{
    if (!r->enabled)
        return;
    report_clear_bar(r);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void report_epoch_begin(report_t *r, long first_step)
{
    r->t_epoch = ddp_now_ms();
    r->epoch_first_step = first_step;
}

static void report_bar(report_t *r, const report_step_t *s, long in_epoch, double rate,
                       double eta_s)
{
    char bar[REPORT_BAR_WIDTH + 1];
    int fill = (int)(REPORT_BAR_WIDTH * in_epoch / (r->steps_per_epoch ? r->steps_per_epoch : 1));
    for (int i = 0; i < REPORT_BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[REPORT_BAR_WIDTH] = '\0';
    printf("\r\033[Kepoch %d/%d [%s] step %ld/%ld loss %.4f %.0f samples/s ETA %ld:%02ld",
           s->epoch, r->epochs, bar, in_epoch, r->steps_per_epoch, s->loss, rate,
           (long)eta_s / 60, (long)eta_s % 60);
    fflush(stdout);
    r->bar_drawn = 1;
}

void report_step(report_t *r, const report_step_t *s)
{
    if (r->metrics)
        fprintf(r->metrics, "{\"step\":%ld,\"epoch\":%d,\"loss\":%.6f,\"step_ms\":%.4f,"
                "\"compute_ms\":%.4f,\"comm_ms\":%.4f,\"exposed_comm_ms\":%.4f,"
                "\"bytes_sent\":%" PRIu64 "}\n", s->step, s->epoch, s->loss, s->step_ms,
                s->compute_ms, s->comm_ms, s->exposed_ms, s->bytes_sent);
    if (!r->enabled)
        return;
    long in_epoch = s->step - r->epoch_first_step;
    double el = (ddp_now_ms() - r->t_epoch) / 1e3;
    double rate = el > 0 ? (double)(in_epoch * r->samples_per_step) / el : 0;
    long left = r->steps_per_epoch * r->epochs - (s->step);
    double eta = in_epoch > 0 ? el / (double)in_epoch * (double)left : 0;
    if (r->tty) {
        double now = ddp_now_ms(); /* redraw at most 5 times a second */
        if (now - r->t_bar >= 200.0 || in_epoch == r->steps_per_epoch) {
            report_bar(r, s, in_epoch, rate, eta);
            r->t_bar = now;
        }
    } else if (in_epoch % r->log_every == 0) {
        printf("epoch %d/%d step %ld/%ld loss %.4f lr %.4g %.0f samples/s step %.2f ms "
               "(exposed comm %.2f ms) ETA %ld:%02ld\n", s->epoch, r->epochs, in_epoch,
               r->steps_per_epoch, s->loss, s->lr, rate, s->step_ms, s->exposed_ms,
               (long)eta / 60, (long)eta % 60);
        fflush(stdout);
    }
}

void report_epoch_end(report_t *r, int epoch, double train_loss, double test_acc,
                      double test_loss)
{
    if (r->metrics) {
        fprintf(r->metrics, "{\"epoch\":%d,\"test_acc\":%.6f,\"test_loss\":%.6f}\n", epoch,
                test_acc, test_loss);
        fflush(r->metrics);
    }
    double s = (ddp_now_ms() - r->t_epoch) / 1e3;
    report_line(r, "epoch %d/%d: train_loss %.4f test_acc %.2f%% test_loss %.4f time %.2f s\n",
                epoch, r->epochs, train_loss, 100.0 * test_acc, test_loss, s);
}
