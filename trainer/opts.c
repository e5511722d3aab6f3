#include "opts.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "ddp.h"

typedef enum { OPT_INT, OPT_LONG, OPT_ULONG, OPT_DOUBLE, OPT_STR, OPT_SET, OPT_CLEAR,
               OPT_LAYERS, OPT_WIRE, OPT_DECAY, OPT_PROGRESS } opt_kind_t;

typedef struct opt_row {
    const char *name;
    opt_kind_t kind;
    size_t off;
    const char *arg;   /* metavar; NULL for flags */
    const char *help;
} opt_row_t;

#define F(field) offsetof(train_opts_t, field)
static const opt_row_t opt_table[] = {
    {"--data", OPT_STR, F(data_dir), "DIR", "IDX files (.gz or plain) [" DATA_DEFAULT_DIR "]"},
    {"--layers", OPT_LAYERS, 0, "LIST", "MLP widths, input first [784,512,512,10]"},
    {"--epochs", OPT_INT, F(epochs), "N", "passes over the training set [5]"},
    {"--batch", OPT_INT, F(batch), "N", "GLOBAL micro-batch, split across ranks [128]"},
    {"--accum", OPT_INT, F(accum), "K", "micro-batches per optimizer step; gradients are "
     "reduced once per step [1]"},
    {"--lr", OPT_DOUBLE, F(lr), "F", "peak learning rate [0.05]"},
    {"--momentum", OPT_DOUBLE, F(momentum), "F", "SGD momentum [0.9]"},
    {"--wd", OPT_DOUBLE, F(wd), "F", "weight decay on weights, not biases [5e-4]"},
    {"--warmup", OPT_LONG, F(warmup), "STEPS", "linear warmup steps [auto: 0 up to a "
     "batch of 256, else one epoch's worth, at most 500]"},
    {"--decay", OPT_DECAY, 0, "cosine|none", "learning-rate decay after warmup [cosine]"},
    {"--seed", OPT_ULONG, F(seed), "N", "weights and data order [42]"},
    {"--threads", OPT_INT, F(threads), "N", "OpenBLAS threads per rank [1]"},
    {"--bucket-mb", OPT_DOUBLE, F(bucket_mb), "F", "gradient bucket size; the first is a "
     "quarter of it [0.5]"},
    {"--no-overlap", OPT_CLEAR, F(overlap), NULL, "reduce the whole gradient after "
     "backward (for comparison)"},
    {"--progress", OPT_PROGRESS, 0, "calls|thread", "who drives communication during "
     "backward: the training thread between sgemm pieces, or a helper thread [thread]"},
    {"--grad-dtype", OPT_WIRE, 0, "fp32|fp16|bf16", "gradient type on the wire [fp32]"},
    {"--topk", OPT_DOUBLE, F(topk), "FRAC", "send only this fraction of each bucket "
     "(largest, with error feedback); 0: off [0]"},
    {"--checkpoint-dir", OPT_STR, F(ckpt_dir), "DIR", "write checkpoints here"},
    {"--checkpoint-every", OPT_LONG, F(ckpt_every), "N", "steps between checkpoints; one is "
     "always written at the end [500]"},
    {"--resume", OPT_SET, F(resume), NULL, "continue from the newest checkpoint in "
     "--checkpoint-dir (start fresh if there is none)"},
    {"--metrics", OPT_STR, F(metrics), "FILE", "JSON lines: one per step, one per epoch "
     "(rank 0; every rank if FILE contains %r, replaced by the rank)"},
    {"--save-weights", OPT_STR, F(save_weights), "FILE", "at the end, rank 0 writes the "
     "parameters as raw float32 in the flat layout of docs/trainer.md"},
    {"--check-every", OPT_LONG, F(check_every), "N", "compare a weight hash across ranks "
     "every N steps and at each epoch end; 0: only at epoch ends [100]"},
    {"--log-every", OPT_LONG, F(log_every), "N", "plain progress line every N steps when "
     "not on a terminal [auto: ~10 per epoch]"},
    {"--max-steps", OPT_LONG, F(max_steps), "N", "stop after N optimizer steps in total "
     "(checkpoints as at the end)"},
    {"--train-limit", OPT_LONG, F(train_limit), "N", "use the first N training samples"},
    {"--test-limit", OPT_LONG, F(test_limit), "N", "use the first N test samples"},
    {"--quiet", OPT_SET, F(quiet), NULL, "only errors and the final line"},
};
#undef F
#define OPT_ROWS (sizeof opt_table / sizeof opt_table[0])

