/*
 * rdx-train: data-parallel MLP training on Fashion-MNIST over rdx.
 *
 * Every rank holds the whole model. Per optimizer step, with n ranks, global micro-batch B
 * and k micro-batches (--accum):
 *
 *   for each micro-batch m < k:
 *       x = this rank's shard of the shuffled global batch (rows r*B/n .. (r+1)*B/n)
 *       forward; loss; backward          <- gradient buckets start on the wire inside the
 *                                            last micro-batch's backward (ddp.c)
 *   for each bucket b, in the order they left:
 *       wait for b (average over ranks);  SGD on b's parameters
 *
 * Each rank scales its loss gradient by n / (B k), so the average over ranks is the mean
 * gradient over all B k samples whatever the shard sizes (B need not divide by n).
 * The data order depends only on --seed and the epoch, the same on every rank: shards need
 * no communication, and a resumed run picks up the exact order.
 *
 * Collectives, in the order every rank issues them: option check (start), weight
 * broadcast (start), per step the gradient buckets then the loss/stop-flag sum, every
 * --check-every steps the weight-hash check, per epoch the sharded test evaluation sum.
 */
#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "coll.h"
#include "data.h"
#include "fnv.h"
#include "ddp.h"
#include "mlp.h"
#include "opts.h"
#include "report.h"
#include "rdx/rdx.h"
#include "rng.h"
#include "sgd.h"

#define EVAL_ROWS 500

typedef struct trainer {
    train_opts_t o;
    rdx_comm_t *comm;
    int rank, size;
    dataset_t train, test;
    int train_count, test_count;
    mlp_t m;
    sgd_t opt;
    ddp_t ddp;
    report_t rep;
    uint32_t *perm;      /* this epoch's order of the training set */
    float *x;            /* batch inputs, cap x pixels */
    uint8_t *y;
    long spe;            /* optimizer steps per epoch */
    long step;           /* optimizer steps done */
    long last_ckpt;
    double sums[2];      /* loss sum, stop flag: summed over ranks behind the buckets; here
                            and not on the stack, the library may still write it after an
                            error ends the step early */
    char fp[CKPT_FINGERPRINT_MAX];
} trainer_t;

static volatile sig_atomic_t trainer_stop_signal;

static void trainer_on_signal(int sig)
{
    trainer_stop_signal = sig;
}

static int trainer_fail(const trainer_t *t, const char *fmt, const char *detail)
{
    fprintf(stderr, "rdx-train: rank %d: ", t->rank);
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
    return -1;
}

static int trainer_load_data(trainer_t *t)
{
    char err[4608];
    if (data_load(&t->train, t->o.data_dir, "train", err, sizeof err) ||
        data_load(&t->test, t->o.data_dir, "t10k", err, sizeof err))
        return trainer_fail(t, "loading data: %s", err);
    if (t->train.pixels != t->o.dims[0] || t->test.pixels != t->o.dims[0]) {
        snprintf(err, sizeof err, "the images have %d pixels but --layers starts with %d",
                 t->train.pixels, t->o.dims[0]);
        return trainer_fail(t, "%s", err);
    }
    t->train_count = t->train.count;
    if (t->o.train_limit > 0 && t->o.train_limit < t->train_count)
        t->train_count = (int)t->o.train_limit;
    t->test_count = t->test.count;
    if (t->o.test_limit > 0 && t->o.test_limit < t->test_count)
        t->test_count = (int)t->o.test_limit;
    return 0;
}

/* Options that depend on the data and rank count; then all ranks compare fingerprints. */
static int trainer_plan(trainer_t *t)
{
    train_opts_t *o = &t->o;
    char msg[256];
    if (o->batch < t->size) {
        snprintf(msg, sizeof msg, "--batch %d is smaller than the %d ranks: every rank needs "
                 "at least one sample per micro-batch", o->batch, t->size);
        return trainer_fail(t, "%s", msg);
    }
    long per_step = (long)o->batch * o->accum;
    t->spe = t->train_count / per_step;
    if (t->spe < 1) {
        snprintf(msg, sizeof msg, "%d training samples do not fill one step of %ld (--batch "
                 "x --accum)", t->train_count, per_step);
        return trainer_fail(t, "%s", msg);
    }
    if (o->warmup < 0)
        o->warmup = per_step <= 256 ? 0 : (t->spe < 500 ? t->spe : 500);
    opts_fingerprint(o, t->size, t->train_count, t->fp, sizeof t->fp);
    return coll_check_same(t->comm, fnv_hash(t->fp, strlen(t->fp), FNV_INIT),
                           "options (compare the rdx-train command lines)") ? -1 : 0;
}

