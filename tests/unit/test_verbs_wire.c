/*
 * Verbs transport pieces that need no RDMA device: pool sizing, the address blob check,
 * credit counters on the wire, GID preference and formatting, the memlock message, and a
 * clean failure (no hang, no abort) on a host without RDMA. The data path itself is tested
 * on a real device by tests/softroce/run-verbs-suite.sh (ctest -L verbs).
 */
#include <criterion/criterion.h>
#ifdef RDX_HAVE_VERBS
#include <linux/capability.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "src/config.h"
#include "src/error.h"
#include "transport/verbs.h"

Test(verbs_layout, default_fits)
{
    rdx_verbs_layout_t l;
    cr_assert_eq(rdx_verbs_layout_compute(0, 3, 256 << 10, 8, 64u << 20, &l), RDX_SUCCESS);
    cr_assert_eq(l.slot_bytes, 256u << 10);
    cr_assert_eq(l.stride, (256u << 10) + RDX_VERBS_PAYLOAD_OFF);
    cr_assert_eq(l.region_bytes, 3 * 8 * l.stride);
    cr_assert_eq(l.pool_bytes, 2 * l.region_bytes);
    cr_assert_eq(l.stride % 64, 0);
}

Test(verbs_layout, odd_slot_keeps_payload_aligned)
{
    rdx_verbs_layout_t l;
    cr_assert_eq(rdx_verbs_layout_compute(0, 1, 5000, 2, 0, &l), RDX_SUCCESS);
    cr_assert_eq(l.slot_bytes, 5000);
    cr_assert_eq(l.stride % 64, 0);
    cr_assert_geq(l.stride, 5000 + RDX_VERBS_PAYLOAD_OFF);
    cr_assert_geq(RDX_VERBS_PAYLOAD_OFF - RDX_VERBS_HDR_OFF, sizeof(rdx_verbs_slot_hdr_t));
}

Test(verbs_layout, shrinks_to_pool_limit)
{
    rdx_verbs_layout_t l;
    size_t limit = 8u << 20;
    cr_assert_eq(rdx_verbs_layout_compute(0, 7, 1 << 20, 8, limit, &l), RDX_SUCCESS);
    cr_assert_lt(l.slot_bytes, 1u << 20);
    cr_assert_geq(l.slot_bytes, RDX_VERBS_MIN_SLOT);
    cr_assert_eq(l.slot_bytes % 64, 0);
    cr_assert_leq(l.pool_bytes, limit);
}

Test(verbs_layout, too_small_pool_is_a_config_error)
{
    rdx_verbs_layout_t l;
    cr_assert_eq(rdx_verbs_layout_compute(3, 63, 1 << 20, 64, 1u << 20, &l), RDX_ERR_CONFIG);
    cr_assert(strstr(rdx_err_last(), "RDX_POOL_MB"), "%s", rdx_err_last());
    cr_assert(strstr(rdx_err_last(), "rank 3"), "%s", rdx_err_last());
}

Test(verbs_layout, single_rank_needs_no_pool)
{
    rdx_verbs_layout_t l;
    cr_assert_eq(rdx_verbs_layout_compute(0, 0, 256 << 10, 8, 64u << 20, &l), RDX_SUCCESS);
    cr_assert_eq(l.pool_bytes, 0);
}

static rdx_verbs_wire_hdr_t hdr_of(int rank)
{
    rdx_verbs_wire_hdr_t h = {.magic = RDX_VERBS_MAGIC, .version = RDX_VERBS_WIRE_VERSION,
                              .rank = rank, .size = 4, .slot_bytes = 65536,
                              .stride = 65536 + 64, .slots = 8, .link_layer = 2,
                              .is_global = 1};
    return h;
}

Test(verbs_wire, matching_blob_passes)
{
    rdx_verbs_wire_hdr_t mine = hdr_of(0), theirs = hdr_of(2);
    cr_assert_eq(rdx_verbs_wire_check(&mine, &theirs, 2), RDX_SUCCESS);
}

