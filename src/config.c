/*
 * The RDX_* configuration table. One row per variable: name, default, help, how to parse,
 * where it lands in rdx_settings_t. rdx-info prints this table; the README documents it.
 */
#include "src/config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/error.h"
#include "src/log.h"

typedef enum { P_INT, P_LONG, P_SIZE, P_MB, P_STR, P_CHOICE, P_BOOL } parser_t;

typedef struct {
    const char *name;
    const char *dflt;
    const char *help;
    parser_t parser;
    size_t offset;
    long lo, hi;                 /* P_INT / P_LONG / P_SIZE / P_MB range */
    const char *const *choices;  /* P_CHOICE: index stored as int */
} cfg_row_t;

static const char *const k_transports[] = {"ucx", "verbs", NULL};
static const char *const k_levels[] = {"error", "warn", "info", "debug", "trace", NULL};
static const char *const k_algos[] = {"auto", "ring", "tree", "rd", "rabenseifner", NULL};

#define OFF(f) offsetof(rdx_settings_t, f)

/* Defaults were chosen by measurement on a 2-core host (see docs/architecture.md). */
static const cfg_row_t k_rows[] = {
    {"RDX_TRANSPORT", "ucx", "transport: ucx (shared memory, TCP, IB via UCX) or verbs (native RDMA)",
     P_CHOICE, OFF(transport), 0, 0, k_transports},
    {"RDX_LOG", "warn", "log level: error, warn, info, debug, trace", P_CHOICE, OFF(log_level),
     0, 0, k_levels},
    {"RDX_TIMEOUT_MS", "300000", "deadline without progress of every wait (blocking collective, rdx_wait, polling with rdx_test/rdx_progress), ms",
     P_LONG, OFF(timeout_ms), 1, 86400000L, NULL},
    {"RDX_CONNECT_TIMEOUT_MS", "60000", "deadline of rendezvous and connection set-up, ms",
     P_LONG, OFF(connect_timeout_ms), 1, 86400000L, NULL},
    {"RDX_CHUNK_BYTES", "256K", "pipelining unit: payload bytes of one slot (4K..64M)", P_SIZE,
     OFF(chunk_bytes), 4096, 64L << 20, NULL},
    {"RDX_SLOTS", "8", "receive slots per peer (FIFO depth; even, 2..64)", P_INT, OFF(slots),
     2, 64, NULL},
    {"RDX_POOL_MB", "64", "upper bound on registered pool memory per communicator, MiB", P_MB,
     OFF(pool_mb), 1, 1L << 20, NULL},
    {"RDX_ALGO", "auto", "allreduce algorithm: auto, ring, tree, rd, rabenseifner", P_CHOICE,
     OFF(algo), 0, 0, k_algos},
    {"RDX_SPIN_US", "-1", "busy-poll this long before yielding or blocking, us; -1 = auto: 20 "
     "with a CPU per rank on this host, else 0", P_LONG, OFF(spin_us), -1, 10000000L, NULL},
    {"RDX_UCX_TLS", "", "UCX transports (passed to UCX_TLS), e.g. sm, tcp, rc_verbs,ud_verbs",
     P_STR, OFF(ucx_tls), 0, 0, NULL},
    {"RDX_IFNAME", "", "network interface the rendezvous listener binds to", P_STR, OFF(ifname),
     0, 0, NULL},
    {"RDX_IB_DEV", "", "verbs device name[:port]; empty = first active port", P_STR,
     OFF(ib_dev), 0, 0, NULL},
    {"RDX_IB_GID_INDEX", "-1", "verbs GID index; -1 = auto (RoCE v2 IPv4, else first valid)",
     P_INT, OFF(ib_gid_index), -1, 255, NULL},
    {"RDX_IB_TC", "0", "verbs traffic class", P_INT, OFF(ib_tc), 0, 255, NULL},
    {"RDX_IB_SL", "0", "verbs service level", P_INT, OFF(ib_sl), 0, 15, NULL},
    {"RDX_IB_TIMEOUT", "14", "verbs local ACK timeout exponent (4.096us * 2^n)", P_INT,
     OFF(ib_timeout), 1, 31, NULL},
    {"RDX_IB_RETRY_CNT", "7", "verbs transport retry count", P_INT, OFF(ib_retry_cnt), 0, 7,
     NULL},
    {"RDX_CHECK", "1", "check every collective's fingerprint (kind, dtype, op, count, root) across ranks; 0 checks only message order and length",
     P_BOOL, OFF(check), 0, 1, NULL},
    /* Rank discovery rows: also filled from launcher variables, see discover_rank(). */
    {"RDX_RANK", "-1", "this process's rank (else RANK, OMPI_COMM_WORLD_RANK, SLURM_PROCID)",
     P_INT, OFF(rank), -1, INT_MAX, NULL},
    {"RDX_SIZE", "-1", "number of ranks (else WORLD_SIZE, OMPI_COMM_WORLD_SIZE, SLURM_NTASKS)",
     P_INT, OFF(size), -1, INT_MAX, NULL},
    {"RDX_ADDR", "", "rendezvous host:port run by rank 0 (else MASTER_ADDR:MASTER_PORT)", P_STR,
     OFF(addr), 0, 0, NULL},
    {"RDX_JOB_KEY", "", "shared secret every rank must prove it knows (rdx-run makes one)",
     P_STR, OFF(job_key), 0, 0, NULL},
};
#define N_ROWS (sizeof(k_rows) / sizeof(k_rows[0]))

