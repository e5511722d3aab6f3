/*
 * Configuration: every RDX_* variable is one row of a declarative table in config.c
 * (name, default, help, parser, offset into rdx_settings_t). Nothing else calls getenv for
 * an RDX_* variable. A bad value is an RDX_ERR_CONFIG naming the variable and what it accepts.
 */
#ifndef RDX_CONFIG_H
#define RDX_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include "rdx/rdx.h"

#define RDX_STR_MAX 256
/* RDX_SPIN_US when every rank on the host has a CPU of its own (auto, -1, resolves to this
 * or to 0; see comm_settle_spin). */
#define RDX_SPIN_US_DEDICATED 20

typedef enum { RDX_TRANSPORT_UCX = 0, RDX_TRANSPORT_VERBS } rdx_transport_kind_t;
typedef enum {
    RDX_ALGO_AUTO = 0, RDX_ALGO_RING, RDX_ALGO_TREE, RDX_ALGO_RD, RDX_ALGO_RABENSEIFNER
} rdx_algo_t;

/* Effective settings of one communicator (after env, launcher variables and rdx_config_t). */
typedef struct rdx_settings {
    int rank;                       /* -1 until discovered */
    int size;
    char addr[RDX_STR_MAX];         /* rendezvous host:port */
    char job_key[RDX_STR_MAX];
    int transport;                  /* rdx_transport_kind_t */
    int log_level;                  /* rdx_log_level_t */
    long timeout_ms;                /* every blocking wait */
    long connect_timeout_ms;        /* bootstrap and transport connection set-up */
    size_t chunk_bytes;             /* slot payload size: unit of pipelining */
    int slots;                      /* slots per peer (FIFO depth, >= 2, even) */
    size_t pool_mb;                 /* registered pool bound */
    int algo;                       /* rdx_algo_t */
    long spin_us;                   /* busy-poll before yielding; -1 = auto (comm.c) */
    char ucx_tls[RDX_STR_MAX];      /* passed to UCX_TLS when set */
    char ifname[RDX_STR_MAX];       /* interface for the bootstrap listener */
    char ib_dev[RDX_STR_MAX];       /* verbs: "name[:port]", "" = first active port */
    int ib_gid_index;               /* -1 = auto */
    int ib_tc;
    int ib_sl;
    int ib_timeout;
    int ib_retry_cnt;
    int check;                      /* collective fingerprint check */
} rdx_settings_t;

/* Fills s with defaults, then every RDX_* variable that is set. */
rdx_status_t rdx_settings_from_env(rdx_settings_t *s);
/* Rank/size/address from launcher variables (RDX_*, torchrun, Open MPI, Slurm). */
rdx_status_t rdx_settings_discover_rank(rdx_settings_t *s);
/* Applies the non-default fields of a public rdx_config_t on top. */
rdx_status_t rdx_settings_apply_config(rdx_settings_t *s, const rdx_config_t *c);

/* Parses one variable's value as the table says (used by tests and rdx-info). */
rdx_status_t rdx_settings_set(rdx_settings_t *s, const char *name, const char *value);
/* Prints "NAME=value  (default ...) help" for every row. */
void rdx_settings_print(const rdx_settings_t *s, FILE *out, int with_help);
const char *rdx_transport_name(int kind);
const char *rdx_algo_name(int algo);

/* Parse helpers shared with tools: sizes accept K/M/G suffixes (powers of 1024). */
int rdx_parse_size(const char *s, size_t *out);
int rdx_parse_long(const char *s, long lo, long hi, long *out);

#endif