Test(verbs_wire, bad_magic_or_byte_order)
{
    rdx_verbs_wire_hdr_t mine = hdr_of(0), theirs = hdr_of(1);
    theirs.magic = __builtin_bswap32(RDX_VERBS_MAGIC);
    cr_assert_eq(rdx_verbs_wire_check(&mine, &theirs, 1), RDX_ERR_TRANSPORT);
    cr_assert(strstr(rdx_err_last(), "peer 1"), "%s", rdx_err_last());
}

Test(verbs_wire, version_and_settings_mismatch)
{
    rdx_verbs_wire_hdr_t mine = hdr_of(0), theirs = hdr_of(1);
    theirs.version = RDX_VERBS_WIRE_VERSION + 1;
    cr_assert_eq(rdx_verbs_wire_check(&mine, &theirs, 1), RDX_ERR_MISMATCH);
    theirs = hdr_of(1);
    theirs.slots = 4;
    cr_assert_eq(rdx_verbs_wire_check(&mine, &theirs, 1), RDX_ERR_MISMATCH);
    cr_assert(strstr(rdx_err_last(), "RDX_SLOTS"), "%s", rdx_err_last());
    theirs = hdr_of(3);
    cr_assert_eq(rdx_verbs_wire_check(&mine, &theirs, 1), RDX_ERR_MISMATCH); /* wrong rank */
    theirs = hdr_of(1);
    theirs.is_global = 0;
    cr_assert_eq(rdx_verbs_wire_check(&mine, &theirs, 1), RDX_ERR_MISMATCH);
}

Test(verbs_wire, counters_extend_across_wrap)
{
    cr_assert_eq(rdx_verbs_imm_extend(0, 5), 5);
    cr_assert_eq(rdx_verbs_imm_extend(5, 5), 5);
    uint64_t last = RDX_VERBS_IMM_MASK - 2; /* just below the 31-bit wrap */
    cr_assert_eq(rdx_verbs_imm_extend(last, 1), (uint64_t)RDX_VERBS_IMM_MASK + 2);
    uint64_t big = (7ull << 31) + 100;
    cr_assert_eq(rdx_verbs_imm_extend(big, (uint32_t)((big + 8) & RDX_VERBS_IMM_MASK)), big + 8);
    cr_assert_eq(RDX_VERBS_IMM_CREDIT & RDX_VERBS_IMM_MASK, 0);
}

static void gid_v4(uint8_t g[16], int a, int b, int c, int d)
{
    memset(g, 0, 16);
    g[10] = g[11] = 0xff;
    g[12] = (uint8_t)a, g[13] = (uint8_t)b, g[14] = (uint8_t)c, g[15] = (uint8_t)d;
}

Test(verbs_gid, preference_order)
{
    uint8_t v4[16], v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}, ll[16] = {0xfe, 0x80, [15] = 7},
            zero[16] = {0};
    gid_v4(v4, 10, 99, 0, 1);
    const char *why = NULL;
    int v2v4 = rdx_verbs_gid_score(v4, IBV_GID_TYPE_ROCE_V2, &why);
    cr_assert(why && strstr(why, "IPv4"));
    int v2v6 = rdx_verbs_gid_score(v6, IBV_GID_TYPE_ROCE_V2, NULL);
    int v1v4 = rdx_verbs_gid_score(v4, IBV_GID_TYPE_ROCE_V1, NULL);
    int v1v6 = rdx_verbs_gid_score(v6, IBV_GID_TYPE_ROCE_V1, NULL);
    cr_assert(v2v4 > v2v6 && v2v6 > v1v4 && v1v4 > v1v6 && v1v6 >= 0);
    cr_assert_lt(rdx_verbs_gid_score(zero, IBV_GID_TYPE_ROCE_V2, NULL), 0);
    cr_assert_lt(rdx_verbs_gid_score(ll, IBV_GID_TYPE_ROCE_V2, &why), 0);
    cr_assert(strstr(why, "link-local"));
}

