/*
 * rdx-perf: collective latency and bandwidth over a range of sizes, nccl-tests style, with
 * every size checked against a closed-form expected value.
 *
 *   rdx-run -n 4 rdx-perf [-C COLLECTIVE] [-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [-d DTYPE]
 *                         [-o OP] [-a ALGO] [-w WARMUP] [-n ITERS] [-c 0|1] [-i] [--bind]
 *                         [--json FILE]
 *
 * -C allreduce (default), reduce_scatter, allgather, broadcast or reduce (root 0). As in
 * nccl-tests, the size is the whole vector: reduce_scatter's input and allgather's output
 * (each rank's block is size/n, sizes rounded down to a multiple of n elements), and
 *   busbw = algbw x  2(n-1)/n  allreduce
 *                    (n-1)/n   reduce_scatter, allgather
 *                    1         broadcast, reduce
 * the bandwidth each rank's links carry in the bandwidth-optimal algorithm, comparable across
 * rank counts and with nccl-tests' figures.
 *
 * Measurement, per size:
 *   warmup   -w calls (default 5, 2 from 32 MiB up); the first is untimed (connection and
 *            registration set-up), the others give a per-call estimate. Without -n the
 *            iteration count is clamp(PERF_BUDGET_S / estimate, 5, 1000), where estimate is
 *            the slowest rank's (allreduce MAX) so that every rank runs the same count.
 *   time_us  mean time of one allreduce on the slowest rank: each rank times its own loop
 *            (after a one-element allreduce that lines the ranks up) and the per-rank means
 *            are combined with allreduce MAX.
 *   algbw    bytes / time (GB/s, 1 GB = 1e9 B); busbw = algbw x the factor above.
 *   wrong    after the timed loop the receive buffer is poisoned, the input restored (in
 *            place) and one more call checked element by element on every rank (reduce: on
 *            the root); the column is the total over ranks of elements that differ from the
 *            expected value: the reduction (allreduce, reduce, reduce_scatter: its block) or
 *            the contributing rank's input (allgather, broadcast), bit for bit.
 *
 * Inputs are periodic in the element index with a small prime period p chosen from n so that
 * every partial result is a small integer, exact in every datatype including int8, fp16 and
 * bf16 (n * (p + 1) <= 127). Element i of rank r, with j = i mod p:
 *   sum, min, max:  ((r + 1) * j + r) mod p      (rank-dependent permutations)
 *   prod:           2 if ((r + 1) * j + r) mod p == 0, else 1
 *   avg:            (j + 1) + d(r), d = +1/-1 on pairs of ranks, 0 on an unpaired last rank,
 *                   so the sum is n * (j + 1) and the average is exactly j + 1
 * Integer results beyond the range (only for n > 42) are compared modulo 2^bits, as the
 * library computes them. Float AVG multiplies by a rounded 1/n, so it may land one unit in
 * the last place from j + 1: it is accepted within (j + 1) * 2^-mantissa_bits.
 *
 * Exit status: 0 all right, 1 some element wrong, 2 an rdx call or the command line failed.
 */
#include <dirent.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "rdx/rdx.h"
#include "src/reduce.h"

#define PERF_BUDGET_S 0.3      /* target timed seconds per size when -n is not given */
#define PERF_ITERS_MIN 5
#define PERF_ITERS_MAX 1000
#define PERF_WARMUP_SMALL 5
#define PERF_WARMUP_LARGE 2
#define PERF_LARGE_BYTES ((size_t)32 << 20)
#define PERF_MAX_PERIOD 31
#define PERF_MAX_ROWS 128
#define PERF_POISON 0xA5

typedef struct perf_opts {
    size_t min_bytes;
    size_t max_bytes;
    size_t factor;
    rdx_dtype_t dtype;
    rdx_op_t op;
    const char *algo;     /* printed in the algo column */
    int algo_given;       /* -a given: exported as RDX_ALGO */
    int warmup;           /* < 0: by size */
    long iters;           /* 0: by size */
    int check;
    int in_place;
    int bind;
    const char *json;
    int coll;             /* -C: perf_coll_t */
    int pt2pt;            /* --pt2pt: point-to-point latency and bandwidth instead */
    int no_reg;           /* --no-reg: --pt2pt buffers not given to rdx_mem_register */
} perf_opts_t;

/* -C: the collective timed. */
typedef enum {
    PERF_ALLREDUCE, PERF_REDUCE_SCATTER, PERF_ALLGATHER, PERF_BROADCAST, PERF_REDUCE, PERF_NCOLL
} perf_coll_t;
static const char *const k_perf_coll_names[PERF_NCOLL] = {"allreduce", "reduce_scatter",
                                                          "allgather", "broadcast", "reduce"};

/* One period of this rank's input and of the expected result (p elements each), and the
 * inputs of every rank (allgather, broadcast). */
typedef struct perf_pattern {
    size_t period;
    size_t esize;
    unsigned char input[PERF_MAX_PERIOD * 8];
    unsigned char expect[PERF_MAX_PERIOD * 8];
    double expect_num[PERF_MAX_PERIOD];
    double tol_rel;       /* 0: bit-exact; else |got - expect| <= expect * tol_rel */
    unsigned char *inputs;    /* rank q's input period at q * period * esize */
    double *inputs_num;
} perf_pattern_t;

/* What one block of an output must hold: period elements (bit patterns and values),
 * starting at residue `first` of the input index. */
typedef struct perf_expect {
    const unsigned char *bits;
    const double *num;
    double tol_rel;
    size_t first;
} perf_expect_t;

typedef struct perf_row {
    size_t bytes;
    size_t count;
    double time_us;
    double algbw;
    double busbw;
    long long wrong;      /* -1: not checked */
} perf_row_t;

typedef struct perf_ctx {
    rdx_comm_t *comm;
    int rank;
    int size;
    perf_opts_t opts;
    perf_pattern_t pat;
    unsigned char *sendbuf;
    unsigned char *recvbuf;  /* == sendbuf in place */
    perf_row_t rows[PERF_MAX_ROWS];
    int nrows;
    char bind_desc[512];     /* "0->0 1->1 ..." after --bind */
} perf_ctx_t;

/* ---- errors and small helpers ---------------------------------------------------------- */

static void perf_die(const perf_ctx_t *ctx, const char *what, rdx_status_t st)
{
    const char *detail = (ctx && ctx->comm) ? rdx_comm_last_error(ctx->comm) : "";
    fprintf(stderr, "rdx-perf: rank %d: %s failed: %s%s%s\n", ctx ? ctx->rank : -1, what,
            rdx_strerror(st), detail[0] ? ": " : "", detail);
    fflush(stdout);
    exit(2);
}

