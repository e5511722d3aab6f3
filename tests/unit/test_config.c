/* The RDX_* table: defaults, valid and invalid values, rank discovery order. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "src/config.h"
#include "src/error.h"

static void clear_env(void)
{
    static const char *const vars[] = {
        "RDX_RANK", "RDX_SIZE", "RDX_ADDR", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
        "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
        "SLURM_PROCID", "SLURM_NTASKS", "RDX_CHUNK_BYTES", "RDX_SLOTS", "RDX_TRANSPORT", NULL};
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
}

Test(config, defaults_are_valid)
{
    clear_env();
    rdx_settings_t s;
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS, "%s", rdx_err_last());
    cr_assert_eq(s.transport, RDX_TRANSPORT_UCX);
    cr_assert_eq(s.chunk_bytes, 256u << 10);
    cr_assert_eq(s.slots, 8);
    cr_assert_eq(s.rank, -1);
    cr_assert_eq(s.ib_gid_index, -1);
}

Test(config, sizes_and_choices)
{
    rdx_settings_t s;
    clear_env();
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    cr_assert_eq(rdx_settings_set(&s, "RDX_CHUNK_BYTES", "1M"), RDX_SUCCESS);
    cr_assert_eq(s.chunk_bytes, 1u << 20);
    cr_assert_eq(rdx_settings_set(&s, "RDX_CHUNK_BYTES", "64KiB"), RDX_SUCCESS);
    cr_assert_eq(s.chunk_bytes, 64u << 10);
    cr_assert_eq(rdx_settings_set(&s, "RDX_TRANSPORT", "VERBS"), RDX_SUCCESS);
    cr_assert_eq(s.transport, RDX_TRANSPORT_VERBS);
    cr_assert_eq(rdx_settings_set(&s, "RDX_CHECK", "off"), RDX_SUCCESS);
    cr_assert_eq(s.check, 0);
}

Test(config, bad_values_name_the_variable)
{
    rdx_settings_t s;
    clear_env();
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    static const char *const bad[][2] = {
        {"RDX_CHUNK_BYTES", "12Q"}, {"RDX_CHUNK_BYTES", "-5"}, {"RDX_CHUNK_BYTES", "1"},
        {"RDX_SLOTS", "1"}, {"RDX_SLOTS", "abc"}, {"RDX_TRANSPORT", "carrier-pigeon"},
        {"RDX_TIMEOUT_MS", "0"}, {"RDX_LOG", "loud"}, {"RDX_CHECK", "maybe"},
        {"RDX_CHUNK_BYTES", "99999999999999999999G"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(rdx_settings_set(&s, bad[i][0], bad[i][1]), RDX_ERR_CONFIG, "%s=%s accepted",
                     bad[i][0], bad[i][1]);
        cr_assert(strstr(rdx_err_last(), bad[i][0]), "message lacks the name: %s", rdx_err_last());
    }
    cr_assert_eq(rdx_settings_set(&s, "RDX_NOPE", "1"), RDX_ERR_CONFIG);
}

Test(config, odd_slots_rejected_at_init)
{
    clear_env();
    setenv("RDX_SLOTS", "5", 1);
    rdx_settings_t s;
    cr_assert_eq(rdx_settings_from_env(&s), RDX_ERR_CONFIG);
    cr_assert(strstr(rdx_err_last(), "RDX_SLOTS"));
}

Test(config, rank_discovery_first_match_wins)
{
    rdx_settings_t s;
    clear_env();
    setenv("OMPI_COMM_WORLD_RANK", "3", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("SLURM_PROCID", "1", 1);
    setenv("SLURM_NTASKS", "2", 1);
    setenv("MASTER_ADDR", "10.0.0.1", 1);
    setenv("MASTER_PORT", "29500", 1);
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    cr_assert_eq(rdx_settings_discover_rank(&s), RDX_SUCCESS, "%s", rdx_err_last());
    cr_assert_eq(s.rank, 3);
    cr_assert_eq(s.size, 4);
    cr_assert_str_eq(s.addr, "10.0.0.1:29500");

    setenv("RDX_RANK", "0", 1);
    setenv("RDX_SIZE", "2", 1);
    setenv("RDX_ADDR", "127.0.0.1:1234", 1);
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    cr_assert_eq(rdx_settings_discover_rank(&s), RDX_SUCCESS);
    cr_assert_eq(s.rank, 0);
    cr_assert_eq(s.size, 2);
    cr_assert_str_eq(s.addr, "127.0.0.1:1234");
}

Test(config, alone_is_one_rank_and_bad_rank_is_an_error)
{
    rdx_settings_t s;
    clear_env();
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    cr_assert_eq(rdx_settings_discover_rank(&s), RDX_SUCCESS);
    cr_assert_eq(s.rank, 0);
    cr_assert_eq(s.size, 1);

    setenv("RDX_RANK", "5", 1);
    setenv("RDX_SIZE", "2", 1);
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    cr_assert_eq(rdx_settings_discover_rank(&s), RDX_ERR_CONFIG);

    setenv("RDX_RANK", "1", 1);
    cr_assert_eq(rdx_settings_from_env(&s), RDX_SUCCESS);
    cr_assert_eq(rdx_settings_discover_rank(&s), RDX_ERR_CONFIG, "no address must be an error");
    cr_assert(strstr(rdx_err_last(), "RDX_ADDR"));
}