static int trainer_alloc(trainer_t *t)
{
    int cap = (t->o.batch + t->size - 1) / t->size;
    if (cap < EVAL_ROWS)
        cap = EVAL_ROWS;
    if (mlp_create(&t->m, t->o.dims, t->o.ndims, cap) || sgd_create(&t->opt, t->m.nparams))
        return trainer_fail(t, "%s", "out of memory for the model");
    t->perm = malloc((size_t)t->train.count * sizeof *t->perm);
    t->x = malloc((size_t)cap * t->train.pixels * sizeof *t->x);
    t->y = malloc((size_t)cap);
    if (!t->perm || !t->x || !t->y)
        return trainer_fail(t, "%s", "out of memory for the batch buffers");
    t->opt.lr = t->o.lr;
    t->opt.momentum = t->o.momentum;
    t->opt.wd = t->o.wd;
    t->opt.warmup = t->o.warmup;
    t->opt.cosine = t->o.cosine;
    t->opt.total = t->spe * t->o.epochs;
    ddp_config_t dc = {.overlap = t->o.overlap, .wire = t->o.wire, .topk = t->o.topk,
                       .bucket_mb = t->o.bucket_mb, .progress_thread = t->o.progress_thread};
    if (ddp_create(&t->ddp, t->comm, t->m.grads, t->m.nparams, &dc) != RDX_SUCCESS)
        return trainer_fail(t, "%s", "out of memory for the gradient buckets");
    return 0;
}

static ckpt_data_t trainer_ckpt_data(trainer_t *t)
{
    ckpt_data_t c = {.rank = t->rank, .ranks = t->size, .step = t->step,
                     .params = t->m.params, .mom = t->opt.mom, .resid = t->ddp.resid,
                     .nparams = t->m.nparams, .nresid = t->ddp.resid ? t->m.nparams : 0};
    snprintf(c.fingerprint, sizeof c.fingerprint, "%s", t->fp);
    return c;
}

/*
 * --resume: every rank reports its newest checkpoint; all load the newest step that every
 * rank has (a rank may have died between its rename and the others').
 */
static int trainer_resume(trainer_t *t, int *resumed)
{
    int64_t mine = ckpt_latest(t->o.ckpt_dir, t->rank), lo = INT64_MAX, hi = -1;
    int64_t *all = calloc((size_t)t->size, sizeof *all);
    char err[2048];
    *resumed = 0;
    if (!all || coll_report(t->comm, coll_allgather(t->comm, &mine, all, sizeof mine),
                            "allgather (checkpoint steps)")) {
        free(all);
        return -1;
    }
    int missing = -1;
    for (int r = 0; r < t->size; r++) {
        lo = all[r] < lo ? all[r] : lo;
        hi = all[r] > hi ? all[r] : hi;
        if (all[r] < 0 && missing < 0)
            missing = r;
    }
    free(all);
    if (hi < 0) {
        report_line(&t->rep, "rdx-train: no checkpoint in %s: starting fresh\n", t->o.ckpt_dir);
        return 0;
    }
    if (lo < 0) {
        snprintf(err, sizeof err, "%s has checkpoints up to step %" PRId64 " but none of rank "
                 "%d: cannot resume (move the directory away to start fresh)", t->o.ckpt_dir,
                 hi, missing);
        return trainer_fail(t, "--resume: %s", err);
    }
    ckpt_data_t c = trainer_ckpt_data(t);
    c.step = lo;
    if (ckpt_load(t->o.ckpt_dir, &c, err, sizeof err))
        return trainer_fail(t, "--resume: %s", err);
    t->step = t->last_ckpt = lo;
    *resumed = 1;
    report_line(&t->rep, "rdx-train: resumed from step %" PRId64 " in %s\n", lo, t->o.ckpt_dir);
    return 0;
}