#define PERF_CALL(ctx, call)                                                   \
    do {                                                                       \
        rdx_status_t perf_st_ = (call);                                        \
        if (perf_st_ != RDX_SUCCESS)                                           \
            perf_die((ctx), #call, perf_st_);                                  \
    } while (0)

static double perf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double perf_max_double(perf_ctx_t *ctx, double v)
{
    PERF_CALL(ctx, rdx_allreduce(ctx->comm, &v, &v, 1, RDX_FLOAT64, RDX_MAX));
    return v;
}

static long long perf_sum_ll(perf_ctx_t *ctx, long long v)
{
    int64_t x = v;
    PERF_CALL(ctx, rdx_allreduce(ctx->comm, &x, &x, 1, RDX_INT64, RDX_SUM));
    return (long long)x;
}

/* Lines the ranks up before a timed loop (the API has no barrier; a 1-element allreduce
 * cannot complete on any rank before every rank has entered it). */
static void perf_sync(perf_ctx_t *ctx)
{
    int32_t one = 1;
    PERF_CALL(ctx, rdx_allreduce(ctx->comm, &one, &one, 1, RDX_INT32, RDX_SUM));
}

/* ---- command line ---------------------------------------------------------------------- */

static void perf_usage(FILE *out)
{
    fprintf(out,
            "usage: rdx-perf [-C COLL] [-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [-d DTYPE]\n"
            "                [-o OP] [-a ALGO] [-w WARMUP] [-n ITERS] [-c 0|1] [-i] [--bind]\n"
            "                [--json FILE] [--pt2pt [--no-reg]]\n"
            "  -C       allreduce (default) reduce_scatter allgather broadcast reduce (root 0);\n"
            "           the size is the whole vector (reduce_scatter's input, allgather's output)\n"
            "  -b, -e   size range in bytes, K/M/G suffixes (powers of 1024); default 8 .. 64M\n"
            "  -f       multiply the size by FACTOR each step (default 2)\n"
            "  -d       int8 uint8 int32 uint32 int64 uint64 float16 bfloat16 float32 float64\n"
            "           (default float32)\n"
            "  -o       sum prod min max avg (default sum)\n"
            "  -a       ring tree rd rabenseifner auto: exported as RDX_ALGO (default: the\n"
            "           environment's RDX_ALGO, else auto); broadcast/reduce: ring = chain\n"
            "  -w       warmup calls per size (default %d, %d from 32 MiB)\n"
            "  -n       timed calls per size (default: ~%.1f s per size, %d..%d)\n"
            "  -c       check every size (default 1); exit 1 if any element is wrong\n"
            "  -i       in place (sendbuf == recvbuf)\n"
            "  --bind   pin rank r to the (r mod ncpus)-th allowed CPU, like mpirun --bind-to core\n"
            "  --json   write the rows as JSON to FILE (rank 0)\n"
            "  --pt2pt  point-to-point instead of allreduce (pairs 0-1, 2-3, ...): latency as\n"
            "           half round trip (min/median/max) and streaming bandwidth per size, like\n"
            "           ib_write_lat/ib_write_bw; -n sets both counts; -d/-o/-a/-i ignored\n"
            "  --no-reg with --pt2pt: do not rdx_mem_register the buffers (no zero-copy)\n",
            PERF_WARMUP_SMALL, PERF_WARMUP_LARGE, PERF_BUDGET_S, PERF_ITERS_MIN, PERF_ITERS_MAX);
}

/* "64M", "8", "1k", "2GiB": powers of 1024. Returns 0 on success. */
static int perf_parse_size(const char *s, size_t *out)
{
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || s[0] == '-')
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (*end != '\0' || (shift && v > (~0ULL >> shift)))
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

static int perf_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Accepts the library's names (rdx_dtype_name) and common aliases. */
static int perf_parse_dtype(const char *s, rdx_dtype_t *out)
{
    static const struct { const char *name; rdx_dtype_t dt; } alias[] = {
        {"int8", RDX_INT8},       {"uint8", RDX_UINT8},       {"int32", RDX_INT32},
        {"int", RDX_INT32},       {"uint32", RDX_UINT32},     {"int64", RDX_INT64},
        {"uint64", RDX_UINT64},   {"float16", RDX_FLOAT16},   {"half", RDX_FLOAT16},
        {"fp16", RDX_FLOAT16},    {"bfloat16", RDX_BFLOAT16}, {"bf16", RDX_BFLOAT16},
        {"float32", RDX_FLOAT32}, {"float", RDX_FLOAT32},     {"fp32", RDX_FLOAT32},
        {"float64", RDX_FLOAT64}, {"double", RDX_FLOAT64},    {"fp64", RDX_FLOAT64},
    };
    for (int d = 0; d < RDX_DTYPE_COUNT; d++) {
        const char *name = rdx_dtype_name((rdx_dtype_t)d);
        if (name && strcasecmp(s, name) == 0) {
            *out = (rdx_dtype_t)d;
            return 0;
        }
    }
    for (size_t k = 0; k < sizeof(alias) / sizeof(alias[0]); k++) {
        if (strcasecmp(s, alias[k].name) == 0) {
            *out = alias[k].dt;
            return 0;
        }
    }
    return -1;
}

static int perf_parse_op(const char *s, rdx_op_t *out)
{
    static const char *names[RDX_OP_COUNT] = {"sum", "prod", "min", "max", "avg"};
    for (int o = 0; o < RDX_OP_COUNT; o++) {
        const char *lib = rdx_op_name((rdx_op_t)o);
        if (strcasecmp(s, names[o]) == 0 || (lib && strcasecmp(s, lib) == 0)) {
            *out = (rdx_op_t)o;
            return 0;
        }
    }
    return -1;
}

static int perf_algo_valid(const char *s)
{
    static const char *names[] = {"ring", "tree", "rd", "rabenseifner", "auto"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (strcmp(s, names[k]) == 0)
            return 1;
    return 0;
}

static void perf_opts_default(perf_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->min_bytes = 8;
    o->max_bytes = (size_t)64 << 20;
    o->factor = 2;
    o->dtype = RDX_FLOAT32;
    o->op = RDX_SUM;
    o->algo = "auto";
    o->warmup = -1;
    o->check = 1;
}

static void perf_bad_arg(const char *opt, const char *val)
{
    fprintf(stderr, "rdx-perf: bad value for %s: '%s'\n", opt, val);
    perf_usage(stderr);
    exit(2);
}

static void perf_opts_parse(perf_opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", required_argument, NULL, 'J'},
        {"bind", no_argument, NULL, 'B'},
        {"pt2pt", no_argument, NULL, 'P'},
        {"no-reg", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long v;
    int c;
    perf_opts_default(o);
    if (getenv("RDX_ALGO") && getenv("RDX_ALGO")[0])
        o->algo = getenv("RDX_ALGO");
    while ((c = getopt_long(argc, argv, "C:b:e:f:d:o:a:w:n:c:ih", longopts, NULL)) != -1) {
        switch (c) {
        case 'C':
            for (o->coll = 0; o->coll < PERF_NCOLL; o->coll++)
                if (strcmp(optarg, k_perf_coll_names[o->coll]) == 0)
                    break;
            if (o->coll == PERF_NCOLL)
                perf_bad_arg("-C (allreduce|reduce_scatter|allgather|broadcast|reduce)", optarg);
            break;
        case 'b': if (perf_parse_size(optarg, &o->min_bytes)) perf_bad_arg("-b", optarg); break;
        case 'e': if (perf_parse_size(optarg, &o->max_bytes)) perf_bad_arg("-e", optarg); break;
        case 'f':
            if (perf_parse_long(optarg, 2, 1024, &v)) perf_bad_arg("-f (2..1024)", optarg);
            o->factor = (size_t)v;
            break;
        case 'd': if (perf_parse_dtype(optarg, &o->dtype)) perf_bad_arg("-d", optarg); break;
        case 'o': if (perf_parse_op(optarg, &o->op)) perf_bad_arg("-o", optarg); break;
        case 'a':
            if (!perf_algo_valid(optarg)) perf_bad_arg("-a (ring|tree|rd|rabenseifner|auto)", optarg);
            o->algo = optarg;
            o->algo_given = 1;
            break;
        case 'w':
            if (perf_parse_long(optarg, 0, 1000000, &v)) perf_bad_arg("-w", optarg);
            o->warmup = (int)v;
            break;
        case 'n':
            if (perf_parse_long(optarg, 1, 1000000000L, &v)) perf_bad_arg("-n", optarg);
            o->iters = v;
            break;
        case 'c':
            if (perf_parse_long(optarg, 0, 1, &v)) perf_bad_arg("-c (0|1)", optarg);
            o->check = (int)v;
            break;
        case 'i': o->in_place = 1; break;
        case 'B': o->bind = 1; break;
        case 'J': o->json = optarg; break;
        case 'P': o->pt2pt = 1; break;
        case 'R': o->no_reg = 1; break;
        case 'h': perf_usage(stdout); exit(0);
        default: perf_usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        perf_bad_arg("arguments", argv[optind]);
    if (o->min_bytes == 0 || o->min_bytes > o->max_bytes) {
        fprintf(stderr, "rdx-perf: need 0 < MINBYTES <= MAXBYTES\n");
        exit(2);
    }
}

/* ---- values in every datatype ---------------------------------------------------------- */

/* Stores an integer: integer types wrap (two's complement), floats round (exact here). */
static void perf_store_int(rdx_dtype_t dt, void *p, int64_t v)
{
    switch (dt) {
    case RDX_INT8: { int8_t x = (int8_t)v; memcpy(p, &x, 1); break; }
    case RDX_UINT8: { uint8_t x = (uint8_t)v; memcpy(p, &x, 1); break; }
    case RDX_INT32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
    case RDX_UINT32: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    case RDX_INT64: memcpy(p, &v, 8); break;
    case RDX_UINT64: { uint64_t x = (uint64_t)v; memcpy(p, &x, 8); break; }
    case RDX_FLOAT16: { uint16_t x = rdx_float_to_half((float)v); memcpy(p, &x, 2); break; }
    case RDX_BFLOAT16: { uint16_t x = rdx_float_to_bf16((float)v); memcpy(p, &x, 2); break; }
    case RDX_FLOAT32: { float x = (float)v; memcpy(p, &x, 4); break; }
    case RDX_FLOAT64: { double x = (double)v; memcpy(p, &x, 8); break; }
    }
}

static double perf_load_double(rdx_dtype_t dt, const void *p)
{
    switch (dt) {
    case RDX_INT8: { int8_t x; memcpy(&x, p, 1); return x; }
    case RDX_UINT8: { uint8_t x; memcpy(&x, p, 1); return x; }
    case RDX_INT32: { int32_t x; memcpy(&x, p, 4); return x; }
    case RDX_UINT32: { uint32_t x; memcpy(&x, p, 4); return x; }
    case RDX_INT64: { int64_t x; memcpy(&x, p, 8); return (double)x; }
    case RDX_UINT64: { uint64_t x; memcpy(&x, p, 8); return (double)x; }
    case RDX_FLOAT16: { uint16_t x; memcpy(&x, p, 2); return rdx_half_to_float(x); }
    case RDX_BFLOAT16: { uint16_t x; memcpy(&x, p, 2); return rdx_bf16_to_float(x); }
    case RDX_FLOAT32: { float x; memcpy(&x, p, 4); return x; }
    case RDX_FLOAT64: { double x; memcpy(&x, p, 8); return x; }
    }
    return NAN;
}

static int perf_dtype_is_float(rdx_dtype_t dt)
{
    return dt == RDX_FLOAT16 || dt == RDX_BFLOAT16 || dt == RDX_FLOAT32 || dt == RDX_FLOAT64;
}

static int perf_dtype_is_signed(rdx_dtype_t dt)
{
    return dt == RDX_INT8 || dt == RDX_INT32 || dt == RDX_INT64;
}

static int perf_mantissa_bits(rdx_dtype_t dt)
{
    switch (dt) {
    case RDX_FLOAT16: return 10;
    case RDX_BFLOAT16: return 7;
    case RDX_FLOAT32: return 23;
    default: return 52;
    }
}

static size_t perf_dtype_size(rdx_dtype_t dt)
{
    static const size_t sizes[RDX_DTYPE_COUNT] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
    return sizes[dt];
}

/* ---- the closed-form pattern ----------------------------------------------------------- */

/* Largest prime p <= 31 with n * (p + 1) <= 127 (2 when n is too large for that). */
static size_t perf_period(int n)
{
    static const int primes[] = {31, 29, 23, 19, 17, 13, 11, 7, 5, 3, 2};
    long cap = 127 / n - 1;
    for (size_t k = 0; k < sizeof(primes) / sizeof(primes[0]); k++)
        if (primes[k] <= cap)
            return (size_t)primes[k];
    return 2;
}

/* Input of rank r at residue j (see the top comment). */
static int64_t perf_input(rdx_op_t op, int r, int n, size_t p, size_t j)
{
    int64_t perm = (int64_t)(((size_t)(r + 1) * j + (size_t)r) % p);
    switch (op) {
    case RDX_PROD:
        return perm == 0 ? 2 : 1;
    case RDX_AVG: {
        int64_t d = (r % 2 == 0) ? (r + 1 < n ? 1 : 0) : -1;
        return (int64_t)j + 1 + d;
    }
    default:
        return perm;
    }
}

/* Expected integer result at residue j, before conversion to the datatype. */
static int64_t perf_expected_int(rdx_op_t op, int n, size_t p, size_t j)
{
    int64_t acc = perf_input(op, 0, n, p, j);
    for (int r = 1; r < n; r++) {
        int64_t x = perf_input(op, r, n, p, j);
        switch (op) {
        case RDX_SUM: case RDX_AVG: acc += x; break;
        case RDX_PROD: acc = (int64_t)((uint64_t)acc * (uint64_t)x); break;
        case RDX_MIN: acc = x < acc ? x : acc; break;
        case RDX_MAX: acc = x > acc ? x : acc; break;
        }
    }
    return acc;
}

static void perf_pattern_init(perf_pattern_t *pat, rdx_dtype_t dt, rdx_op_t op, int rank, int n)
{
    memset(pat, 0, sizeof(*pat));
    pat->period = perf_period(n);
    pat->esize = perf_dtype_size(dt);
    for (size_t j = 0; j < pat->period; j++) {
        unsigned char *in = pat->input + j * pat->esize;
        unsigned char *ex = pat->expect + j * pat->esize;
        perf_store_int(dt, in, perf_input(op, rank, n, pat->period, j));
        int64_t acc = perf_expected_int(op, n, pat->period, j);
        if (op == RDX_AVG && perf_dtype_is_float(dt)) {
            acc /= n;  /* exact: the inputs sum to n * (j + 1) */
        } else if (op == RDX_AVG) {
            /* The library divides the (possibly wrapped) sum in the datatype. */
            perf_store_int(dt, ex, acc);
            double wrapped = perf_load_double(dt, ex);
            acc = perf_dtype_is_signed(dt) ? (int64_t)wrapped / n
                                           : (int64_t)((uint64_t)wrapped / (uint64_t)n);
        }
        perf_store_int(dt, ex, acc);
        pat->expect_num[j] = perf_load_double(dt, ex);
    }
    if (op == RDX_AVG && perf_dtype_is_float(dt))
        pat->tol_rel = ldexp(1.0, -perf_mantissa_bits(dt));
    pat->inputs = calloc((size_t)n * pat->period, pat->esize);
    pat->inputs_num = calloc((size_t)n * pat->period, sizeof(double));
    if (!pat->inputs || !pat->inputs_num) {
        fprintf(stderr, "rdx-perf: rank %d: out of memory\n", rank);
        exit(2);
    }
    for (int q = 0; q < n; q++)
        for (size_t j = 0; j < pat->period; j++) {
            size_t k = (size_t)q * pat->period + j;
            perf_store_int(dt, pat->inputs + k * pat->esize, perf_input(op, q, n, pat->period, j));
            pat->inputs_num[k] = perf_load_double(dt, pat->inputs + k * pat->esize);
        }
}

/* buf[0 .. count) = the periodic pattern `one` (period p elements), by doubling copies. */
static void perf_fill(unsigned char *buf, size_t count, const unsigned char *one,
                      const perf_pattern_t *pat)
{
    size_t total = count * pat->esize, pb = pat->period * pat->esize;
    size_t done = total < pb ? total : pb;
    memcpy(buf, one, done);
    while (done < total) {
        size_t n = total - done < done ? total - done : done;
        memcpy(buf + done, buf, n);
        done += n;
    }
}

static int perf_elem_ok(const perf_pattern_t *pat, const perf_expect_t *ex, rdx_dtype_t dt,
                        const unsigned char *got, size_t j)
{
    if (memcmp(got, ex->bits + j * pat->esize, pat->esize) == 0)
        return 1;
    if (ex->tol_rel == 0)
        return 0;
    double x = perf_load_double(dt, got), e = ex->num[j];
    return fabs(x - e) <= fabs(e) * ex->tol_rel;  /* false for NaN */
}

/* Elements of buf[0 .. count) that differ from ex (element k: residue (first + k) mod p);
 * *first_bad and *want get the first wrong one's index and expected value. */
static long long perf_count_wrong(const perf_ctx_t *ctx, const perf_expect_t *ex,
                                  const unsigned char *buf, size_t count, size_t *first_bad,
                                  double *want)
{
    const perf_pattern_t *pat = &ctx->pat;
    size_t p = pat->period, es = pat->esize, r0 = ex->first % p;
    long long wrong = 0;
    for (size_t k = 0; k < count; k++) {
        size_t j = (r0 + k) % p;
        if (j == 0 && count - k >= p && memcmp(buf + k * es, ex->bits, p * es) == 0) {
            k += p - 1;  /* a whole period right: the common case, one memcmp */
            continue;
        }
        if (!perf_elem_ok(pat, ex, ctx->opts.dtype, buf + k * es, j)) {
            if (wrong == 0) {
                *first_bad = k;
                *want = ex->num[j];
            }
            wrong++;
        }
    }
    return wrong;
}

/* ---- binding --------------------------------------------------------------------------- */

/* Pins every thread of the process (UCX may have started some) to the (rank mod k)-th CPU
 * of the current affinity mask, as mpirun --bind-to core does for np <= cores. */
static int perf_bind(int rank)
{
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return -1;
    int k = CPU_COUNT(&allowed), want = rank % (k > 0 ? k : 1), cpu = -1;
    for (int c = 0, seen = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &allowed) && seen++ == want) {
            cpu = c;
            break;
        }
    }
    if (cpu < 0)
        return -1;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    DIR *dir = opendir("/proc/self/task");
    if (dir) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL)
            if (e->d_name[0] != '.')
                (void)sched_setaffinity((pid_t)atoi(e->d_name), sizeof(one), &one);
        closedir(dir);
    }
    if (sched_setaffinity(0, sizeof(one), &one) != 0)
        return -1;
    return cpu;
}

/* Every rank binds; rank 0 learns where each rank went (for the header). */
static void perf_bind_all(perf_ctx_t *ctx)
{
    int32_t *cpus = calloc((size_t)ctx->size, sizeof(*cpus));
    if (!cpus) {
        fprintf(stderr, "rdx-perf: rank %d: out of memory\n", ctx->rank);
        exit(2);
    }
    int cpu = perf_bind(ctx->rank);
    if (cpu < 0)
        fprintf(stderr, "rdx-perf: rank %d: --bind: sched_setaffinity failed\n", ctx->rank);
    cpus[ctx->rank] = cpu + 1;  /* 0 = failed, so the SUM of one-hot slots is well defined */
    PERF_CALL(ctx, rdx_allreduce(ctx->comm, cpus, cpus, (size_t)ctx->size, RDX_INT32, RDX_SUM));
    size_t len = 0;
    for (int r = 0; r < ctx->size && len + 24 < sizeof(ctx->bind_desc); r++)
        len += (size_t)snprintf(ctx->bind_desc + len, sizeof(ctx->bind_desc) - len, "%s%d->%d",
                                r ? " " : "", r, cpus[r] - 1);
    free(cpus);
}

/* ---- one size -------------------------------------------------------------------------- */

/* Elements of each rank's block: the API's count (reduce_scatter: recvcount, allgather:
 * sendcount) for `total` elements of the whole vector; 0 if total < n there. */
static size_t perf_block(const perf_ctx_t *ctx, size_t total)
{
    int per_rank = ctx->opts.coll == PERF_REDUCE_SCATTER || ctx->opts.coll == PERF_ALLGATHER;
    return per_rank ? total / (size_t)ctx->size : total;
}

static size_t perf_total(const perf_ctx_t *ctx, size_t count)
{
    int per_rank = ctx->opts.coll == PERF_REDUCE_SCATTER || ctx->opts.coll == PERF_ALLGATHER;
    return per_rank ? count * (size_t)ctx->size : count;
}

/* busbw / algbw (nccl-tests' factors: see the top comment). */
static double perf_busbw_factor(const perf_ctx_t *ctx)
{
    double n = ctx->size;
    switch (ctx->opts.coll) {
    case PERF_ALLREDUCE: return 2 * (n - 1) / n;
    case PERF_REDUCE_SCATTER: case PERF_ALLGATHER: return (n - 1) / n;
    default: return 1;
    }
}

/* Where this rank's block of the in-place buffer starts (reduce_scatter's result,
 * allgather's input). */
static unsigned char *perf_own_block(const perf_ctx_t *ctx, size_t count)
{
    return ctx->recvbuf + (size_t)ctx->rank * count * ctx->pat.esize;
}

/* One call of the collective on count elements per rank block (see perf_block). */
static void perf_collective(perf_ctx_t *ctx, size_t count)
{
    const perf_opts_t *o = &ctx->opts;
    rdx_comm_t *c = ctx->comm;
    void *recv = ctx->recvbuf;
    const void *send = ctx->sendbuf;
    switch ((perf_coll_t)o->coll) {
    case PERF_REDUCE_SCATTER:
        recv = o->in_place ? perf_own_block(ctx, count) : recv;
        PERF_CALL(ctx, rdx_reduce_scatter(c, send, recv, count, o->dtype, o->op));
        break;
    case PERF_ALLGATHER:
        send = o->in_place ? perf_own_block(ctx, count) : send;
        PERF_CALL(ctx, rdx_allgather(c, send, recv, count, o->dtype));
        break;
    case PERF_BROADCAST:
        PERF_CALL(ctx, rdx_broadcast(c, send, recv, count, o->dtype, 0));
        break;
    case PERF_REDUCE:
        PERF_CALL(ctx, rdx_reduce(c, send, recv, count, o->dtype, o->op, 0));
        break;
    default:
        PERF_CALL(ctx, rdx_allreduce(c, send, recv, count, o->dtype, o->op));
        break;
    }
}

/* In place: writes this rank's input where the collective reads it (out of place the send
 * buffer holds it from the start and is never written). */
static void perf_place_input(perf_ctx_t *ctx, size_t count)
{
    if (!ctx->opts.in_place)
        return;
    switch ((perf_coll_t)ctx->opts.coll) {
    case PERF_REDUCE_SCATTER:
        perf_fill(ctx->recvbuf, count * (size_t)ctx->size, ctx->pat.input, &ctx->pat);
        break;
    case PERF_ALLGATHER:
        perf_fill(perf_own_block(ctx, count), count, ctx->pat.input, &ctx->pat);
        break;
    case PERF_BROADCAST:
        if (ctx->rank == 0)
            perf_fill(ctx->recvbuf, count, ctx->pat.input, &ctx->pat);
        break;
    default:
        perf_fill(ctx->recvbuf, count, ctx->pat.input, &ctx->pat);
        break;
    }
}

/* Runs the warmup; returns this rank's per-call estimate from the timed warmup calls
 * (0 when none were timed). The first call is never timed: it may set things up. */
static double perf_warmup(perf_ctx_t *ctx, size_t count, int warm, int need_estimate)
{
    double total = 0;
    int timed = 0;
    for (int k = 0; k < warm; k++) {
        double t0 = perf_now();
        perf_collective(ctx, count);
        if (k > 0) {
            total += perf_now() - t0;
            timed++;
        }
    }
    if (need_estimate && timed == 0) {
        double t0 = perf_now();
        perf_collective(ctx, count);
        total = perf_now() - t0;
        timed = 1;
    }
    return timed ? total / timed : 0;
}

static long perf_iters_for(perf_ctx_t *ctx, size_t bytes, size_t count)
{
    int warm = ctx->opts.warmup >= 0 ? ctx->opts.warmup
               : (bytes >= PERF_LARGE_BYTES ? PERF_WARMUP_LARGE : PERF_WARMUP_SMALL);
    double est = perf_warmup(ctx, count, warm, ctx->opts.iters == 0);
    if (ctx->opts.iters > 0)
        return ctx->opts.iters;
    /* Every rank must run the same number of calls: agree on the slowest estimate. */
    est = perf_max_double(ctx, est);
    double want = PERF_BUDGET_S / (est > 1e-9 ? est : 1e-9);
    if (want < PERF_ITERS_MIN)
        return PERF_ITERS_MIN;
    if (want > PERF_ITERS_MAX)
        return PERF_ITERS_MAX;
    return (long)want;
}

/* The slowest rank's mean seconds per call over `iters` calls. */
static double perf_time(perf_ctx_t *ctx, size_t count, long iters)
{
    perf_sync(ctx);
    double t0 = perf_now();
    for (long it = 0; it < iters; it++)
        perf_collective(ctx, count);
    double mean = (perf_now() - t0) / (double)iters;
    return perf_max_double(ctx, mean);
}

/* Checks this rank's output of the call just made; returns its wrong elements. */
static long long perf_verify(perf_ctx_t *ctx, size_t count, size_t *first_bad, double *want)
{
    const perf_pattern_t *pat = &ctx->pat;
    perf_expect_t red = {pat->expect, pat->expect_num, pat->tol_rel, 0};
    size_t p = pat->period, es = pat->esize;
    long long wrong = 0;
    switch ((perf_coll_t)ctx->opts.coll) {
    case PERF_REDUCE_SCATTER:  /* block r of the reduction: input elements r*count.. */
        red.first = (size_t)ctx->rank * count;
        return perf_count_wrong(ctx, &red, ctx->opts.in_place ? perf_own_block(ctx, count)
                                                              : ctx->recvbuf,
                                count, first_bad, want);
    case PERF_ALLGATHER:
        for (int q = 0; q < ctx->size; q++) {
            perf_expect_t in = {pat->inputs + (size_t)q * p * es, pat->inputs_num + (size_t)q * p,
                                0, 0};
            size_t bad = 0;
            long long w = perf_count_wrong(ctx, &in, ctx->recvbuf + (size_t)q * count * es,
                                           count, &bad, want);
            if (w && !wrong)
                *first_bad = (size_t)q * count + bad;
            wrong += w;
        }
        return wrong;
    case PERF_BROADCAST: {
        perf_expect_t in = {pat->inputs, pat->inputs_num, 0, 0};  /* root 0's input */
        return perf_count_wrong(ctx, &in, ctx->recvbuf, count, first_bad, want);
    }
    case PERF_REDUCE:
        if (ctx->rank != 0)
            return 0;
        /* fall through */
    default:
        return perf_count_wrong(ctx, &red, ctx->recvbuf, count, first_bad, want);
    }
}

/* One checked call on a poisoned receive buffer; returns wrong elements over all ranks. */
static long long perf_check(perf_ctx_t *ctx, size_t count)
{
    size_t first_bad = 0, out = count;
    double want = 0;
    if (ctx->opts.coll == PERF_ALLGATHER || (ctx->opts.coll == PERF_REDUCE_SCATTER &&
                                             ctx->opts.in_place))
        out = count * (size_t)ctx->size;
    memset(ctx->recvbuf, PERF_POISON, out * ctx->pat.esize);
    perf_place_input(ctx, count);
    perf_collective(ctx, count);
    long long wrong = perf_verify(ctx, count, &first_bad, &want);
    if (wrong > 0) {
        unsigned char *res = ctx->recvbuf;
        if (ctx->opts.coll == PERF_REDUCE_SCATTER && ctx->opts.in_place)
            res = perf_own_block(ctx, count);
        fprintf(stderr,
                "rdx-perf: rank %d: %s of %zu elements per block (%s %s%s): %lld wrong, first "
                "at index %zu: got %.17g, expected %.17g\n",
                ctx->rank, k_perf_coll_names[ctx->opts.coll], count,
                rdx_dtype_name(ctx->opts.dtype), rdx_op_name(ctx->opts.op),
                ctx->opts.in_place ? ", in place" : "", wrong, first_bad,
                perf_load_double(ctx->opts.dtype, res + first_bad * ctx->pat.esize), want);
    }
    return perf_sum_ll(ctx, wrong);
}

static void perf_print_header(const perf_ctx_t *ctx)
{
    const perf_opts_t *o = &ctx->opts;
    printf("# rdx-perf: %s, ranks %d, transport %s, dtype %s, op %s, algo %s, %s, check %d\n",
           k_perf_coll_names[o->coll], ctx->size, rdx_comm_transport(ctx->comm),
           rdx_dtype_name(o->dtype), rdx_op_name(o->op), o->algo,
           o->in_place ? "in place" : "out of place", o->check);
    if (o->warmup >= 0)
        printf("# warmup %d per size; ", o->warmup);
    else
        printf("# warmup %d per size (%d from %zu MiB); ", PERF_WARMUP_SMALL, PERF_WARMUP_LARGE,
               PERF_LARGE_BYTES >> 20);
    if (o->iters > 0)
        printf("iters %ld per size\n", o->iters);
    else
        printf("iters ~%.1f s per size (%d..%d)\n", PERF_BUDGET_S, PERF_ITERS_MIN, PERF_ITERS_MAX);
    if (o->bind)
        printf("# bind: rank->cpu %s\n", ctx->bind_desc);
    printf("# time_us: slowest rank's mean; algbw = bytes/time; busbw = algbw*%.4g (nccl-tests "
           "factor for %s); GB = 1e9 B\n#\n", perf_busbw_factor(ctx), k_perf_coll_names[o->coll]);
    printf("#%11s %12s %9s %7s %13s %12s %9s %9s %8s\n", "size", "count", "type", "redop",
           "algo", "time", "algbw", "busbw", "#wrong");
    printf("#%11s %12s %9s %7s %13s %12s %9s %9s %8s\n", "(B)", "(elements)", "", "", "",
           "(us)", "(GB/s)", "(GB/s)", "");
    fflush(stdout);
}

/* The "wrong" column: a count, or N/A where nothing was checked (wrong < 0). */
static const char *wrong_text(long long wrong, char buf[32])
{
    if (wrong < 0)
        return "N/A";
    snprintf(buf, 32, "%lld", wrong);
    return buf;
}

static void perf_print_row(const perf_ctx_t *ctx, const perf_row_t *row)
{
    char wbuf[32];
    const char *wrong = wrong_text(row->wrong, wbuf);
    printf("%12zu %12zu %9s %7s %13s %12.2f %9.3f %9.3f %8s\n", row->bytes, row->count,
           rdx_dtype_name(ctx->opts.dtype), rdx_op_name(ctx->opts.op), ctx->opts.algo,
           row->time_us, row->algbw, row->busbw, wrong);
    fflush(stdout);
}

/* count: elements of each rank's block (perf_block). */
static void perf_run_size(perf_ctx_t *ctx, size_t count)
{
    perf_row_t *row = &ctx->rows[ctx->nrows++];
    size_t bytes = perf_total(ctx, count) * ctx->pat.esize;
    perf_place_input(ctx, count);
    long iters = perf_iters_for(ctx, bytes, count);
    double secs = perf_time(ctx, count, iters);
    row->bytes = bytes;
    row->count = perf_total(ctx, count);
    row->time_us = secs * 1e6;
    row->algbw = secs > 0 ? (double)bytes / secs / 1e9 : 0;
    row->busbw = row->algbw * perf_busbw_factor(ctx);
    row->wrong = ctx->opts.check ? perf_check(ctx, count) : -1;
    if (ctx->rank == 0)
        perf_print_row(ctx, row);
}

/* ---- output at the end ----------------------------------------------------------------- */

static int perf_write_json(const perf_ctx_t *ctx, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    fprintf(f, "{\"collective\":\"%s\",\"ranks\":%d,\"transport\":\"%s\",\"rows\":[",
            k_perf_coll_names[ctx->opts.coll], ctx->size, rdx_comm_transport(ctx->comm));
    for (int k = 0; k < ctx->nrows; k++) {
        const perf_row_t *r = &ctx->rows[k];
        fprintf(f,
                "%s\n {\"bytes\":%zu,\"count\":%zu,\"dtype\":\"%s\",\"op\":\"%s\",\"algo\":\"%s\","
                "\"time_us\":%.3f,\"algbw_gbs\":%.6f,\"busbw_gbs\":%.6f,\"wrong\":",
                k ? "," : "", r->bytes, r->count, rdx_dtype_name(ctx->opts.dtype),
                rdx_op_name(ctx->opts.op), ctx->opts.algo, r->time_us, r->algbw, r->busbw);
        if (r->wrong < 0)
            fprintf(f, "null}");
        else
            fprintf(f, "%lld}", r->wrong);
    }
    fprintf(f, "\n]}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* Prints the summary lines; returns the exit status. */
static int perf_finish(perf_ctx_t *ctx)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mib = perf_max_double(ctx, (double)ru.ru_maxrss / 1024.0);  /* KiB on Linux */
    long long wrong = 0;
    int bad_sizes = 0;
    double busbw_sum = 0;
    for (int k = 0; k < ctx->nrows; k++) {
        busbw_sum += ctx->rows[k].busbw;
        if (ctx->rows[k].wrong > 0) {
            wrong += ctx->rows[k].wrong;
            bad_sizes++;
        }
    }
    if (ctx->rank == 0) {
        printf("# avg busbw: %.3f GB/s over %d sizes\n", ctx->nrows ? busbw_sum / ctx->nrows : 0,
               ctx->nrows);
        printf("# peak RSS: %.0f MiB (max over ranks)\n", rss_mib);
        if (!ctx->opts.check)
            printf("# results not checked (-c 0)\n");
        else if (wrong)
            printf("# FAILED: %lld wrong elements in %d of %d sizes\n", wrong, bad_sizes,
                   ctx->nrows);
        else
            printf("# wrong: 0 (every size checked on every rank)\n");
        fflush(stdout);
        if (ctx->opts.json && perf_write_json(ctx, ctx->opts.json) != 0) {
            fprintf(stderr, "rdx-perf: rank 0: cannot write %s\n", ctx->opts.json);
            return 2;
        }
    }
    return wrong ? 1 : 0;
}

/* ---- main ------------------------------------------------------------------------------ */

/* Element counts of every size of the sweep (sizes round down to whole elements; sizes
 * smaller than one element are skipped). Returns the number of sizes. */
static int perf_counts(const perf_opts_t *o, size_t *counts, int max)
{
    size_t es = perf_dtype_size(o->dtype);
    int n = 0;
    for (size_t b = o->min_bytes; b <= o->max_bytes && n < max; b *= o->factor) {
        size_t c = b / es;
        if (c > 0 && (n == 0 || counts[n - 1] != c))
            counts[n++] = c;
        if (b > o->max_bytes / o->factor)
            break;
    }
    return n;
}

static void *perf_alloc(perf_ctx_t *ctx, size_t bytes)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "rdx-perf: rank %d: cannot allocate %zu bytes\n", ctx->rank, bytes);
        exit(2);
    }
    return p;
}

