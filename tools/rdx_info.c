/* rdx-info: what this build of rdx can do on this machine, and the effective configuration;
 * with --calibrate, measures the cost model's inputs and writes the calibration file. */
#include <stdio.h>
#include <string.h>

#include "rdx/rdx.h"
#include "collectives/coll.h"
#include "src/comm.h"
#include "src/config.h"
#include "src/error.h"
#include "src/reduce.h"
#include "tools/calibrate_fit.h"
#include "transport/transport.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: rdx-info [-h]\n"
            "       rdx-run -n N rdx-info --calibrate [--file PATH] [--dry-run] [--no-fit]\n"
            "       rdx-run -n N rdx-info --predict [--collective KIND] [--file PATH]\n"
            "Prints the transports and devices found, the reduction kernels chosen, the\n"
            "calibration file and every RDX_* setting with its effective value, default and\n"
            "meaning.\n"
            "--calibrate: measures the latency of a step (all ranks exchanging at once), the\n"
            "per-message overhead and the bandwidth (streams both ways between ranks 0 and 1,\n"
            "2 and 3, ...) over the configured transport, and the local reduction speed\n"
            "(run it with the rank layout your jobs use), and writes\n"
            "them to the calibration file (default $XDG_CACHE_HOME/rdx/calibration, else\n"
            "~/.cache/rdx/calibration; one line per transport class, e.g. ucx:shm, ucx:tcp),\n"
            "which every communicator reads at init to choose algorithms. Run it once per\n"
            "machine and transport (RDX_UCX_TLS=tcp for ucx:tcp; ranks 0 and 1 on two hosts\n"
            "for the network). It then times every allreduce algorithm at 16 B .. 8 MiB on\n"
            "these N ranks and stores each one's measured/predicted ratio per size, which\n"
            "communicators of N ranks apply (--no-fit: skip; about 1 s on shared memory).\n"
            "--dry-run prints without writing.\n"
            "--predict: the cost model's predicted time of every algorithm of a collective\n"
            "(default allreduce) per size, 4 B .. 1 GiB, for this communicator (its size,\n"
            "transport and calibration), and the algorithm auto picks: one line per size.\n");
}

static void print_calibration_file(void)
{
    char buf[512], line[512];
    const char *path = rdx_coll_calibration_path(buf, sizeof(buf));
    if (!path) {
        printf("calibration file: none (neither XDG_CACHE_HOME nor HOME is set)\n");
        return;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("calibration file: %s (absent: algorithms are chosen from the transports' "
               "estimates; create it with rdx-run -n 2 rdx-info --calibrate)\n", path);
        return;
    }
    printf("calibration file: %s\n", path);
    while (fgets(line, sizeof(line), f))
        if (line[0] != '#')
            printf("  %s", line);
    fclose(f);
}

static int info(void)
{
    printf("rdx %d.%d.%d\n", RDX_VERSION_MAJOR, RDX_VERSION_MINOR, RDX_VERSION_PATCH);
    printf("reduction kernels: %s\n", rdx_reduce_isa());
    for (int kind = RDX_TRANSPORT_UCX; kind <= RDX_TRANSPORT_VERBS; kind++) {
        const rdx_tp_ops_t *ops = rdx_tp_lookup(kind);
        printf("transport %s: %s\n", rdx_transport_name(kind), ops ? "built" : "not built");
        if (ops && ops->print_devices)
            ops->print_devices(stdout);
    }
    print_calibration_file();
    rdx_settings_t s;
    rdx_status_t st = rdx_settings_from_env(&s);
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rdx-info: %s: %s\n", rdx_strerror(st), rdx_err_last());
        return 1;
    }
    printf("configuration (RDX_* environment):\n");
    rdx_settings_print(&s, stdout, 1);
    return 0;
}