int rdx_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int rdx_parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end != '\0' || (shift && v > (ULLONG_MAX >> shift)))
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

static void describe_accepts(const cfg_row_t *r, char *buf, size_t len)
{
    switch (r->parser) {
    case P_INT: case P_LONG:
        snprintf(buf, len, "an integer in [%ld, %ld]", r->lo, r->hi);
        break;
    case P_SIZE:
        snprintf(buf, len, "a byte size in [%ld, %ld] (suffix K, M, G allowed)", r->lo, r->hi);
        break;
    case P_MB:
        snprintf(buf, len, "a number of MiB in [%ld, %ld]", r->lo, r->hi);
        break;
    case P_BOOL:
        snprintf(buf, len, "0 or 1 (also yes/no, on/off, true/false)");
        break;
    case P_STR:
        snprintf(buf, len, "a string shorter than %d characters", RDX_STR_MAX);
        break;
    case P_CHOICE: {
        size_t n = (size_t)snprintf(buf, len, "one of:");
        for (int i = 0; r->choices[i] && n < len; i++)
            n += (size_t)snprintf(buf + n, len - n, " %s", r->choices[i]);
        break;
    }
    }
}

static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "y", "yes", "on", "true"};
    static const char *const no[] = {"0", "n", "no", "off", "false"};
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Parses value into the row's field; returns -1 if it is not what the row accepts. */
static int row_parse(const cfg_row_t *r, rdx_settings_t *s, const char *value)
{
    char *field = (char *)s + r->offset;
    long l;
    size_t z;
    switch (r->parser) {
    case P_INT:
        if (rdx_parse_long(value, r->lo, r->hi, &l))
            return -1;
        *(int *)field = (int)l;
        return 0;
    case P_LONG:
        if (rdx_parse_long(value, r->lo, r->hi, &l))
            return -1;
        *(long *)field = l;
        return 0;
    case P_SIZE:
        if (rdx_parse_size(value, &z) || z < (size_t)r->lo || z > (size_t)r->hi)
            return -1;
        *(size_t *)field = z;
        return 0;
    case P_MB:
        if (rdx_parse_long(value, r->lo, r->hi, &l))
            return -1;
        *(size_t *)field = (size_t)l;
        return 0;
    case P_BOOL:
        if ((l = parse_bool(value)) < 0)
            return -1;
        *(int *)field = (int)l;
        return 0;
    case P_STR:
        if (strlen(value) >= RDX_STR_MAX)
            return -1;
        strcpy(field, value);
        return 0;
    case P_CHOICE:
        for (int i = 0; r->choices[i]; i++) {
            if (strcasecmp(value, r->choices[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        return -1;
    }
    return -1;
}

static const cfg_row_t *row_find(const char *name)
{
    for (size_t i = 0; i < N_ROWS; i++)
        if (strcmp(k_rows[i].name, name) == 0)
            return &k_rows[i];
    return NULL;
}

rdx_status_t rdx_settings_set(rdx_settings_t *s, const char *name, const char *value)
{
    const cfg_row_t *r = row_find(name);
    if (!r)
        return rdx_err(RDX_ERR_CONFIG, "unknown configuration variable %s", name);
    if (row_parse(r, s, value) != 0) {
        char accepts[160];
        describe_accepts(r, accepts, sizeof(accepts));
        return rdx_err(RDX_ERR_CONFIG, "%s=\"%s\" is not valid: expected %s", name, value,
                       accepts);
    }
    return RDX_SUCCESS;
}

static void settings_defaults(rdx_settings_t *s)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < N_ROWS; i++) {
        int rc = row_parse(&k_rows[i], s, k_rows[i].dflt);
        (void)rc; /* defaults are valid by construction; tests/unit/test_config checks it */
    }
}

/* A typo like RDX_CHUNK_BYTE must not be silently ignored: warn about unknown RDX_* names
 * (RDX_LOCAL_RANK and RDX_REDUCE_ISA are read by other parts). */
static void warn_unknown_vars(void)
{
    extern char **environ;
    static const char *const extra[] = {"RDX_LOCAL_RANK", "RDX_REDUCE_ISA", "RDX_BIND", NULL};
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "RDX_", 4) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        char name[64];
        if (len >= sizeof(name))
            len = sizeof(name) - 1;
        memcpy(name, *e, len);
        name[len] = '\0';
        int known = row_find(name) != NULL;
        for (int i = 0; !known && extra[i]; i++)
            known = strcmp(extra[i], name) == 0;
        if (!known)
            rdx_log_warn("environment variable %s is not an rdx setting (typo?); `rdx-info` "
                         "lists them all", name);
    }
}