/* ---- --pt2pt: point-to-point latency and bandwidth (perftest style) -------------------- */
/*
 * Ranks pair up (0-1, 2-3, ...; an odd last rank idles); rank 0's pair is reported. Per size:
 *   latency    ping-pong with rdx_send/rdx_recv; each round trip / 2 is one sample; min,
 *              median and max over the samples (ib_write_lat's t_min, t_typical, t_max)
 *   bandwidth  the even rank streams messages with rdx_isend, PT2PT_WINDOW outstanding
 *              (ib_write_bw's tx depth), the odd one receives with rdx_irecv and answers
 *              with one empty message; bytes / (time until that answer), MiB/s (2^20 B/s,
 *              perftest's unit) and GB/s
 *   wrong      one more message each way, received into a poisoned buffer and compared
 *              byte by byte with the sender's pattern, summed over ranks
 * Send and receive buffers are given to rdx_mem_register (unless --no-reg), so the verbs
 * transport sends large messages zero-copy straight from them.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#define PT2PT_WINDOW 64
#define PT2PT_LAT_MIN 20
#define PT2PT_LAT_MAX 2000
#define PT2PT_BW_MIN 16
#define PT2PT_BW_MAX 2000
#define PT2PT_BW_BUDGET_BYTES ((size_t)256 << 20)

typedef struct pt2pt_row {
    size_t bytes;
    long lat_iters, bw_iters;
    double lat_min_us, lat_med_us, lat_max_us;
    double bw_mibs;
    long long wrong;
} pt2pt_row_t;

/* Per-sample timing with the cycle counter, as perftest does (get_cycles): clock_gettime
 * can be a syscall (1.2 us each in the soft-RoCE guest, whose clocksource is HPET), which
 * would add itself to every sample. Calibrated against CLOCK_MONOTONIC over 50 ms. */