static int trainer_check_weights(trainer_t *t)
{
    char what[96];
    snprintf(what, sizeof what, "weights after step %ld", t->step);
    uint64_t h = fnv_hash(t->m.params, t->m.nparams * sizeof(float), FNV_INIT);
    return coll_check_same(t->comm, h, what) ? -1 : 0;
}

static int trainer_init_weights(trainer_t *t)
{
    int resumed = 0;
    if (t->o.resume && trainer_resume(t, &resumed))
        return -1;
    if (!resumed) {
        if (t->rank == 0)
            mlp_init_params(&t->m, t->o.seed);
        if (coll_report(t->comm, coll_bcast(t->comm, t->m.params, t->m.nparams * sizeof(float)),
                        "broadcast of the initial weights"))
            return -1;
    }
    return trainer_check_weights(t);
}

/* The epoch's permutation: Fisher-Yates from (seed, epoch), identical on every rank. */
static void trainer_shuffle(trainer_t *t, long epoch)
{
    rng_t r;
    rng_seed(&r, t->o.seed, 1000 + (uint64_t)epoch);
    for (int i = 0; i < t->train_count; i++)
        t->perm[i] = (uint32_t)i;
    for (int i = t->train_count - 1; i > 0; i--) {
        uint32_t j = (uint32_t)rng_below(&r, (uint64_t)i + 1), tmp = t->perm[i];
        t->perm[i] = t->perm[j];
        t->perm[j] = tmp;
    }
}

/*
 * One optimizer step. Returns 0, or -1 after an error was printed. *loss: mean over the
 * global batch; *stop: some rank was signalled.
 */
static int trainer_step(trainer_t *t, double *loss, int *stop)
{
    const train_opts_t *o = &t->o;
    long in_epoch = t->step % t->spe;
    int B = o->batch, k = o->accum;
    int lo = (int)((long)t->rank * B / t->size), hi = (int)((long)(t->rank + 1) * B / t->size);
    float scale = (float)t->size / ((float)B * (float)k);
    double *sums = t->sums;
    sums[0] = sums[1] = 0;
    for (int mb = 0; mb < k; mb++) {
        const uint32_t *idx = t->perm + (size_t)(in_epoch * k + mb) * B;
        int correct, last = mb == k - 1;
        ddp_begin(&t->ddp, last, mb == 0);
        data_gather(&t->train, idx + lo, hi - lo, t->x, t->y);
        mlp_forward(&t->m, t->x, hi - lo);
        sums[0] += mlp_loss(&t->m, t->y, hi - lo, scale, &correct);
        if (last) {
            sums[1] = trainer_stop_signal ? 1.0 : 0.0;
            ddp_set_scalars(&t->ddp, sums, 2);
        }
        if (mlp_backward(&t->m, hi - lo, mb > 0, ddp_hook, &t->ddp))
            return -1;
    }
    if (ddp_flush(&t->ddp) != RDX_SUCCESS)
        return -1;
    float lr = (float)sgd_lr(&t->opt, t->step);
    for (int b = 0; b < t->ddp.nbuckets; b++) {
        if (ddp_wait(&t->ddp, b) != RDX_SUCCESS)
            return -1;
        sgd_apply(&t->opt, &t->m, t->ddp.b[b].off, t->ddp.b[b].count, lr);
    }
    if (ddp_wait_scalars(&t->ddp) != RDX_SUCCESS)
        return -1;
    *loss = sums[0] / ((double)B * k);
    *stop = sums[1] > 0;
    return 0;
}