Test(verbs_gid, text_form)
{
    uint8_t g[16], ll[16] = {0xfe, 0x80, [8] = 0x48, 0x12, 0x67, 0xff, 0xfe, 0x77, 0xb9, 0xc8},
                   v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}, zero[16] = {0};
    char s[64];
    gid_v4(g, 10, 99, 0, 1);
    rdx_verbs_gid_format(g, s, sizeof(s));
    cr_assert_str_eq(s, "::ffff:10.99.0.1");
    rdx_verbs_gid_format(ll, s, sizeof(s));
    cr_assert_str_eq(s, "fe80::4812:67ff:fe77:b9c8");
    rdx_verbs_gid_format(v6, s, sizeof(s));
    cr_assert_str_eq(s, "2001:db8::1");
    rdx_verbs_gid_format(zero, s, sizeof(s));
    cr_assert_str_eq(s, "::");
}

/* Drops CAP_IPC_LOCK from this (test) process, as an unprivileged job would lack it. */
static void drop_ipc_lock(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    cr_assert_eq(syscall(SYS_capget, &h, d), 0);
    d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    d[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
    cr_assert_eq(syscall(SYS_capset, &h, d), 0);
    cr_assert(!rdx_verbs_has_ipc_lock());
}

Test(verbs_memlock, low_limit_says_how_to_raise_it)
{
    drop_ipc_lock();
    struct rlimit rl = {.rlim_cur = 64 << 10, .rlim_max = 64 << 10};
    cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
    cr_assert_eq(rdx_verbs_memlock_check(2, 8u << 20), RDX_ERR_NO_MEMORY);
    const char *m = rdx_err_last();
    cr_assert(strstr(m, "rank 2") && strstr(m, "RLIMIT_MEMLOCK is 64 KiB") &&
              strstr(m, "ulimit -l unlimited") && strstr(m, "RDX_POOL_MB"), "%s", m);
    cr_assert_eq(rdx_verbs_memlock_check(2, 32 << 10), RDX_SUCCESS);
}

Test(verbs_memlock, unlimited_passes)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY)
        cr_skip_test("hard RLIMIT_MEMLOCK is finite here");
    rl.rlim_cur = RLIM_INFINITY;
    cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
    cr_assert_eq(rdx_verbs_memlock_check(0, (size_t)1 << 40), RDX_SUCCESS);
}

/* On a host without RDMA, create must fail fast with a message, never hang or abort. */
Test(verbs_create, no_rdma_fails_cleanly, .timeout = 30)
{
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (list)
        ibv_free_device_list(list);
    if (list && n > 0)
        cr_skip_test("this host has an RDMA device: the guest suite covers it");
    rdx_settings_t s;
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    rdx_tp_params_t p = {.rank = 0, .size = 1, .slot_bytes = 65536, .slots = 8,
                         .pool_bytes = 64u << 20, .bs = NULL, .settings = &s};
    rdx_tp_t *tp = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rdx_status_t st = rdx_tp_verbs_ops.create(&p, &tp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_eq(st, RDX_ERR_TRANSPORT, "%s", rdx_err_last());
    cr_assert_null(tp);
    cr_assert(strstr(rdx_err_last(), "rank 0: verbs:"), "%s", rdx_err_last());
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 5);
}

Test(verbs_create, bad_parameters)
{
    rdx_settings_t s;
    rdx_tp_t *tp = NULL;
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    rdx_tp_params_t p = {.rank = 0, .size = 2, .slot_bytes = 65536, .slots = 8,
                         .pool_bytes = 64u << 20, .bs = NULL, .settings = &s};
    cr_assert_eq(rdx_tp_verbs_ops.create(&p, &tp), RDX_ERR_INVALID_ARG); /* no bootstrap */
    p.size = 1;
    p.slots = 1;
    cr_assert_eq(rdx_tp_verbs_ops.create(&p, &tp), RDX_ERR_CONFIG);
    cr_assert(strstr(rdx_err_last(), "RDX_SLOTS"), "%s", rdx_err_last());
}
#else
Test(verbs_wire, not_built)
{
    cr_skip_test("verbs transport not built (RDX_WITH_VERBS=OFF)");
}
#endif