static double pt2pt_tick_s;

static uint64_t pt2pt_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __rdtsc();
#else
    return (uint64_t)(perf_now() * 1e9);
#endif
}

static void pt2pt_calibrate(void)
{
    double t0 = perf_now();
    uint64_t k0 = pt2pt_ticks();
    while (perf_now() - t0 < 0.05)
        ;
    double t1 = perf_now();
    uint64_t k1 = pt2pt_ticks();
    pt2pt_tick_s = k1 > k0 ? (t1 - t0) / (double)(k1 - k0) : 1e-9;
}

static int pt2pt_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static unsigned char pt2pt_byte(int from, size_t bytes, size_t i)
{
    return (unsigned char)(from * 31 + bytes * 7 + i * 13 + (i >> 9));
}

/* One ping-pong: the even rank sends first. */
static void pt2pt_pingpong(perf_ctx_t *ctx, int peer, size_t bytes)
{
    if (ctx->rank % 2 == 0) {
        PERF_CALL(ctx, rdx_send(ctx->comm, ctx->sendbuf, bytes, RDX_UINT8, peer));
        PERF_CALL(ctx, rdx_recv(ctx->comm, ctx->recvbuf, bytes, RDX_UINT8, peer));
    } else {
        PERF_CALL(ctx, rdx_recv(ctx->comm, ctx->recvbuf, bytes, RDX_UINT8, peer));
        PERF_CALL(ctx, rdx_send(ctx->comm, ctx->sendbuf, bytes, RDX_UINT8, peer));
    }
}