/* Test loss and accuracy: each rank evaluates its contiguous share, then one sum. */
static int trainer_evaluate(trainer_t *t, double *acc, double *loss)
{
    int lo = (int)((long)t->rank * t->test_count / t->size);
    int hi = (int)((long)(t->rank + 1) * t->test_count / t->size);
    double sums[2] = {0, 0};
    uint32_t idx[EVAL_ROWS];
    for (int i = lo; i < hi; i += EVAL_ROWS) {
        int rows = hi - i < EVAL_ROWS ? hi - i : EVAL_ROWS, correct;
        for (int r = 0; r < rows; r++)
            idx[r] = (uint32_t)(i + r);
        data_gather(&t->test, idx, rows, t->x, t->y);
        mlp_forward(&t->m, t->x, rows);
        sums[0] += mlp_eval(&t->m, t->y, rows, &correct);
        sums[1] += correct;
    }
    if (coll_report(t->comm, rdx_allreduce(t->comm, sums, sums, 2, RDX_FLOAT64, RDX_SUM),
                    "allreduce (test evaluation)"))
        return -1;
    *loss = sums[0] / t->test_count;
    *acc = sums[1] / t->test_count;
    return 0;
}

/* Rank 0 writes the flat parameters as raw float32 (docs/trainer.md gives the layout). */
static int trainer_save_weights(trainer_t *t)
{
    if (!t->o.save_weights || t->rank != 0)
        return 0;
    FILE *f = fopen(t->o.save_weights, "wb");
    int ok = f && fwrite(t->m.params, sizeof(float), t->m.nparams, f) == t->m.nparams;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : trainer_fail(t, "--save-weights %s: write failed", t->o.save_weights);
}

/*
 * Test seam: TRAINER_INJECT_DIVERGENCE=RANK:STEP makes RANK nudge one weight after STEP,
 * so the tests can see the cross-rank weight check catch it. Never set in normal runs.
 */
static void trainer_inject_divergence(trainer_t *t)
{
    static int parsed, rank = -1;
    static long step = -1;
    if (!parsed) {
        const char *v = getenv("TRAINER_INJECT_DIVERGENCE");
        parsed = 1;
        if (v && sscanf(v, "%d:%ld", &rank, &step) != 2)
            rank = -1;
    }
    if (rank == t->rank && step == t->step)
        t->m.params[t->m.nparams - 1] += 1e-3f;
}

static int trainer_checkpoint(trainer_t *t)
{
    if (!t->o.ckpt_dir || t->last_ckpt == t->step)
        return 0;
    char err[4608];
    ckpt_data_t c = trainer_ckpt_data(t);
    if (ckpt_save(t->o.ckpt_dir, &c, err, sizeof err))
        return trainer_fail(t, "%s", err);
    t->last_ckpt = t->step;
    return 0;
}

static void trainer_banner(trainer_t *t)
{
    char dims[128] = "";
    size_t n = 0;
    for (int i = 0; i < t->o.ndims && n < sizeof dims - 12; i++)
        n += (size_t)snprintf(dims + n, sizeof dims - n, "%s%d", i ? "-" : "", t->o.dims[i]);
    report_line(&t->rep, "rdx-train: %d rank%s (%s), model %s (%zu params), global batch %d "
                "x accum %d (%d-%d per rank), %ld steps/epoch, %d gradient bucket%s, wire %s%s, "
                "overlap %s (progress %s), %.2f MB/step sent per rank\n", t->size, t->size > 1 ? "s" : "",
                rdx_comm_transport(t->comm), dims, t->m.nparams, t->o.batch, t->o.accum,
                t->o.batch / t->size, (t->o.batch + t->size - 1) / t->size, t->spe,
                t->ddp.nbuckets, t->ddp.nbuckets > 1 ? "s" : "", opts_wire_name(t->o.wire),
                t->o.topk > 0 ? " top-k" : "", t->o.overlap ? "on" : "off",
                t->o.progress_thread ? "thread" : "calls",
                (double)ddp_step_wire_bytes(&t->ddp) / 1e6);
}

static int trainer_epoch_end(trainer_t *t, int epoch, double loss_sum, long steps,
                             double *acc, double *tloss)
{
    if (trainer_evaluate(t, acc, tloss) || trainer_check_weights(t))
        return -1;
    report_epoch_end(&t->rep, epoch, steps ? loss_sum / steps : 0, *acc, *tloss);
    return 0;
}

