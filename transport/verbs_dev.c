/*
 * Device, port and GID selection for the verbs transport.
 *
 * RDX_IB_DEV = "name[:port]" picks a device (and port); empty means the first ACTIVE port of
 * the first device that has one. On InfiniBand we route by LID unless RDX_IB_GID_INDEX is
 * set. On RoCE every packet carries a GRH, so a GID is required; auto-selection scores each
 * table entry (rdx_verbs_gid_score) and keeps the best, lowest index first:
 *
 *   RoCE v2 + IPv4-mapped (::ffff:a.b.c.d)  routable over UDP/IP, what most fabrics use
 *   RoCE v2 + global IPv6
 *   RoCE v1 + IPv4-mapped / global           layer-2 only
 *   zero or link-local (fe80::/10)           skipped: empty, or not routable beyond the link
 *
 * The choice and the reason are logged at info: RoCE problems are usually GID problems.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/error.h"
#include "src/log.h"
#include "transport/verbs.h"

#define RDX_VERBS_RXE_VENDOR_ID 0xffffffu /* what rdma_rxe reports */

const char *rdx_verbs_gid_type_name(int gid_type)
{
    switch (gid_type) {
    case IBV_GID_TYPE_IB:
        return "IB";
    case IBV_GID_TYPE_ROCE_V1:
        return "RoCE v1";
    case IBV_GID_TYPE_ROCE_V2:
        return "RoCE v2";
    default:
        return "unknown";
    }
}

static bool gid_is_zero(const uint8_t raw[16])
{
    for (int i = 0; i < 16; i++)
        if (raw[i])
            return false;
    return true;
}

static bool gid_is_v4mapped(const uint8_t raw[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(raw, prefix, sizeof(prefix)) == 0;
}

static bool gid_is_link_local(const uint8_t raw[16])
{
    return raw[0] == 0xfe && (raw[1] & 0xc0) == 0x80;
}

int rdx_verbs_gid_score(const uint8_t raw[16], int gid_type, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (gid_is_zero(raw)) {
        *why = "empty entry";
        return -1;
    }
    if (gid_is_link_local(raw)) {
        *why = "link-local, not routable";
        return -1;
    }
    bool v4 = gid_is_v4mapped(raw);
    switch (gid_type) {
    case IBV_GID_TYPE_ROCE_V2:
        *why = v4 ? "RoCE v2 with an IPv4 address: routable, preferred"
                  : "RoCE v2 with a global IPv6 address";
        return v4 ? 40 : 30;
    case IBV_GID_TYPE_ROCE_V1:
        *why = v4 ? "RoCE v1 (layer 2 only) with an IPv4 address"
                  : "RoCE v1 (layer 2 only)";
        return v4 ? 20 : 10;
    case IBV_GID_TYPE_IB:
        *why = "InfiniBand GID";
        return 5;
    default:
        *why = "GID of unknown type";
        return 1;
    }
}

void rdx_verbs_gid_format(const uint8_t raw[16], char *out, size_t outlen)
{
    if (gid_is_v4mapped(raw)) {
        snprintf(out, outlen, "::ffff:%u.%u.%u.%u", raw[12], raw[13], raw[14], raw[15]);
        return;
    }
    /* Compress the longest run of zero groups (length >= 2) as "::", like inet_ntop. */
    uint16_t g[8];
    for (int i = 0; i < 8; i++)
        g[i] = (uint16_t)(raw[2 * i] << 8 | raw[2 * i + 1]);
    int best = -1, best_len = 1;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && g[j] == 0)
            j++;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j > i ? j : i + 1;
    }
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < 8 && n < outlen; i++) {
        if (i == best) {
            n += (size_t)snprintf(out + n, outlen - n, "::");
            i += best_len - 1;
            continue;
        }
        bool sep = i > 0 && i != best + best_len;
        n += (size_t)snprintf(out + n, outlen - n, "%s%x", sep ? ":" : "", g[i]);
    }
}

/* GID type from sysfs, for kernels where ibv_query_gid_ex cannot tell. */
static int gid_type_sysfs(const char *dev, int port, int index)
{
    char path[256], buf[32] = "";
    snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/%d/gid_attrs/types/%d", dev,
             port, index);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    if (strncmp(buf, "RoCE v2", 7) == 0)
        return IBV_GID_TYPE_ROCE_V2;
    if (strncmp(buf, "IB/RoCE v1", 10) == 0 || strncmp(buf, "RoCE v1", 7) == 0)
        return IBV_GID_TYPE_ROCE_V1;
    return -1;
}