static long pt2pt_clamp(double want, long lo, long hi)
{
    return want < lo ? lo : want > hi ? hi : (long)want;
}

static void pt2pt_latency(perf_ctx_t *ctx, int peer, size_t bytes, pt2pt_row_t *row)
{
    int warm = ctx->opts.warmup >= 0 ? ctx->opts.warmup : PERF_WARMUP_SMALL;
    double est = 0;
    for (int k = 0; k < warm + 1; k++) {
        double t0 = perf_now();
        if (peer >= 0)
            pt2pt_pingpong(ctx, peer, bytes);
        if (k > 0 || warm == 0)
            est = perf_now() - t0;
    }
    est = perf_max_double(ctx, est); /* every rank runs the same count */
    long iters = ctx->opts.iters > 0 ? ctx->opts.iters
                 : pt2pt_clamp(PERF_BUDGET_S / (est > 1e-9 ? est : 1e-9), PT2PT_LAT_MIN,
                               PT2PT_LAT_MAX);
    double *t = calloc((size_t)iters, sizeof(*t));
    if (!t)
        perf_die(ctx, "calloc", RDX_ERR_NO_MEMORY);
    perf_sync(ctx);
    uint64_t prev = pt2pt_ticks();
    for (long it = 0; peer >= 0 && it < iters; it++) {
        pt2pt_pingpong(ctx, peer, bytes);
        uint64_t now = pt2pt_ticks();
        t[it] = (double)(now - prev) * pt2pt_tick_s / 2;
        prev = now;
    }
    qsort(t, (size_t)iters, sizeof(*t), pt2pt_cmp_double);
    row->lat_iters = iters;
    row->lat_min_us = t[0] * 1e6;
    row->lat_med_us = t[iters / 2] * 1e6;
    row->lat_max_us = t[iters - 1] * 1e6;
    free(t);
}