rdx_status_t rdx_settings_from_env(rdx_settings_t *s)
{
    settings_defaults(s);
    for (size_t i = 0; i < N_ROWS; i++) {
        const char *v = getenv(k_rows[i].name);
        if (v && *v)
            RDX_CHECK(rdx_settings_set(s, k_rows[i].name, v));
    }
    if (s->slots % 2)
        return rdx_err(RDX_ERR_CONFIG, "RDX_SLOTS=%d is not valid: expected an even number "
                       "(half the slots pipeline one step while the other half drains)", s->slots);
    rdx_log_set_level((rdx_log_level_t)s->log_level);
    warn_unknown_vars();
    return RDX_SUCCESS;
}

/* Reads an integer launcher variable; -1 if absent, -2 if malformed. */
static long env_long(const char *name)
{
    const char *v = getenv(name);
    long l;
    if (!v || !*v)
        return -1;
    if (rdx_parse_long(v, 0, INT_MAX, &l))
        return -2;
    return l;
}

rdx_status_t rdx_settings_discover_rank(rdx_settings_t *s)
{
    /* First match wins: rdx's own, torchrun, Open MPI, Slurm. */
    static const char *const pairs[][2] = {{"RANK", "WORLD_SIZE"},
                                           {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                           {"PMI_RANK", "PMI_SIZE"},
                                           {"SLURM_PROCID", "SLURM_NTASKS"}};
    for (size_t i = 0; i < 4 && (s->rank < 0 || s->size < 0); i++) {
        long r = env_long(pairs[i][0]), n = env_long(pairs[i][1]);
        if (r == -2 || n == -2)
            return rdx_err(RDX_ERR_CONFIG, "%s/%s are set but not integers", pairs[i][0],
                           pairs[i][1]);
        if (r >= 0 && n > 0) {
            s->rank = (int)r;
            s->size = (int)n;
        }
    }
    if (!s->addr[0]) {
        const char *h = getenv("MASTER_ADDR"), *p = getenv("MASTER_PORT");
        if (h && *h && p && *p) {
            if (snprintf(s->addr, sizeof(s->addr), "%s:%s", h, p) >= (int)sizeof(s->addr))
                return rdx_err(RDX_ERR_CONFIG, "MASTER_ADDR:MASTER_PORT is too long");
        }
    }
    if (s->rank < 0 && s->size < 0) {
        /* Not launched by anything: a single-process job. */
        s->rank = 0;
        s->size = 1;
    }
    if (s->rank < 0 || s->size <= 0 || s->rank >= s->size)
        return rdx_err(RDX_ERR_CONFIG, "rank %d / size %d is not valid: set RDX_RANK and "
                       "RDX_SIZE (0 <= rank < size), or launch with rdx-run, mpirun, srun or "
                       "torchrun", s->rank, s->size);
    if (s->size > 1 && !s->addr[0])
        return rdx_err(RDX_ERR_CONFIG, "rank %d of %d: no rendezvous address: set RDX_ADDR="
                       "host:port (rank 0's host), or MASTER_ADDR and MASTER_PORT", s->rank,
                       s->size);
    return RDX_SUCCESS;
}

rdx_status_t rdx_settings_apply_config(rdx_settings_t *s, const rdx_config_t *c)
{
    if (!c)
        return RDX_SUCCESS;
    if (c->rank >= 0)
        s->rank = c->rank;
    if (c->size >= 0)
        s->size = c->size;
    if (c->timeout_ms > 0)
        s->timeout_ms = c->timeout_ms;
    if (c->addr)
        RDX_CHECK(rdx_settings_set(s, "RDX_ADDR", c->addr));
    if (c->job_key)
        RDX_CHECK(rdx_settings_set(s, "RDX_JOB_KEY", c->job_key));
    if (c->transport)
        RDX_CHECK(rdx_settings_set(s, "RDX_TRANSPORT", c->transport));
    return RDX_SUCCESS;
}

void rdx_config_default(rdx_config_t *config)
{
    memset(config, 0, sizeof(*config));
    config->rank = -1;
    config->size = -1;
}

static void row_format(const cfg_row_t *r, const rdx_settings_t *s, char *buf, size_t len)
{
    const char *field = (const char *)s + r->offset;
    switch (r->parser) {
    case P_INT: case P_BOOL: snprintf(buf, len, "%d", *(const int *)field); break;
    case P_LONG: snprintf(buf, len, "%ld", *(const long *)field); break;
    case P_SIZE: snprintf(buf, len, "%zu", *(const size_t *)field); break;
    case P_MB: snprintf(buf, len, "%zu", *(const size_t *)field); break;
    case P_STR:
        /* Never print the job key. */
        snprintf(buf, len, "%s", strcmp(r->name, "RDX_JOB_KEY") == 0 && field[0] ? "(set)" : field);
        break;
    case P_CHOICE: snprintf(buf, len, "%s", r->choices[*(const int *)field]); break;
    }
}

void rdx_settings_print(const rdx_settings_t *s, FILE *out, int with_help)
{
    for (size_t i = 0; i < N_ROWS; i++) {
        char val[RDX_STR_MAX + 16];
        row_format(&k_rows[i], s, val, sizeof(val));
        if (with_help)
            fprintf(out, "  %-24s %-12s (default %s) %s\n", k_rows[i].name, val,
                    k_rows[i].dflt[0] ? k_rows[i].dflt : "\"\"", k_rows[i].help);
        else
            fprintf(out, " %s=%s", k_rows[i].name, val);
    }
    if (!with_help)
        fputc('\n', out);
}

const char *rdx_transport_name(int kind)
{
    return kind >= 0 && kind < 2 ? k_transports[kind] : "?";
}

const char *rdx_algo_name(int algo)
{
    return algo >= 0 && algo < 5 ? k_algos[algo] : "?";
}
