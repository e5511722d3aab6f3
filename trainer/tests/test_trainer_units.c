/*
 * Unit tests of the trainer's parts that need no communicator: the MLP's backward against
 * finite differences of an independent double-precision forward, gradient accumulation and
 * the frontier the overlap relies on, fp16/bf16 rounding, top-k selection, the IDX loader's
 * validation, checkpoints, the learning-rate schedule and option parsing.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "ckpt.h"
#include "data.h"
#include "half.h"
#include "mlp.h"
#include "opts.h"
#include "rng.h"
#include "sgd.h"
#include "topk.h"

/* ---- backward vs finite differences ------------------------------------------------- */

#define FD_ROWS 5
static const int fd_dims[] = {7, 6, 5, 4};

/* Independent reference: summed cross-entropy in double from double parameters. */
static double ref_loss(const mlp_t *m, const double *p, const float *x, const uint8_t *y,
                       int rows)
{
    double total = 0.0, a[64], z[64];
    for (int r = 0; r < rows; r++) {
        int n = m->layer[0].din;
        for (int i = 0; i < n; i++)
            a[i] = x[r * n + i];
        for (int l = 0; l < m->nlayers; l++) {
            const mlp_layer_t *ly = &m->layer[l];
            for (int j = 0; j < ly->dout; j++) {
                double s = p[ly->b_off + j];
                for (int i = 0; i < ly->din; i++)
                    s += p[ly->w_off + (size_t)j * ly->din + i] * a[i];
                z[j] = (l < m->nlayers - 1 && s < 0) ? 0 : s;
            }
            memcpy(a, z, sizeof(double) * ly->dout);
            n = ly->dout;
        }
        double mx = a[0], sum = 0;
        for (int j = 1; j < n; j++)
            mx = a[j] > mx ? a[j] : mx;
        for (int j = 0; j < n; j++)
            sum += exp(a[j] - mx);
        total += log(sum) + mx - a[y[r]];
    }
    return total;
}

static void fd_setup(mlp_t *m, float *x, uint8_t *y)
{
    cr_assert_eq(mlp_create(m, fd_dims, 4, FD_ROWS), 0);
    mlp_init_params(m, 7);
    rng_t r;
    rng_seed(&r, 99, 0);
    for (size_t i = 0; i < m->nparams; i++) /* non-zero biases too */
        m->params[i] += (float)(0.1 * rng_normal(&r));
    for (int i = 0; i < FD_ROWS * fd_dims[0]; i++)
        x[i] = (float)rng_normal(&r);
    for (int i = 0; i < FD_ROWS; i++)
        y[i] = (uint8_t)rng_below(&r, 4);
}

/*
 * The analytic gradient (fp32 forward/backward, sgemm) against central differences of the
 * double reference with h = 1e-5: the reference's own error is ~1e-9 (rounding 1e-16 * L / h
 * plus truncation h^2), so what is compared is the fp32 rounding of backward, measured at
 * a few 1e-7 here. Tolerance: |analytic - numeric| <= 1e-5 + 1e-4 |numeric|, two orders
 * above that and far below what a wrong index, transpose or missing ReLU mask gives (O(|g|)).
 */
Test(mlp, backward_matches_finite_differences, .timeout = 30)
{
    mlp_t m;
    float x[FD_ROWS * 7];
    uint8_t y[FD_ROWS];
    fd_setup(&m, x, y);
    int correct;
    mlp_forward(&m, x, FD_ROWS);
    double lf = mlp_loss(&m, y, FD_ROWS, 1.0f, &correct);
    cr_assert_eq(mlp_backward(&m, FD_ROWS, 0, NULL, NULL), 0);

    double *p = malloc(m.nparams * sizeof *p);
    for (size_t i = 0; i < m.nparams; i++)
        p[i] = m.params[i];
    double ld = ref_loss(&m, p, x, y, FD_ROWS);
    cr_assert(fabs(lf - ld) <= 1e-5 * fabs(ld), "forward: fp32 loss %.9g vs reference %.9g", lf, ld);

    const double h = 1e-5;
    double worst = 0;
    for (size_t i = 0; i < m.nparams; i++) {
        double keep = p[i];
        p[i] = keep + h;
        double lp = ref_loss(&m, p, x, y, FD_ROWS);
        p[i] = keep - h;
        double lm = ref_loss(&m, p, x, y, FD_ROWS);
        p[i] = keep;
        double num = (lp - lm) / (2 * h), ana = m.grads[i], err = fabs(ana - num);
        worst = err > worst ? err : worst;
        cr_assert(err <= 1e-5 + 1e-4 * fabs(num),
                  "parameter %zu: analytic %.9g vs numeric %.9g", i, ana, num);
    }
    cr_log_info("max |analytic - numeric| = %.3g over %zu parameters", worst, m.nparams);
    free(p);
    mlp_destroy(&m);
}