/* n messages from the even to the odd rank, PT2PT_WINDOW outstanding at a time, then an
 * empty answer; returns the even rank's seconds from the first send to the answer. */
static double pt2pt_stream(perf_ctx_t *ctx, int peer, size_t bytes, long n)
{
    rdx_request_t *req[PT2PT_WINDOW];
    int sender = ctx->rank % 2 == 0;
    double t0 = perf_now();
    for (long done = 0; done < n;) {
        int w = n - done < PT2PT_WINDOW ? (int)(n - done) : PT2PT_WINDOW;
        for (int k = 0; k < w; k++) {
            if (sender)
                PERF_CALL(ctx, rdx_isend(ctx->comm, ctx->sendbuf, bytes, RDX_UINT8, peer,
                                         &req[k]));
            else
                PERF_CALL(ctx, rdx_irecv(ctx->comm, ctx->recvbuf, bytes, RDX_UINT8, peer,
                                         &req[k]));
        }
        for (int k = 0; k < w; k++)
            PERF_CALL(ctx, rdx_wait(req[k]));
        done += w;
    }
    if (sender)
        PERF_CALL(ctx, rdx_recv(ctx->comm, NULL, 0, RDX_UINT8, peer));
    else
        PERF_CALL(ctx, rdx_send(ctx->comm, NULL, 0, RDX_UINT8, peer));
    return perf_now() - t0;
}