void opts_defaults(train_opts_t *o)
{
    static const int dims[] = {784, 512, 512, 10};
    memset(o, 0, sizeof *o);
    o->data_dir = DATA_DEFAULT_DIR;
    memcpy(o->dims, dims, sizeof dims);
    o->ndims = 4;
    o->epochs = 5;
    o->batch = 128;
    o->accum = 1;
    o->threads = 1;
    o->lr = 0.05;
    o->momentum = 0.9;
    o->wd = 5e-4;
    o->warmup = -1;
    o->cosine = 1;
    o->seed = 42;
    o->overlap = 1;
    o->progress_thread = 1;
    o->bucket_mb = 0.5;
    o->wire = DDP_WIRE_FP32;
    o->ckpt_every = 500;
    o->check_every = 100;
    o->log_every = -1;
    o->max_steps = -1;
    o->train_limit = -1;
    o->test_limit = -1;
}

const char *opts_wire_name(int wire)
{
    return wire == DDP_WIRE_FP16 ? "fp16" : wire == DDP_WIRE_BF16 ? "bf16" : "fp32";
}

void opts_usage(FILE *out)
{
    fprintf(out, "usage: rdx-train [options]   (one process per rank: rdx-run -n 4 "
            "rdx-train --epochs 5)\nTrains an MLP on Fashion-MNIST, data parallel over "
            "rdx.\n\n");
    for (size_t i = 0; i < OPT_ROWS; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", opt_table[i].name, opt_table[i].arg ? " " : "",
                 opt_table[i].arg ? opt_table[i].arg : "");
        fprintf(out, "  %-28s %s\n", left, opt_table[i].help);
    }
    fprintf(out, "  %-28s %s\n", "--help", "this text");
}

static int opts_layers(train_opts_t *o, const char *s, char *err, size_t errlen)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v <= 0 || v > 65536 || n > MLP_MAX_LAYERS ||
            (*end != ',' && *end != '\0')) {
            snprintf(err, errlen, "--layers %s: want 2 to %d positive widths separated by "
                     "commas, e.g. 784,512,512,10", s, MLP_MAX_LAYERS + 1);
            return -1;
        }
        o->dims[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (n < 2) {
        snprintf(err, errlen, "--layers %s: need at least input and output widths", s);
        return -1;
    }
    o->ndims = n;
    return 0;
}

static int opts_number(const opt_row_t *r, void *field, const char *v, char *err,
                       size_t errlen)
{
    char *end;
    errno = 0;
    if (r->kind == OPT_DOUBLE) {
        double d = strtod(v, &end);
        if (end != v && *end == '\0' && errno == 0) {
            *(double *)field = d;
            return 0;
        }
    } else {
        long long x = strtoll(v, &end, 10);
        int ok = end != v && *end == '\0' && errno == 0;
        if (ok && r->kind == OPT_INT && x >= INT_MIN && x <= INT_MAX) {
            *(int *)field = (int)x;
            return 0;
        }
        if (ok && r->kind == OPT_LONG) {
            *(long *)field = (long)x;
            return 0;
        }
        if (ok && r->kind == OPT_ULONG && x >= 0) {
            *(unsigned long *)field = (unsigned long)x;
            return 0;
        }
    }
    snprintf(err, errlen, "%s %s: not a valid %s", r->name, v,
             r->kind == OPT_DOUBLE ? "number" : "integer");
    return -1;
}

static int opts_set(train_opts_t *o, const opt_row_t *r, const char *v, char *err,
                    size_t errlen)
{
    void *field = (char *)o + r->off;
    switch (r->kind) {
    case OPT_STR:
        *(const char **)field = v;
        return 0;
    case OPT_SET:
        *(int *)field = 1;
        return 0;
    case OPT_CLEAR:
        *(int *)field = 0;
        return 0;
    case OPT_LAYERS:
        return opts_layers(o, v, err, errlen);
    case OPT_WIRE:
        for (int w = DDP_WIRE_FP32; w <= DDP_WIRE_BF16; w++)
            if (strcmp(v, opts_wire_name(w)) == 0) {
                o->wire = w;
                return 0;
            }
        snprintf(err, errlen, "--grad-dtype %s: want fp32, fp16 or bf16", v);
        return -1;
    case OPT_PROGRESS:
        if (strcmp(v, "calls") == 0 || strcmp(v, "thread") == 0) {
            o->progress_thread = v[0] == 't';
            return 0;
        }
        snprintf(err, errlen, "--progress %s: want calls or thread", v);
        return -1;
    case OPT_DECAY:
        if (strcmp(v, "cosine") == 0 || strcmp(v, "none") == 0) {
            o->cosine = v[0] == 'c';
            return 0;
        }
        snprintf(err, errlen, "--decay %s: want cosine or none", v);
        return -1;
    default:
        return opts_number(r, field, v, err, errlen);
    }
}