/* Reads entry `index`; false when the entry is empty or unreadable. */
static bool gid_read(rdx_verbs_dev_t *dev, int index, union ibv_gid *gid, int *type)
{
    struct ibv_gid_entry entry;
    if (ibv_query_gid_ex(dev->ctx, dev->port, (uint32_t)index, &entry, 0) == 0) {
        *gid = entry.gid;
        *type = (int)entry.gid_type;
        if (dev->port_attr.link_layer != IBV_LINK_LAYER_ETHERNET)
            *type = IBV_GID_TYPE_IB;
        return true;
    }
    if (errno == ENODATA)
        return false; /* empty slot of the table */
    if (ibv_query_gid(dev->ctx, dev->port, index, gid) != 0)
        return false;
    *type = dev->port_attr.link_layer == IBV_LINK_LAYER_ETHERNET
                ? gid_type_sysfs(dev->name, dev->port, index)
                : IBV_GID_TYPE_IB;
    return true;
}

static rdx_status_t gid_pick_auto(rdx_verbs_dev_t *dev, int rank)
{
    int best = -1, best_score = -1, best_type = -1;
    const char *best_why = "";
    union ibv_gid best_gid;
    memset(&best_gid, 0, sizeof(best_gid));
    for (int i = 0; i < dev->port_attr.gid_tbl_len; i++) {
        union ibv_gid gid;
        int type = -1;
        const char *why;
        if (!gid_read(dev, i, &gid, &type))
            continue;
        int score = rdx_verbs_gid_score(gid.raw, type, &why);
        char text[64];
        rdx_verbs_gid_format(gid.raw, text, sizeof(text));
        rdx_log_debug("verbs: %s:%u gid[%d] %s %s: score %d (%s)", dev->name, dev->port, i,
                      text, rdx_verbs_gid_type_name(type), score, why);
        if (score > best_score) {
            best = i;
            best_score = score;
            best_type = type;
            best_gid = gid;
            best_why = why;
        }
    }
    if (best < 0)
        return rdx_err(RDX_ERR_TRANSPORT,
                       "rank %d: verbs: %s:%u has no usable GID (all %d entries empty or "
                       "link-local): give its netdev an IP address or set RDX_IB_GID_INDEX",
                       rank, dev->name, dev->port, dev->port_attr.gid_tbl_len);
    dev->gid_index = best;
    dev->gid = best_gid;
    dev->gid_type = best_type;
    snprintf(dev->why, sizeof(dev->why), "auto: %s", best_why);
    return RDX_SUCCESS;
}

static rdx_status_t gid_pick_explicit(rdx_verbs_dev_t *dev, int index, int rank)
{
    union ibv_gid gid;
    int type = -1;
    if (index >= dev->port_attr.gid_tbl_len)
        return rdx_err(RDX_ERR_CONFIG,
                       "rank %d: verbs: RDX_IB_GID_INDEX=%d but %s:%u has %d GID entries",
                       rank, index, dev->name, dev->port, dev->port_attr.gid_tbl_len);
    if (!gid_read(dev, index, &gid, &type) || gid_is_zero(gid.raw))
        return rdx_err(RDX_ERR_CONFIG,
                       "rank %d: verbs: RDX_IB_GID_INDEX=%d: entry %d of %s:%u is empty", rank,
                       index, index, dev->name, dev->port);
    dev->gid_index = index;
    dev->gid = gid;
    dev->gid_type = type;
    snprintf(dev->why, sizeof(dev->why), "set by RDX_IB_GID_INDEX");
    return RDX_SUCCESS;
}

static rdx_status_t gid_pick(rdx_verbs_dev_t *dev, const rdx_settings_t *s, int rank)
{
    bool ethernet = dev->port_attr.link_layer == IBV_LINK_LAYER_ETHERNET;
    if (s->ib_gid_index >= 0)
        return gid_pick_explicit(dev, s->ib_gid_index, rank);
    if (ethernet)
        return gid_pick_auto(dev, rank);
    /* InfiniBand: the subnet manager gave us a LID; no GRH needed inside one subnet. */
    dev->gid_index = -1;
    dev->gid_type = IBV_GID_TYPE_IB;
    memset(&dev->gid, 0, sizeof(dev->gid));
    if (ibv_query_gid(dev->ctx, dev->port, 0, &dev->gid) != 0)
        memset(&dev->gid, 0, sizeof(dev->gid));
    snprintf(dev->why, sizeof(dev->why), "InfiniBand: LID %u routing (set RDX_IB_GID_INDEX "
             "for GRH routing)", dev->port_attr.lid);
    return RDX_SUCCESS;
}

/* Splits "name[:port]"; port 0 means "any active port". */
static rdx_status_t dev_spec_parse(const char *spec, char *name, size_t namelen, int *port,
                                   int rank)
{
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    *port = 0;
    if (n >= namelen)
        return rdx_err(RDX_ERR_CONFIG, "rank %d: verbs: RDX_IB_DEV=%s: name too long", rank,
                       spec);
    memcpy(name, spec, n);
    name[n] = '\0';
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 255)
            return rdx_err(RDX_ERR_CONFIG,
                           "rank %d: verbs: RDX_IB_DEV=%s: port must be 1..255 (name[:port])",
                           rank, spec);
        *port = (int)p;
    }
    return RDX_SUCCESS;
}