static void pt2pt_bandwidth(perf_ctx_t *ctx, int peer, size_t bytes, pt2pt_row_t *row)
{
    long n = ctx->opts.iters > 0 ? ctx->opts.iters
             : pt2pt_clamp((double)PT2PT_BW_BUDGET_BYTES / (double)bytes, PT2PT_BW_MIN,
                           PT2PT_BW_MAX);
    if (peer >= 0) /* warmup: a short stream, untimed */
        (void)pt2pt_stream(ctx, peer, bytes, n < PT2PT_WINDOW ? n : PT2PT_WINDOW);
    perf_sync(ctx);
    double secs = peer >= 0 ? pt2pt_stream(ctx, peer, bytes, n) : 0;
    row->bw_iters = n;
    row->bw_mibs = secs > 0 ? (double)bytes * (double)n / secs / (1 << 20) : 0;
}

/* One checked message each way; returns the wrong bytes over all ranks. */
static long long pt2pt_check(perf_ctx_t *ctx, int peer, size_t bytes)
{
    long long wrong = 0;
    if (peer >= 0) {
        for (size_t i = 0; i < bytes; i++)
            ctx->sendbuf[i] = pt2pt_byte(ctx->rank, bytes, i);
        memset(ctx->recvbuf, PERF_POISON, bytes);
        pt2pt_pingpong(ctx, peer, bytes);
        for (size_t i = 0; i < bytes; i++)
            if (ctx->recvbuf[i] != pt2pt_byte(peer, bytes, i) && wrong++ == 0)
                fprintf(stderr, "rdx-perf: rank %d: %zu B from rank %d: byte %zu is 0x%02x, "
                        "expected 0x%02x\n", ctx->rank, bytes, peer, i, ctx->recvbuf[i],
                        pt2pt_byte(peer, bytes, i));
    }
    return perf_sum_ll(ctx, wrong);
}

static void pt2pt_print_header(const perf_ctx_t *ctx)
{
    printf("# rdx-perf --pt2pt: ranks %d (pairs 0-1, 2-3, ...; rank 0's pair shown), "
           "transport %s, buffers %s, check %d\n", ctx->size, rdx_comm_transport(ctx->comm),
           ctx->opts.no_reg ? "not registered" : "registered (rdx_mem_register)",
           ctx->opts.check);
    printf("# latency: half round trip of a rdx_send/rdx_recv ping-pong (us); bandwidth: "
           "%d rdx_isend outstanding, MiB/s = 2^20 B/s\n#\n", PT2PT_WINDOW);
    printf("#%11s %9s %10s %10s %10s %9s %11s %9s %8s\n", "size", "lat_iters", "lat_min",
           "lat_median", "lat_max", "bw_iters", "bw", "bw", "#wrong");
    printf("#%11s %9s %10s %10s %10s %9s %11s %9s %8s\n", "(B)", "", "(us)", "(us)", "(us)",
           "", "(MiB/s)", "(GB/s)", "");
    fflush(stdout);
}