/* accumulate=1 adds: two identical backward passes give exactly twice the gradient. */
Test(mlp, accumulate_adds, .timeout = 10)
{
    mlp_t m;
    float x[FD_ROWS * 7];
    uint8_t y[FD_ROWS];
    int correct;
    fd_setup(&m, x, y);
    mlp_forward(&m, x, FD_ROWS);
    mlp_loss(&m, y, FD_ROWS, 0.5f, &correct);
    mlp_backward(&m, FD_ROWS, 0, NULL, NULL);
    float *once = malloc(m.nparams * sizeof *once);
    memcpy(once, m.grads, m.nparams * sizeof *once);
    mlp_forward(&m, x, FD_ROWS);
    mlp_loss(&m, y, FD_ROWS, 0.5f, &correct);
    mlp_backward(&m, FD_ROWS, 1, NULL, NULL);
    for (size_t i = 0; i < m.nparams; i++)
        cr_assert_eq(m.grads[i], 2.0f * once[i], "element %zu", i);
    free(once);
    mlp_destroy(&m);
}

typedef struct frontier_log { size_t last; int calls, backwards; size_t first; } frontier_log_t;

static int frontier_hook(void *ctx, size_t ready)
{
    frontier_log_t *f = ctx;
    if (ready < f->last)
        f->backwards++;
    if (f->calls++ == 0)
        f->first = ready;
    f->last = ready;
    return 0;
}

/* The overlap depends on this: the frontier only grows, starts right after the last
 * layer's bias, and reaches the end; gradients past the frontier are not yet written. */
Test(mlp, frontier_is_monotone_and_complete, .timeout = 10)
{
    static const int dims[] = {784, 300, 200, 10};
    mlp_t m;
    cr_assert_eq(mlp_create(&m, dims, 4, 64), 0);
    mlp_init_params(&m, 1);
    float *x = calloc(64 * 784, sizeof *x);
    uint8_t y[64] = {0};
    for (int i = 0; i < 64 * 784; i++)
        x[i] = (float)(i % 13) / 13.0f;
    int correct;
    mlp_forward(&m, x, 64);
    mlp_loss(&m, y, 64, 1.0f, &correct);
    frontier_log_t f = {0, 0, 0, 0};
    cr_assert_eq(mlp_backward(&m, 64, 0, frontier_hook, &f), 0);
    cr_assert_eq(f.backwards, 0);
    cr_assert_eq(f.first, m.layer[2].w_off);
    cr_assert_eq(f.last, m.nparams);
    cr_assert_gt(f.calls, 10, "backward should call the hook between sgemm pieces (%d calls)",
                 f.calls);
    free(x);
    mlp_destroy(&m);
}

/* ---- fp16 / bf16 -------------------------------------------------------------------- */

Test(half, fp16_round_trip_and_rounding, .timeout = 10)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = half_to_float((uint16_t)h);
        if (isnan(f))
            continue;
        cr_assert_eq(half_from_float(f), h, "0x%04x -> %g -> 0x%04x", h, f, half_from_float(f));
    }
    cr_assert_eq(half_from_float(1.0f), 0x3c00);
    cr_assert_eq(half_from_float(65504.0f), 0x7bff);
    cr_assert_eq(half_from_float(65519.0f), 0x7bff);
    cr_assert_eq(half_from_float(65520.0f), 0x7c00);            /* ties to even: overflow */
    cr_assert_eq(half_from_float(0x1p-24f), 0x0001);            /* smallest subnormal */
    cr_assert_eq(half_from_float(0x1p-25f), 0x0000);            /* tie to even: zero */
    cr_assert_eq(half_from_float(0x1.8p-25f), 0x0001);
    cr_assert_eq(half_from_float(1.0f + 0x1p-11f), 0x3c00);     /* tie to even: down */
    cr_assert_eq(half_from_float(1.0f + 0x3p-11f), 0x3c02);     /* tie to even: up */
    cr_assert_eq(half_from_float(-2.0f), 0xc000);
    cr_assert_eq(half_from_float(NAN) & 0x7e00, 0x7e00);
}