/* Rank 0: reports the measurement, writes it, shows the table it leads to. */
static void calibrate_print_probe(rdx_comm_t *comm, const rdx_coll_model_t *m)
{
    char key[96];
    rdx_coll_calibration_key(&comm->props, key, sizeof(key));
    printf("rdx-info --calibrate: %s (%s), %d ranks\n", key, comm->props.detail, comm->size);
    printf("  alpha    %.3f us   (per step, all ranks exchanging at once; transport's estimate "
           "%.3f us)\n",
           m->alpha_s * 1e6, comm->props.latency_us);
    printf("  overhead %.3f us   (per pipelined message)\n", m->overhead_s * 1e6);
    printf("  beta     %.4f ns/B = %.2f GB/s per link (transport's estimate %.2f GB/s)\n",
           m->beta_s * 1e9, 1e-9 / m->beta_s, comm->props.bandwidth_gbs);
    printf("  gamma    %.4f ns/B = %.2f GB/s reduced (float32 sum, %s kernels)\n",
           m->gamma_s * 1e9, 1e-9 / m->gamma_s, rdx_reduce_isa());
    fflush(stdout);
}

static int calibrate_save(rdx_comm_t *comm, rdx_coll_model_t *m, const char *file, int dry)
{
    char key[96], buf[512];
    rdx_coll_calibration_key(&comm->props, key, sizeof(key));
    const char *path = file ? file : rdx_coll_calibration_path(buf, sizeof(buf));
    if (!dry) {
        if (!path) {
            fprintf(stderr, "rdx-info: no calibration path: set XDG_CACHE_HOME or HOME, or "
                    "pass --file\n");
            return 1;
        }
        rdx_status_t st = rdx_coll_calibration_save(path, key, m);
        if (st != RDX_SUCCESS) {
            fprintf(stderr, "rdx-info: %s\n", rdx_err_last());
            return 1;
        }
        printf("  written to %s\n", path);
    }
    snprintf(m->source, sizeof(m->source), "this calibration");
    comm->ctx.model = *m;
    rdx_coll_print_table(&comm->ctx, RDX_ALGO_AUTO, stdout);
    return 0;
}

static int calibrate(const char *file, int dry, int fit)
{
    rdx_comm_t *comm;
    rdx_status_t st = rdx_comm_init(&comm, NULL);
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rdx-info --calibrate: rdx_comm_init: %s (run it under rdx-run -n 2, "
                "or another launcher)\n", rdx_strerror(st));
        return 1;
    }
    if (comm->size < 2) {
        fprintf(stderr, "rdx-info --calibrate: needs two ranks (rdx-run -n 2 rdx-info "
                "--calibrate)\n");
        rdx_comm_destroy(comm);
        return 2;
    }
    rdx_coll_model_t m;
    st = rdx_coll_calibrate(&comm->ctx, comm->settings.timeout_ms, &m);
    int rc = 0;
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rdx-info --calibrate: rank %d: %s: %s\n", comm->rank, rdx_strerror(st),
                rdx_err_last());
        rc = 1;
    } else {
        if (comm->rank == 0)
            calibrate_print_probe(comm, &m);
        if (fit && (st = rdx_info_fit(comm, &m, stdout)) != RDX_SUCCESS) {
            fprintf(stderr, "rdx-info --calibrate: rank %d: timing the algorithms: %s: %s\n",
                    comm->rank, rdx_strerror(st), rdx_err_last());
            rc = 1;
        }
        if (rc == 0 && comm->rank == 0)
            rc = calibrate_save(comm, &m, file, dry);
    }
    /* the other ranks wait here until 0 and 1 are done */
    if (rc == 0 && rdx_barrier(comm) != RDX_SUCCESS)
        rc = 1;
    rdx_comm_destroy(comm);
    return rc;
}

static const rdx_coll_algo_t *const k_predict_algos[][4] = {
    [RDX_COLL_ALLREDUCE] = {&rdx_algo_ring_allreduce, &rdx_algo_tree_allreduce,
                            &rdx_algo_rd_allreduce, &rdx_algo_rabenseifner_allreduce},
    [RDX_COLL_REDUCE_SCATTER] = {&rdx_algo_ring_reduce_scatter},
    [RDX_COLL_ALLGATHER] = {&rdx_algo_ring_allgather},
    [RDX_COLL_BROADCAST] = {&rdx_algo_chain_broadcast, &rdx_algo_tree_broadcast},
    [RDX_COLL_REDUCE] = {&rdx_algo_chain_reduce, &rdx_algo_tree_reduce},
};

