/*
 * verbs_gid: device, port and GID selection on the machine's real RDMA device.
 *
 * Auto-selection must pick the RoCE v2 IPv4-mapped GID. The expected index is computed
 * independently from sysfs (gids/N and gid_attrs/types/N), and inside the soft-RoCE guest it
 * must also equal $SOFTROCE_GID_INDEX (what the guest's init found). Then explicit settings:
 * RDX_IB_GID_INDEX=0 is obeyed; an empty or out-of-range index, an unknown device and a
 * missing port are RDX_ERR_CONFIG / RDX_ERR_TRANSPORT with a message naming the setting.
 * Prints one line per check and exits non-zero if any failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/config.h"
#include "src/error.h"
#include "src/log.h"
#include "transport/verbs.h"

static int failures;

static void check(int ok, const char *what, const char *detail)
{
    printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what, detail[0] ? ": " : "", detail);
    failures += !ok;
}

/* First index whose sysfs GID is ::ffff:a.b.c.d and whose type is "RoCE v2", or -1. */
static int sysfs_roce_v2_ipv4(const char *dev, int port)
{
    for (int i = 0; i < 1024; i++) {
        char path[256], gid[64] = "", type[32] = "";
        snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/%d/gids/%d", dev, port, i);
        FILE *f = fopen(path, "r");
        if (!f)
            return -1;
        if (!fgets(gid, sizeof(gid), f))
            gid[0] = '\0';
        fclose(f);
        snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/%d/gid_attrs/types/%d",
                 dev, port, i);
        if ((f = fopen(path, "r"))) {
            if (!fgets(type, sizeof(type), f))
                type[0] = '\0';
            fclose(f);
        }
        if (strncmp(gid, "0000:0000:0000:0000:0000:ffff:", 30) == 0 &&
            strncmp(type, "RoCE v2", 7) == 0)
            return i;
    }
    return -1;
}

static void check_auto(rdx_settings_t *s)
{
    rdx_verbs_dev_t dev;
    char msg[400];
    rdx_status_t st = rdx_verbs_dev_open(s, 0, &dev);
    if (st != RDX_SUCCESS) {
        check(0, "auto selection opens a device", rdx_err_last());
        return;
    }
    char gid[64];
    rdx_verbs_gid_format(dev.gid.raw, gid, sizeof(gid));
    snprintf(msg, sizeof(msg), "%s:%u gid[%d] %s %s (%s)", dev.name, dev.port, dev.gid_index,
             gid, rdx_verbs_gid_type_name(dev.gid_type), dev.why);
    check(1, "auto selection", msg);
    if (dev.port_attr.link_layer == IBV_LINK_LAYER_ETHERNET) {
        int want = sysfs_roce_v2_ipv4(dev.name, dev.port);
        snprintf(msg, sizeof(msg), "picked %d, sysfs says %d", dev.gid_index, want);
        check(want >= 0 && dev.gid_index == want, "auto picks the RoCE v2 IPv4 GID (sysfs)", msg);
        check(dev.gid_type == IBV_GID_TYPE_ROCE_V2 && strncmp(gid, "::ffff:", 7) == 0,
              "chosen GID is RoCE v2 and IPv4-mapped", gid);
    }
    const char *env = getenv("SOFTROCE_GID_INDEX");
    if (env) {
        snprintf(msg, sizeof(msg), "picked %d, guest init found %s", dev.gid_index, env);
        check(dev.gid_index == atoi(env), "auto matches $SOFTROCE_GID_INDEX", msg);
        check(strcmp(dev.name, getenv("SOFTROCE_DEV") ? getenv("SOFTROCE_DEV") : "rxe0") == 0,
              "device is $SOFTROCE_DEV", dev.name);
    }
    rdx_verbs_dev_close(&dev);
}

static void expect_fail(rdx_settings_t *s, rdx_status_t want, const char *needle,
                        const char *what)
{
    rdx_verbs_dev_t dev;
    rdx_status_t st = rdx_verbs_dev_open(s, 0, &dev);
    if (st == RDX_SUCCESS)
        rdx_verbs_dev_close(&dev);
    check(st == want && strstr(rdx_err_last(), needle) != NULL, what,
          st == RDX_SUCCESS ? "succeeded" : rdx_err_last());
}

static void check_explicit(rdx_settings_t *s)
{
    rdx_verbs_dev_t dev;
    rdx_settings_t t = *s;
    if (rdx_settings_set(&t, "RDX_IB_GID_INDEX", "0") != RDX_SUCCESS ||
        rdx_verbs_dev_open(&t, 0, &dev) != RDX_SUCCESS) {
        check(0, "RDX_IB_GID_INDEX=0 is obeyed", rdx_err_last());
    } else {
        check(dev.gid_index == 0 && strstr(dev.why, "RDX_IB_GID_INDEX"),
              "RDX_IB_GID_INDEX=0 is obeyed", dev.why);
        char spec[80];
        snprintf(spec, sizeof(spec), "%s:9", dev.name);
        rdx_verbs_dev_close(&dev);
        t = *s;
        rdx_settings_set(&t, "RDX_IB_DEV", spec);
        expect_fail(&t, RDX_ERR_TRANSPORT, "no ACTIVE port", "RDX_IB_DEV=dev:9 (no such port)");
    }
    t = *s;
    t.ib_gid_index = 255; /* beyond the table, or an empty entry: both must be refused */
    expect_fail(&t, RDX_ERR_CONFIG, "RDX_IB_GID_INDEX=255", "RDX_IB_GID_INDEX=255 rejected");
    t = *s;
    rdx_settings_set(&t, "RDX_IB_DEV", "nosuchdev0");
    expect_fail(&t, RDX_ERR_CONFIG, "no such device", "RDX_IB_DEV=nosuchdev0 rejected");
}

int main(void)
{
    rdx_settings_t s;
    if (rdx_settings_from_env(&s) != RDX_SUCCESS) {
        fprintf(stderr, "verbs_gid: %s\n", rdx_err_last());
        return 2;
    }
    rdx_log_set_level((rdx_log_level_t)s.log_level);
    s.ib_gid_index = -1;
    check_auto(&s);
    check_explicit(&s);
    printf("verbs_gid: %s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