Test(half, bf16_rounding, .timeout = 10)
{
    cr_assert_eq(bf16_from_float(1.0f), 0x3f80);
    cr_assert_eq(bf16_from_float(1.0f + 0x1p-8f), 0x3f80);      /* tie to even: down */
    cr_assert_eq(bf16_from_float(1.0f + 0x3p-8f), 0x3f82);      /* tie to even: up */
    cr_assert_eq(bf16_to_float(0xc040), -3.0f);
    uint16_t w[3];
    float in[3] = {0.5f, -0.25f, 3.0f}, out[3];
    bf16_pack(w, in, 3, 1.0f);
    bf16_unpack(out, w, 3, 0.5f);
    cr_assert(out[0] == 0.25f && out[1] == -0.125f && out[2] == 1.5f);
}

/* ---- top-k -------------------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

Test(topk, selects_largest_magnitudes_and_keeps_the_rest, .timeout = 10)
{
    enum { N = 1000, K = 17 };
    float acc[N], orig[N], scratch[N], sorted[N];
    uint32_t idx[K], val[K];
    rng_t r;
    rng_seed(&r, 5, 0);
    for (int i = 0; i < N; i++) {
        acc[i] = orig[i] = (float)rng_normal(&r);
        sorted[i] = fabsf(orig[i]);
    }
    acc[3] = orig[3] = sorted[3] = 0; /* a zero must never be chosen */
    qsort(sorted, N, sizeof(float), cmp_desc);
    topk_take(acc, scratch, N, K, idx, val);
    float smallest_sent = INFINITY;
    for (int j = 0; j < K; j++) {
        float v;
        memcpy(&v, &val[j], 4);
        cr_assert_lt(idx[j], N);
        cr_assert_eq(v, orig[idx[j]]);
        cr_assert_eq(acc[idx[j]], 0.0f, "sent entries leave the residual");
        smallest_sent = fabsf(v) < smallest_sent ? fabsf(v) : smallest_sent;
    }
    cr_assert_eq(smallest_sent, sorted[K - 1], "the k-th largest magnitude is the smallest sent");
    int kept = 0;
    for (int i = 0; i < N; i++)
        kept += acc[i] == orig[i];
    cr_assert_eq(kept, N - K, "everything not sent stays in the residual");
}

/* Large inputs take the sampled-threshold path: it must select exactly what a full sort
 * does, including ties at the threshold (quantised values make many), by index. */
Test(topk, sampled_path_is_exact, .timeout = 20)
{
    enum { N = 200000 };
    static float acc[N], orig[N], scratch[N], ref[N];
    static uint32_t idx[N], val[N];
    rng_t r;
    rng_seed(&r, 11, 0);
    for (int round = 0; round < 3; round++) {
        size_t k = round == 0 ? 2000 : round == 1 ? 37 : 50000;
        for (int i = 0; i < N; i++) /* round 1: heavy ties (values on a coarse grid) */
            acc[i] = orig[i] = round == 1 ? (float)((int)(rng_normal(&r) * 4)) / 4.0f
                                          : (float)rng_normal(&r);
        for (int i = 0; i < N; i++)
            ref[i] = fabsf(orig[i]);
        qsort(ref, N, sizeof(float), cmp_desc);
        float t = ref[k - 1];
        size_t above = 0;
        while (above < k && ref[above] > t)
            above++;
        topk_take(acc, scratch, N, k, idx, val);
        size_t ties_left = k - above, j = 0;
        for (int i = 0; i < N; i++) { /* the reference choice, in index order */
            float m = fabsf(orig[i]);
            int take = m > t || (m == t && ties_left > 0 && m != 0.0f);
            if (!take)
                continue;
            ties_left -= m == t;
            cr_assert_lt(j, k);
            cr_assert_eq(idx[j], (uint32_t)i, "round %d, pick %zu: got index %u, want %d",
                         round, j, idx[j], i);
            j++;
        }
        cr_assert_eq(j, k);
    }
}

Test(topk, ties_and_zeros_are_deterministic, .timeout = 10)
{
    float acc[8] = {1, -1, 1, 0, 1, 0, 0, -1}, scratch[8];
    uint32_t idx[3], val[3];
    topk_take(acc, scratch, 8, 3, idx, val);
    cr_assert(idx[0] == 0 && idx[1] == 1 && idx[2] == 2, "ties go by index: %u %u %u",
              idx[0], idx[1], idx[2]);
    float z[4] = {0, 0, 2, 0}, zs[4];
    uint32_t zi[3], zv[3];
    topk_take(z, zs, 4, 3, zi, zv);
    cr_assert(zi[0] == 2 && zi[1] == 0 && zv[1] == 0 && zi[2] == 0 && zv[2] == 0,
              "padding is (0, +0.0)");
    float many[1000];
    for (int i = 0; i < 1000; i++)
        many[i] = (float)(i % 3); /* heavy duplicates */
    cr_assert_eq(topk_kth_largest(many, 1000, 400), 1.0f);
}