static int trainer_run(trainer_t *t, double *acc, double *tloss)
{
    long total = t->spe * t->o.epochs;
    if (t->o.max_steps > 0 && t->o.max_steps < total)
        total = t->o.max_steps;
    int evaluated = 0;
    while (t->step < total) {
        long epoch = t->step / t->spe, steps = 0;
        double loss_sum = 0;
        int stop = 0;
        trainer_shuffle(t, epoch);
        report_epoch_begin(&t->rep, t->step);
        do {
            double t0 = ddp_now_ms(), loss;
            if (trainer_step(t, &loss, &stop))
                return -1;
            t->step++;
            steps++;
            trainer_inject_divergence(t);
            loss_sum += loss;
            double ms = ddp_now_ms() - t0;
            const ddp_stats_t *s = &t->ddp.stats;
            report_step_t rs = {t->step, (int)epoch + 1, loss, sgd_lr(&t->opt, t->step - 1), ms,
                                ms - s->exposed_ms, s->comm_ms, s->exposed_ms, s->bytes_sent};
            report_step(&t->rep, &rs);
            if (t->o.check_every > 0 && t->step % t->o.check_every == 0 && trainer_check_weights(t))
                return -1;
            if (t->step % t->o.ckpt_every == 0 && trainer_checkpoint(t))
                return -1;
        } while (!stop && t->step < total && t->step % t->spe != 0);
        evaluated = t->step % t->spe == 0;
        if (evaluated && trainer_epoch_end(t, (int)epoch + 1, loss_sum, steps, acc, tloss))
            return -1;
        if (stop) {
            report_line(&t->rep, "rdx-train: stopped by a signal after step %ld\n", t->step);
            break;
        }
    }
    if (!evaluated && (trainer_evaluate(t, acc, tloss) || trainer_check_weights(t)))
        return -1;
    return trainer_checkpoint(t) || trainer_save_weights(t) ? -1 : 0;
}

static void trainer_cleanup(trainer_t *t)
{
    report_close(&t->rep);
    ddp_destroy(&t->ddp);
    free(t->y);
    free(t->x);
    free(t->perm);
    sgd_destroy(&t->opt);
    mlp_destroy(&t->m);
    data_free(&t->test);
    data_free(&t->train);
}

int main(int argc, char **argv)
{
    static trainer_t t;
    char err[512];
    opts_defaults(&t.o);
    int rc = opts_parse(&t.o, argc, argv, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "rdx-train: %s\n", err);
        return rc < 0 ? 2 : 0;
    }
    openblas_set_num_threads(t.o.threads);
    rdx_status_t st = rdx_comm_init(&t.comm, NULL);
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rdx-train: rdx_comm_init: %s (started by rdx-run, srun or mpirun? "
                "see RDX_LOG=debug)\n", rdx_strerror(st));
        return 1;
    }
    t.rank = rdx_comm_rank(t.comm);
    t.size = rdx_comm_size(t.comm);
    t.last_ckpt = -1;
    struct sigaction sa = {.sa_handler = trainer_on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    double t0 = ddp_now_ms(), acc = 0, tloss = 0;
    rc = trainer_load_data(&t);
    rc = rc ? rc : trainer_plan(&t);
    rc = rc ? rc : trainer_alloc(&t);
    rc = rc ? rc : report_open(&t.rep, t.rank, t.o.quiet, t.o.metrics, t.o.log_every,
                               t.o.epochs, t.spe, (long)t.o.batch * t.o.accum);
    if (rc == 0)
        trainer_banner(&t);
    rc = rc ? rc : trainer_init_weights(&t);
    rc = rc ? rc : trainer_run(&t, &acc, &tloss);
    if (rc == 0 && t.rank == 0) {
        report_close(&t.rep);
        double secs = (ddp_now_ms() - t0) / 1e3;
        printf("rdx-train: done: %ld steps, test_acc %.2f%% test_loss %.4f, %.1f s, weights "
               "0x%016" PRIx64 "\n", t.step, 100.0 * acc, tloss, secs,
               fnv_hash(t.m.params, t.m.nparams * sizeof(float), FNV_INIT));
    }
    trainer_cleanup(&t);
    st = rdx_comm_destroy(t.comm);
    if (rc == 0 && st != RDX_SUCCESS)
        rc = coll_report(NULL, st, "rdx_comm_destroy") ? -1 : 0;
    return rc == 0 ? 0 : 1;
}