static void pt2pt_print_row(const pt2pt_row_t *r)
{
    char wbuf[32];
    const char *wrong = wrong_text(r->wrong, wbuf);
    printf("%12zu %9ld %10.2f %10.2f %10.2f %9ld %11.2f %9.3f %8s\n", r->bytes, r->lat_iters,
           r->lat_min_us, r->lat_med_us, r->lat_max_us, r->bw_iters, r->bw_mibs,
           r->bw_mibs * (1 << 20) / 1e9, wrong);
    fflush(stdout);
}

static int pt2pt_write_json(const pt2pt_row_t *rows, int n, const perf_ctx_t *ctx,
                            const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    fprintf(f, "{\"mode\":\"pt2pt\",\"ranks\":%d,\"transport\":\"%s\",\"rows\":[", ctx->size,
            rdx_comm_transport(ctx->comm));
    for (int k = 0; k < n; k++)
        fprintf(f, "%s{\"bytes\":%zu,\"lat_min_us\":%.3f,\"lat_median_us\":%.3f,"
                "\"lat_max_us\":%.3f,\"bw_mibs\":%.3f,\"wrong\":%lld}", k ? "," : "",
                rows[k].bytes, rows[k].lat_min_us, rows[k].lat_med_us, rows[k].lat_max_us,
                rows[k].bw_mibs, rows[k].wrong);
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* The whole --pt2pt run after rdx_comm_init; returns the exit status. */
static int pt2pt_main(perf_ctx_t *ctx)
{
    const perf_opts_t *o = &ctx->opts;
    if (ctx->size < 2) {
        fprintf(stderr, "rdx-perf: --pt2pt needs at least 2 ranks (rdx-run -n 2 ...)\n");
        return 2;
    }
    int peer = ctx->rank ^ 1;
    if (peer >= ctx->size)
        peer = -1; /* odd last rank: only takes part in the collectives that line ranks up */
    ctx->sendbuf = perf_alloc(ctx, o->max_bytes);
    ctx->recvbuf = perf_alloc(ctx, o->max_bytes);
    memset(ctx->sendbuf, 1, o->max_bytes);
    memset(ctx->recvbuf, 0, o->max_bytes);
    rdx_mem_t *mr_send = NULL, *mr_recv = NULL;
    if (!o->no_reg) {
        PERF_CALL(ctx, rdx_mem_register(ctx->comm, ctx->sendbuf, o->max_bytes, &mr_send));
        PERF_CALL(ctx, rdx_mem_register(ctx->comm, ctx->recvbuf, o->max_bytes, &mr_recv));
    }
    pt2pt_calibrate();
    if (ctx->rank == 0)
        pt2pt_print_header(ctx);
    pt2pt_row_t rows[PERF_MAX_ROWS];
    int n = 0;
    long long wrong = 0;
    for (size_t b = o->min_bytes; b <= o->max_bytes && n < PERF_MAX_ROWS; b *= o->factor) {
        pt2pt_row_t *r = &rows[n++];
        memset(r, 0, sizeof(*r));
        r->bytes = b;
        memset(ctx->sendbuf, 1, b);
        pt2pt_latency(ctx, peer, b, r);
        pt2pt_bandwidth(ctx, peer, b, r);
        r->wrong = o->check ? pt2pt_check(ctx, peer, b) : -1;
        wrong += r->wrong > 0 ? r->wrong : 0;
        if (ctx->rank == 0)
            pt2pt_print_row(r);
        if (b > o->max_bytes / o->factor)
            break;
    }
    if (ctx->rank == 0) {
        if (!o->check)
            printf("# results not checked (-c 0)\n");
        else if (wrong)
            printf("# FAILED: %lld wrong bytes\n", wrong);
        else
            printf("# wrong: 0 (every size checked both ways)\n");
        fflush(stdout);
        if (o->json && pt2pt_write_json(rows, n, ctx, o->json) != 0) {
            fprintf(stderr, "rdx-perf: rank 0: cannot write %s\n", o->json);
            return 2;
        }
    }
    if (mr_send)
        PERF_CALL(ctx, rdx_mem_deregister(ctx->comm, mr_send));
    if (mr_recv)
        PERF_CALL(ctx, rdx_mem_deregister(ctx->comm, mr_recv));
    free(ctx->sendbuf);
    free(ctx->recvbuf);
    ctx->sendbuf = ctx->recvbuf = NULL;
    return wrong ? 1 : 0;
}

int main(int argc, char **argv)
{
    static perf_ctx_t ctx;
    size_t counts[PERF_MAX_ROWS];
    ctx.rank = -1;
    perf_opts_parse(&ctx.opts, argc, argv);
    int ncounts = perf_counts(&ctx.opts, counts, PERF_MAX_ROWS);
    if (ncounts == 0) {
        fprintf(stderr, "rdx-perf: no size in %zu..%zu holds a whole %s element\n",
                ctx.opts.min_bytes, ctx.opts.max_bytes, rdx_dtype_name(ctx.opts.dtype));
        return 2;
    }
    if (ctx.opts.algo_given && setenv("RDX_ALGO", ctx.opts.algo, 1) != 0) {
        perror("setenv RDX_ALGO");
        return 2;
    }
    PERF_CALL(&ctx, rdx_comm_init(&ctx.comm, NULL));
    ctx.rank = rdx_comm_rank(ctx.comm);
    ctx.size = rdx_comm_size(ctx.comm);
    if (rdx_dtype_size(ctx.opts.dtype) != perf_dtype_size(ctx.opts.dtype)) {
        fprintf(stderr, "rdx-perf: rank %d: rdx_dtype_size(%s) = %zu, expected %zu\n", ctx.rank,
                rdx_dtype_name(ctx.opts.dtype), rdx_dtype_size(ctx.opts.dtype),
                perf_dtype_size(ctx.opts.dtype));
        return 2;
    }
    if (ctx.opts.bind)
        perf_bind_all(&ctx);
    if (ctx.opts.pt2pt) {
        int st = pt2pt_main(&ctx);
        PERF_CALL(&ctx, rdx_comm_destroy(ctx.comm));
        return st;
    }
    if (ctx.rank == 0)
        perf_print_header(&ctx);

    perf_pattern_init(&ctx.pat, ctx.opts.dtype, ctx.opts.op, ctx.rank, ctx.size);
    size_t max_bytes = counts[ncounts - 1] * ctx.pat.esize;
    ctx.sendbuf = perf_alloc(&ctx, max_bytes);
    ctx.recvbuf = ctx.opts.in_place ? ctx.sendbuf : perf_alloc(&ctx, max_bytes);
    /* Touch every page before timing; the out-of-place input never changes after this. */
    perf_fill(ctx.sendbuf, counts[ncounts - 1], ctx.pat.input, &ctx.pat);
    if (!ctx.opts.in_place)
        memset(ctx.recvbuf, 0, max_bytes);

    for (int k = 0; k < ncounts; k++)  /* reduce_scatter/allgather: sizes below n elements skipped */
        if (perf_block(&ctx, counts[k]) > 0 &&
            (k == 0 || perf_block(&ctx, counts[k]) != perf_block(&ctx, counts[k - 1])))
            perf_run_size(&ctx, perf_block(&ctx, counts[k]));

    int status = perf_finish(&ctx);
    PERF_CALL(&ctx, rdx_comm_destroy(ctx.comm));
    ctx.comm = NULL;
    if (!ctx.opts.in_place)
        free(ctx.recvbuf);
    free(ctx.sendbuf);
    free(ctx.pat.inputs);
    free(ctx.pat.inputs_num);
    return status;
}