/* ---- IDX loading -------------------------------------------------------------------- */

static void write_gz(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gz", dir, name);
    gzFile f = gzopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(gzwrite(f, p, (unsigned)n), (int)n);
    gzclose(f);
}

static void write_set(const char *dir, uint32_t img_magic, int images, int labels, int extra)
{
    uint8_t img[16 + 3 * 4 + 4] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
    img[2] = (uint8_t)(img_magic >> 8);
    img[3] = (uint8_t)img_magic;
    img[7] = (uint8_t)images;
    for (int i = 0; i < 12; i++)
        img[16 + i] = (uint8_t)(i * 20);
    uint8_t lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 4, 9, 0};
    lab[7] = (uint8_t)labels;
    write_gz(dir, "train-images-idx3-ubyte", img, 16 + 12 + (size_t)extra);
    write_gz(dir, "train-labels-idx1-ubyte", lab, sizeof lab);
}

static char *load_error(const char *dir)
{
    static char err[1024];
    dataset_t d;
    err[0] = '\0';
    if (data_load(&d, dir, "train", err, sizeof err) == 0) {
        data_free(&d);
        return NULL;
    }
    return err;
}

Test(data, loads_and_validates_idx, .timeout = 10)
{
    char dir[] = "/tmp/rdx-train-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    write_set(dir, 0x803, 3, 3, 0);
    dataset_t d;
    char err[1024];
    cr_assert_eq(data_load(&d, dir, "train", err, sizeof err), 0, "%s", err);
    cr_assert(d.count == 3 && d.pixels == 4 && d.images[5] == 100 && d.labels[1] == 9);
    float x[4];
    uint8_t y;
    uint32_t one = 2;
    data_gather(&d, &one, 1, x, &y);
    cr_assert(y == 0 && fabsf(x[0] - (160.0f / 255.0f - 0.2860f) / 0.3530f) < 1e-5f);
    data_free(&d);

    char *e;
    write_set(dir, 0x801, 3, 3, 0);
    cr_assert(e = load_error(dir), "bad magic accepted");
    cr_assert_not_null(strstr(e, "bad magic 0x00000801"), "%s", e);
    write_set(dir, 0x803, 4, 3, 0);
    cr_assert(e = load_error(dir), "short payload accepted");
    cr_assert_not_null(strstr(e, "truncated"), "%s", e);
    write_set(dir, 0x803, 3, 3, 4);
    cr_assert(e = load_error(dir), "trailing data accepted");
    cr_assert_not_null(strstr(e, "trailing data"), "%s", e);
    write_set(dir, 0x803, 2, 3, -4);
    cr_assert(e = load_error(dir), "count mismatch accepted");
    cr_assert_not_null(strstr(e, "2 images but"), "%s", e);
    cr_assert(e = load_error("/nonexistent-dir"), "missing files accepted");
    cr_assert_not_null(strstr(e, "dataset-fashion-mnist"), "%s", e);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- checkpoints -------------------------------------------------------------------- */

Test(ckpt, round_trip_corruption_and_pruning, .timeout = 10)
{
    char dir[] = "/tmp/rdx-train-ckpt-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    float p[5] = {1, 2, 3, 4, 5}, v[5] = {-1, -2, -3, -4, -5}, res[5] = {9, 8, 7, 6, 5};
    ckpt_data_t c = {.rank = 1, .ranks = 2, .params = p, .mom = v, .resid = res,
                     .nparams = 5, .nresid = 5};
    snprintf(c.fingerprint, sizeof c.fingerprint, "layers=a");
    char err[2048];
    for (int64_t s = 10; s <= 40; s += 10) {
        c.step = s;
        p[0] = (float)s;
        cr_assert_eq(ckpt_save(dir, &c, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(ckpt_latest(dir, 1), 40);
    cr_assert_eq(ckpt_latest(dir, 0), -1);
    char path[700];
    snprintf(path, sizeof path, "%s/ckpt-r1-s%08d.bin", dir, 20);
    cr_assert_neq(access(path, F_OK), 0, "step 20 should have been pruned");

    float p2[5], v2[5], r2[5];
    ckpt_data_t l = c;
    l.params = p2;
    l.mom = v2;
    l.resid = r2;
    l.step = 30;
    cr_assert_eq(ckpt_load(dir, &l, err, sizeof err), 0, "%s", err);
    cr_assert(p2[0] == 30 && p2[4] == 5 && v2[2] == -3 && r2[1] == 8);

    snprintf(l.fingerprint, sizeof l.fingerprint, "layers=b");
    cr_assert_neq(ckpt_load(dir, &l, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "options differ"), "%s", err);
    l = c;
    l.params = p2, l.mom = v2, l.resid = r2, l.step = 40, l.ranks = 3;
    cr_assert_neq(ckpt_load(dir, &l, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "same rank count"), "%s", err);

    snprintf(path, sizeof path, "%s/ckpt-r1-s%08d.bin", dir, 40);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, -10, SEEK_END);
    fputc(0x5a, f);
    fclose(f);
    l.ranks = 2;
    cr_assert_neq(ckpt_load(dir, &l, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, "corrupted"), "%s", err);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- optimizer ---------------------------------------------------------------------- */

Test(sgd, warmup_cosine_and_update, .timeout = 10)
{
    sgd_t o = {.lr = 0.1, .momentum = 0.9, .wd = 0.01, .warmup = 10, .total = 100, .cosine = 1};
    cr_assert_float_eq(sgd_lr(&o, 0), 0.1 * 0.1 * 1.0, 1e-12);
    cr_assert_float_eq(sgd_lr(&o, 50), 0.1 * 0.5, 1e-12);
    o.cosine = 0;
    cr_assert_float_eq(sgd_lr(&o, 4), 0.05, 1e-12);
    cr_assert_float_eq(sgd_lr(&o, 99), 0.1, 1e-12);

    static const int dims[] = {2, 1};
    mlp_t m;
    cr_assert_eq(mlp_create(&m, dims, 2, 1), 0);
    cr_assert_eq(sgd_create(&o, m.nparams), 0); /* layout: b0 | w0 w1 */
    m.params[0] = 1.0f, m.params[1] = 2.0f, m.params[2] = -2.0f;
    m.grads[0] = 0.5f, m.grads[1] = 1.0f, m.grads[2] = 1.0f;
    sgd_apply(&o, &m, 0, 3, 0.1f);
    cr_assert_float_eq(m.params[0], 1.0f - 0.1f * 0.5f, 1e-7, "no weight decay on biases");
    cr_assert_float_eq(m.params[1], 2.0f - 0.1f * (1.0f + 0.01f * 2.0f), 1e-7);
    cr_assert_float_eq(m.params[2], -2.0f - 0.1f * (1.0f - 0.01f * 2.0f), 1e-7);
    sgd_apply(&o, &m, 0, 1, 0.1f); /* momentum: v = 0.9 * 0.5 + 0.5 */
    cr_assert_float_eq(m.params[0], 0.95f - 0.1f * 0.95f, 1e-6);
    sgd_destroy(&o);
    mlp_destroy(&m);
}

/* ---- options ------------------------------------------------------------------------ */

static int parse(train_opts_t *o, char *err, size_t len, const char *line)
{
    char buf[512], *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "rdx-train %s", line);
    for (char *t = strtok(buf, " "); t && argc < 31; t = strtok(NULL, " "))
        argv[argc++] = t;
    opts_defaults(o);
    return opts_parse(o, argc, argv, err, len);
}

Test(opts, parses_and_rejects_with_reasons, .timeout = 10)
{
    train_opts_t o;
    char err[512];
    cr_assert_eq(parse(&o, err, sizeof err, "--layers 784,64,10 --batch=64 --grad-dtype bf16 "
                       "--no-overlap --lr 0.1"), 0, "%s", err);
    cr_assert(o.ndims == 3 && o.dims[1] == 64 && o.batch == 64 && o.wire == 2 && !o.overlap &&
              o.lr == 0.1);
    struct { const char *line, *want; } bad[] = {
        {"--grad-dtype fp8", "want fp32, fp16 or bf16"},
        {"--layers 784,0,10", "positive widths"},
        {"--layers 784,64,9", "last width must be 10"},
        {"--topk 0.01 --grad-dtype fp16", "do not combine"},
        {"--batch x", "not a valid integer"},
        {"--resume", "needs --checkpoint-dir"},
        {"--bogus", "unknown option"},
        {"--epochs", "needs a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(parse(&o, err, sizeof err, bad[i].line), -1, "%s accepted", bad[i].line);
        cr_assert_not_null(strstr(err, bad[i].want), "%s: got '%s'", bad[i].line, err);
    }
}