/* Ranges that do not depend on the data or the rank count. */
static int opts_check(const train_opts_t *o, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (o->epochs < 1)
        bad = "--epochs must be >= 1";
    else if (o->batch < 1)
        bad = "--batch must be >= 1";
    else if (o->accum < 1)
        bad = "--accum must be >= 1";
    else if (o->threads < 1 || o->threads > 64)
        bad = "--threads must be 1..64";
    else if (!(o->lr > 0))
        bad = "--lr must be > 0";
    else if (!(o->momentum >= 0 && o->momentum < 1))
        bad = "--momentum must be in [0, 1)";
    else if (!(o->wd >= 0))
        bad = "--wd must be >= 0";
    else if (!(o->bucket_mb > 0))
        bad = "--bucket-mb must be > 0";
    else if (!(o->topk >= 0 && o->topk < 1))
        bad = "--topk must be in [0, 1) (0: off)";
    else if (o->topk > 0 && o->wire != DDP_WIRE_FP32)
        bad = "--topk sends fp32 values: do not combine it with --grad-dtype fp16/bf16";
    else if (o->resume && !o->ckpt_dir)
        bad = "--resume needs --checkpoint-dir";
    else if (o->ckpt_every < 1)
        bad = "--checkpoint-every must be >= 1";
    else if (o->check_every < 0)
        bad = "--check-every must be >= 0";
    else if (o->max_steps == 0 || o->max_steps < -1)
        bad = "--max-steps must be >= 1";
    else if (o->train_limit == 0 || o->train_limit < -1 || o->test_limit == 0 ||
             o->test_limit < -1)
        bad = "--train-limit / --test-limit must be >= 1";
    else if (o->dims[o->ndims - 1] != DATA_CLASSES)
        bad = "--layers: the last width must be 10 (the classes)";
    if (bad)
        snprintf(err, errlen, "%s", bad);
    return bad ? -1 : 0;
}

int opts_parse(train_opts_t *o, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            opts_usage(stdout);
            return 1;
        }
        /* --name=value or --name value */
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const opt_row_t *r = NULL;
        for (size_t j = 0; j < OPT_ROWS && !r; j++)
            if (strlen(opt_table[j].name) == nlen && strncmp(opt_table[j].name, a, nlen) == 0)
                r = &opt_table[j];
        if (!r) {
            snprintf(err, errlen, "unknown option %s (see --help)", a);
            return -1;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (r->arg && !v) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value (%s)", r->name, r->arg);
                return -1;
            }
            v = argv[++i];
        } else if (!r->arg && v) {
            snprintf(err, errlen, "%s takes no value", r->name);
            return -1;
        }
        if (opts_set(o, r, v, err, errlen))
            return -1;
    }
    return opts_check(o, err, errlen);
}

void opts_fingerprint(const train_opts_t *o, int ranks, int train_count, char *buf,
                      size_t len)
{
    char layers[256] = "";
    size_t n = 0;
    for (int i = 0; i < o->ndims && n < sizeof layers - 12; i++)
        n += (size_t)snprintf(layers + n, sizeof layers - n, "%s%d", i ? "," : "", o->dims[i]);
    snprintf(buf, len, "layers=%s ranks=%d train=%d epochs=%d batch=%d accum=%d lr=%.17g "
             "momentum=%.17g wd=%.17g warmup=%ld decay=%s seed=%lu grad-dtype=%s topk=%.17g "
             "overlap=%d bucket-mb=%.17g", layers, ranks, train_count, o->epochs, o->batch,
             o->accum, o->lr, o->momentum, o->wd, o->warmup, o->cosine ? "cosine" : "none",
             o->seed, opts_wire_name(o->wire), o->topk, o->overlap, o->bucket_mb);
}