/* Looks for an active port on an open device; port_want 0 = any. */
static bool dev_find_port(rdx_verbs_dev_t *dev, int port_want, char *states, size_t slen)
{
    for (int p = 1; p <= dev->dev_attr.phys_port_cnt; p++) {
        struct ibv_port_attr pa;
        if (port_want && p != port_want)
            continue;
        if (ibv_query_port(dev->ctx, (uint8_t)p, &pa) != 0)
            continue;
        size_t used = strlen(states);
        snprintf(states + used, slen - used, "%s%s:%d %s", used ? ", " : "", dev->name, p,
                 ibv_port_state_str(pa.state));
        if (pa.state == IBV_PORT_ACTIVE) {
            dev->port = (uint8_t)p;
            dev->port_attr = pa;
            return true;
        }
    }
    return false;
}

static rdx_status_t dev_list_get(struct ibv_device ***list, int *n, int rank)
{
    errno = 0;
    *list = ibv_get_device_list(n);
    if (!*list)
        return rdx_err(RDX_ERR_TRANSPORT,
                       "rank %d: verbs: ibv_get_device_list: %s (no RDMA support in this "
                       "kernel, or rdma modules not loaded)",
                       rank, strerror(errno ? errno : ENODEV));
    if (*n == 0) {
        ibv_free_device_list(*list);
        return rdx_err(RDX_ERR_TRANSPORT,
                       "rank %d: verbs: no RDMA devices (ibv_devices lists none; for soft-RoCE: "
                       "rdma link add rxe0 type rxe netdev ETH)", rank);
    }
    return RDX_SUCCESS;
}

/* Tries one device: open it and find an active port; closes it again if none. */
static bool dev_try(struct ibv_device *d, rdx_verbs_dev_t *dev, int port_want, char *states,
                    size_t slen)
{
    dev->ctx = ibv_open_device(d);
    if (!dev->ctx) {
        size_t used = strlen(states);
        snprintf(states + used, slen - used, "%s%s: open failed (%s)", used ? ", " : "",
                 ibv_get_device_name(d), strerror(errno));
        return false;
    }
    snprintf(dev->name, sizeof(dev->name), "%s", ibv_get_device_name(d));
    if (ibv_query_device(dev->ctx, &dev->dev_attr) == 0 &&
        dev_find_port(dev, port_want, states, slen))
        return true;
    ibv_close_device(dev->ctx);
    dev->ctx = NULL;
    return false;
}

static rdx_status_t dev_select(rdx_verbs_dev_t *dev, const rdx_settings_t *s, int rank)
{
    char want[64] = "", states[512] = "";
    int port_want = 0, n = 0;
    struct ibv_device **list;
    RDX_CHECK(dev_spec_parse(s->ib_dev, want, sizeof(want), &port_want, rank));
    RDX_CHECK(dev_list_get(&list, &n, rank));
    bool found = false, named = false;
    for (int i = 0; i < n && !found; i++) {
        if (want[0] && strcmp(ibv_get_device_name(list[i]), want) != 0)
            continue;
        named = true;
        found = dev_try(list[i], dev, port_want, states, sizeof(states));
    }
    ibv_free_device_list(list);
    if (found)
        return RDX_SUCCESS;
    if (want[0] && !named)
        return rdx_err(RDX_ERR_CONFIG, "rank %d: verbs: RDX_IB_DEV=%s: no such device", rank,
                       s->ib_dev);
    return rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: no ACTIVE port%s%s (ports: %s)", rank,
                   want[0] ? " on " : "", s->ib_dev, states[0] ? states : "none");
}

rdx_status_t rdx_verbs_dev_open(const rdx_settings_t *s, int rank, rdx_verbs_dev_t *dev)
{
    memset(dev, 0, sizeof(*dev));
    dev->gid_index = -1;
    dev->gid_type = -1;
    RDX_CHECK(dev_select(dev, s, rank));
    dev->soft = dev->dev_attr.vendor_id == RDX_VERBS_RXE_VENDOR_ID;
    rdx_status_t st = gid_pick(dev, s, rank);
    if (st != RDX_SUCCESS) {
        rdx_verbs_dev_close(dev);
        return st;
    }
    char text[64];
    rdx_verbs_gid_format(dev->gid.raw, text, sizeof(text));
    rdx_log_info("verbs: %s:%u %s, mtu %d, gid[%d] %s %s (%s)", dev->name, dev->port,
                 dev->port_attr.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet (RoCE)"
                                                                      : "InfiniBand",
                 128 << dev->port_attr.active_mtu, dev->gid_index, text,
                 rdx_verbs_gid_type_name(dev->gid_type), dev->why);
    return RDX_SUCCESS;
}

void rdx_verbs_dev_close(rdx_verbs_dev_t *dev)
{
    if (dev->ctx)
        ibv_close_device(dev->ctx);
    dev->ctx = NULL;
}