static int kind_parse(const char *s)
{
    for (int k = RDX_COLL_ALLREDUCE; k <= RDX_COLL_REDUCE; k++)
        if (!strcmp(s, rdx_coll_kind_name((rdx_coll_kind_t)k)))
            return k;
    return -1;
}

/* One line per size: bytes, predicted us per algorithm (best chunk), auto's pick. */
static int predict(const char *kind_name, const char *file)
{
    int kind = kind_parse(kind_name);
    if (kind < 0) {
        fprintf(stderr, "rdx-info --predict: unknown collective %s\n", kind_name);
        return 2;
    }
    rdx_comm_t *comm;
    rdx_status_t st = rdx_comm_init(&comm, NULL);
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rdx-info --predict: rdx_comm_init: %s\n", rdx_strerror(st));
        return 1;
    }
    st = rdx_coll_tune(&comm->ctx, &comm->props, file, comm->bs, comm->settings.algo);
    if (st == RDX_SUCCESS && comm->rank == 0) {
        const rdx_coll_model_t *m = &comm->ctx.model;
        printf("# predict %s: ranks %d, transport %s (%s), slot %zu B; model (%s): alpha %.3f "
               "us, overhead %.3f us, beta %.4f ns/B, gamma %.4f ns/B\n# bytes", kind_name,
               comm->size, comm->props.name, comm->props.detail, comm->ctx.slot_bytes,
               m->source, m->alpha_s * 1e6, m->overhead_s * 1e6, m->beta_s * 1e9,
               m->gamma_s * 1e9);
        const rdx_coll_algo_t *const *algos = k_predict_algos[kind];
        for (int a = 0; a < 4 && algos[a]; a++)
            printf(" %s", algos[a]->name);
        printf(" auto\n");
        for (size_t b = 4; b <= (1ull << 30); b *= 2) {
            printf("%zu", b);
            for (int a = 0; a < 4 && algos[a]; a++) {
                int setting = !strcmp(algos[a]->name, "chain") ? RDX_ALGO_RING
                              : !strcmp(algos[a]->name, "tree") ? RDX_ALGO_TREE
                              : !strcmp(algos[a]->name, "rd") ? RDX_ALGO_RD
                              : !strcmp(algos[a]->name, "rabenseifner") ? RDX_ALGO_RABENSEIFNER
                                                                         : RDX_ALGO_RING;
                printf(" %.3f", rdx_coll_choose(&comm->ctx, setting, (rdx_coll_kind_t)kind,
                                                b).predicted_us);
            }
            rdx_coll_choice_t c = rdx_coll_choose(&comm->ctx, RDX_ALGO_AUTO,
                                                  (rdx_coll_kind_t)kind, b);
            printf(" %s/%zu\n", c.algo->name, c.chunk_bytes);
        }
    }
    if (st != RDX_SUCCESS)
        fprintf(stderr, "rdx-info --predict: %s\n", rdx_err_last());
    rdx_comm_destroy(comm);
    return st == RDX_SUCCESS ? 0 : 1;
}

int main(int argc, char **argv)
{
    int cal = 0, dry = 0, pred = 0, fit = 1;
    const char *kind = "allreduce";
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--calibrate")) {
            cal = 1;
        } else if (!strcmp(argv[i], "--predict")) {
            pred = 1;
        } else if (!strcmp(argv[i], "--collective") && i + 1 < argc) {
            kind = argv[++i];
        } else if (!strcmp(argv[i], "--no-fit")) {
            fit = 0;
        } else if (!strcmp(argv[i], "--dry-run")) {
            dry = 1;
        } else if (!strcmp(argv[i], "--file") && i + 1 < argc) {
            file = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (((dry || !fit) && !cal) || (file && !cal && !pred) || (cal && pred)) {
        usage(stderr);
        return 2;
    }
    if (pred)
        return predict(kind, file);
    return cal ? calibrate(file, dry, fit) : info();
}
