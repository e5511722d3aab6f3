/*
 * Bootstrap rendezvous and small collectives over a star of TCP connections.
 *
 *            rank 1
 *              |
 *   rank 3 -- rank 0 (root: listens, authenticates, relays) -- rank 2
 *
 * Rendezvous: the root runs one poll() loop over its listening socket, every connection
 * still in its handshake (each a small state machine with a 2 s deadline) and every rank
 * already admitted, so a slow or hostile stranger never delays a genuine rank. Clients
 * connect with exponential backoff until the connect deadline. The handshake is described
 * in bootstrap_wire.h. Rendezvous completes on every rank at once: the root sends READY
 * only when all size-1 ranks are in, and ABORT (with its reason) if it gives up.
 *
 * Collectives: allgather = gather to root + root sends the assembled block back;
 * bcast from r != 0 = r sends to root, root relays; barrier = allgather of one byte.
 * Each runs one poll() loop over all its transfers with a single deadline. When one fails
 * at the root, the root sends ABORT (status + reason) to everyone else so all ranks fail
 * fast with the real cause instead of timing out; the bootstrap is then unusable.
 */
#include "src/bootstrap.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "src/bootstrap_wire.h"
#include "src/error.h"
#include "src/log.h"
#include "src/net.h"
#include "src/sha256.h"

#define BS_DEFAULT_TIMEOUT_MS 300000L /* used when a caller passes a deadline <= 0 */
#define BS_PENDING_MAX 64             /* handshakes in flight at the root */
#define BS_BACKOFF_MIN_MS 10
#define BS_BACKOFF_MAX_MS 500
#define BS_CONNECT_ATTEMPT_MS 2000    /* one connect() waits at most this long */
#define BS_GRACE_MAX_MS 1000

struct rdx_bootstrap {
    int rank;
    int size;
    long timeout_ms;                        /* deadline of each collective call */
    rdx_status_t failed;                    /* set once a collective broke the streams */
    char fail_msg[RDX_ERRMSG_MAX];          /* why: returned by every later call */
    long watch_ms;                          /* last rdx_bootstrap_watch poll */
    struct pollfd *watch_pfd;               /* its poll set (allocated on first use) */
    int *fds;                               /* root: fds[r], r >= 1; others: fds[0] */
    char (*peer_addr)[RDX_NET_ADDRSTR_MAX]; /* "ip:port" of fds[i], for messages */
    char (*stalls)[RDX_BS_STALL_MAX + 1];   /* root: each rank's STALL report, "" if none */
};

/* ---- wire format ------------------------------------------------------------------------ */

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void rdx_bs_hdr_encode(uint16_t type, uint32_t len, uint8_t out[RDX_BS_HDR_LEN])
{
    put_be32(out, RDX_BS_MAGIC);
    put_be16(out + 4, RDX_BS_VERSION);
    put_be16(out + 6, type);
    put_be32(out + 8, len);
}

rdx_bs_wire_status_t rdx_bs_hdr_decode(const uint8_t *buf, size_t n, rdx_bs_hdr_t *hdr)
{
    /* Fields are checked as soon as they are complete, so a reader can drop garbage after
     * its first four bytes instead of waiting for a whole header that may never come. */
    memset(hdr, 0, sizeof(*hdr));
    if (buf == NULL)
        return RDX_BS_WIRE_TRUNCATED;
    if (n >= 4) {
        hdr->magic = get_be32(buf);
        if (hdr->magic != RDX_BS_MAGIC)
            return RDX_BS_WIRE_BAD_MAGIC;
    }
    if (n >= 6) {
        hdr->version = get_be16(buf + 4);
        if (hdr->version != RDX_BS_VERSION)
            return RDX_BS_WIRE_BAD_VERSION;
    }
    if (n >= 8) {
        hdr->type = get_be16(buf + 6);
        if (hdr->type < RDX_BS_MSG_HELLO || hdr->type > RDX_BS_MSG_LAST)
            return RDX_BS_WIRE_BAD_TYPE;
    }
    if (n < RDX_BS_HDR_LEN)
        return RDX_BS_WIRE_TRUNCATED;
    hdr->len = get_be32(buf + 8);
    if (hdr->len > RDX_BOOTSTRAP_MAX_PAYLOAD)
        return RDX_BS_WIRE_TOO_LONG;
    return RDX_BS_WIRE_OK;
}

const char *rdx_bs_wire_strerror(rdx_bs_wire_status_t st)
{
    switch (st) {
    case RDX_BS_WIRE_OK: return "ok";
    case RDX_BS_WIRE_TRUNCATED: return "truncated header";
    case RDX_BS_WIRE_BAD_MAGIC: return "bad magic (not an rdx bootstrap peer)";
    case RDX_BS_WIRE_BAD_VERSION: return "unsupported bootstrap protocol version";
    case RDX_BS_WIRE_BAD_TYPE: return "unknown message type";
    case RDX_BS_WIRE_TOO_LONG: return "payload length exceeds the maximum";
    }
    return "unknown wire error";
}

const char *rdx_bs_msg_name(unsigned type)
{
    static const char *const names[] = {"?",     "hello", "auth",      "auth-ok", "reject",
                                        "ready", "abort", "allgather", "bcast",   "barrier",
                                        "stall"};
    return type >= 1 && type <= RDX_BS_MSG_LAST ? names[type] : "unknown";
}

void rdx_bs_auth_encode(const rdx_bs_auth_t *auth, uint8_t out[RDX_BS_AUTH_LEN])
{
    put_be32(out, auth->rank);
    put_be32(out + 4, auth->size);
    memcpy(out + 8, auth->nonce, RDX_BS_NONCE_LEN);
    memcpy(out + 8 + RDX_BS_NONCE_LEN, auth->mac, RDX_BS_MAC_LEN);
}

void rdx_bs_auth_decode(const uint8_t in[RDX_BS_AUTH_LEN], rdx_bs_auth_t *auth)
{
    auth->rank = get_be32(in);
    auth->size = get_be32(in + 4);
    memcpy(auth->nonce, in + 8, RDX_BS_NONCE_LEN);
    memcpy(auth->mac, in + 8 + RDX_BS_NONCE_LEN, RDX_BS_MAC_LEN);
}

void rdx_bs_auth_mac(const void *key, size_t key_len, const uint8_t server_nonce[RDX_BS_NONCE_LEN],
                     const uint8_t client_nonce[RDX_BS_NONCE_LEN], uint32_t rank, uint32_t size,
                     uint8_t mac[RDX_BS_MAC_LEN])
{
    uint8_t ints[8];
    rdx_hmac_sha256_t ctx;
    put_be32(ints, rank);
    put_be32(ints + 4, size);
    rdx_hmac_sha256_init(&ctx, key, key_len);
    rdx_hmac_sha256_update(&ctx, server_nonce, RDX_BS_NONCE_LEN);
    rdx_hmac_sha256_update(&ctx, client_nonce, RDX_BS_NONCE_LEN);
    rdx_hmac_sha256_update(&ctx, ints, sizeof(ints));
    rdx_hmac_sha256_final(&ctx, mac);
}

void rdx_bs_root_mac(const void *key, size_t key_len, const uint8_t client_nonce[RDX_BS_NONCE_LEN],
                     const uint8_t server_nonce[RDX_BS_NONCE_LEN], uint8_t mac[RDX_BS_MAC_LEN])
{
    rdx_hmac_sha256_t ctx;
    rdx_hmac_sha256_init(&ctx, key, key_len);
    rdx_hmac_sha256_update(&ctx, client_nonce, RDX_BS_NONCE_LEN);
    rdx_hmac_sha256_update(&ctx, server_nonce, RDX_BS_NONCE_LEN);
    rdx_hmac_sha256_final(&ctx, mac);
}

rdx_bs_auth_verdict_t rdx_bs_auth_verify(const rdx_bs_auth_t *auth, const void *key,
                                         size_t key_len,
                                         const uint8_t server_nonce[RDX_BS_NONCE_LEN], int size,
                                         const uint8_t *rank_taken)
{
    uint8_t want[RDX_BS_MAC_LEN];
    rdx_bs_auth_mac(key, key_len, server_nonce, auth->nonce, auth->rank, auth->size, want);
    if (!rdx_memeq_consttime(want, auth->mac, RDX_BS_MAC_LEN))
        return RDX_BS_AUTH_BAD_MAC;
    if (auth->size != (uint32_t)size)
        return RDX_BS_AUTH_BAD_SIZE;
    if (auth->rank == 0 || auth->rank >= (uint32_t)size)
        return RDX_BS_AUTH_BAD_RANK;
    if (rank_taken[auth->rank])
        return RDX_BS_AUTH_DUP_RANK;
    return RDX_BS_AUTH_ACCEPT;
}

const char *rdx_bs_auth_verdict_str(rdx_bs_auth_verdict_t v)
{
    switch (v) {
    case RDX_BS_AUTH_ACCEPT: return "accepted";
    case RDX_BS_AUTH_BAD_MAC: return "authentication failed (wrong job key?)";
    case RDX_BS_AUTH_BAD_SIZE: return "job size differs from rank 0's";
    case RDX_BS_AUTH_BAD_RANK: return "rank out of range";
    case RDX_BS_AUTH_DUP_RANK: return "rank already connected";
    }
    return "unknown verdict";
}

/* ---- small helpers ---------------------------------------------------------------------- */

static int bs_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static long bs_left_ms(long deadline)
{
    long left = deadline - rdx_net_now_ms();
    return left > 0 ? left : 0;
}

static int bs_poll_ms(long ms) { return ms > INT_MAX ? INT_MAX : (int)ms; }

/* The root decides when a wait has failed and tells the others why (ABORT), so non-roots
 * wait a little longer than it: their own timeout is only the fallback for a dead root. */
static long bs_deadline_for(const rdx_bootstrap_t *bs, long start, long timeout_ms)
{
    long grace = timeout_ms / 4 < BS_GRACE_MAX_MS ? timeout_ms / 4 : BS_GRACE_MAX_MS;
    return start + timeout_ms + (bs->rank == 0 ? 0 : grace);
}

/* Appends ", r" for every rank with missing[r] set; "none" if there is none. */
static void bs_rank_list(const uint8_t *missing, int size, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (int r = 0; r < size && used + 16 < cap; r++) {
        if (!missing[r])
            continue;
        int n = snprintf(out + used, cap - used, "%s%d", used ? ", " : "", r);
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(out, cap, "none");
    else if (used + 16 >= cap)
        snprintf(out + used, cap - used, ", ...");
}

/* Blocking-style I/O on one nonblocking socket, bounded by a deadline (client side). */
typedef enum { BS_IO_OK = 0, BS_IO_EOF, BS_IO_TIMEOUT, BS_IO_ERR } bs_io_t;

static bs_io_t bs_wait_fd(int fd, short events, long deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        long left = bs_left_ms(deadline);
        if (left == 0)
            return BS_IO_TIMEOUT;
        int rc = poll(&pfd, 1, bs_poll_ms(left));
        if (rc > 0)
            return BS_IO_OK;
        if (rc == 0)
            return BS_IO_TIMEOUT;
        if (errno != EINTR)
            return BS_IO_ERR;
    }
}

static bs_io_t bs_send_exact(int fd, const void *buf, size_t len, long deadline)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return BS_IO_ERR;
        bs_io_t io = bs_wait_fd(fd, POLLOUT, deadline);
        if (io != BS_IO_OK)
            return io;
    }
    return BS_IO_OK;
}

static bs_io_t bs_recv_exact(int fd, void *buf, size_t len, long deadline)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = recv(fd, p, len, MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            len -= (size_t)r;
            continue;
        }
        if (r == 0)
            return BS_IO_EOF;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return BS_IO_ERR;
        bs_io_t io = bs_wait_fd(fd, POLLIN, deadline);
        if (io != BS_IO_OK)
            return io;
    }
    return BS_IO_OK;
}

static const char *bs_io_str(bs_io_t io)
{
    switch (io) {
    case BS_IO_OK: return "ok";
    case BS_IO_EOF: return "connection closed by peer";
    case BS_IO_TIMEOUT: return "timed out";
    case BS_IO_ERR: return strerror(errno);
    }
    return "?";
}

/* Copies text received from the wire, keeping only printable ASCII. */
static void bs_clean_text(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (in[i] >= 0x20 && in[i] < 0x7f) ? (char)in[i] : '?';
    out[n] = '\0';
}

/* ---- collective engine: one poll loop over many framed transfers ------------------------ */

typedef struct bs_xfer {
    int peer;
    int fd;
    /* outgoing message: out_hdr then out_len bytes of out_buf */
    int out_active;
    uint8_t out_hdr[RDX_BS_HDR_LEN];
    const uint8_t *out_buf;
    size_t out_len;
    size_t out_done;
    /* incoming message of type in_type and exactly in_len bytes, into in_buf */
    int in_active;
    uint16_t in_type;
    uint8_t *in_buf;
    size_t in_len;
    uint8_t in_hdr[RDX_BS_HDR_LEN];
    size_t in_done;
    size_t in_payload; /* known once the header is in */
    int in_abort;      /* the root sent ABORT instead: payload goes to abort_buf */
    uint8_t abort_buf[RDX_BS_ABORT_MAX];
} bs_xfer_t;

static void bs_xfer_set_send(bs_xfer_t *x, uint16_t type, const void *buf, size_t len)
{
    x->out_active = 1;
    rdx_bs_hdr_encode(type, (uint32_t)len, x->out_hdr);
    x->out_buf = buf;
    x->out_len = len;
    x->out_done = 0;
}

static void bs_xfer_set_recv(bs_xfer_t *x, uint16_t type, void *buf, size_t len)
{
    x->in_active = 1;
    x->in_type = type;
    x->in_buf = buf;
    x->in_len = len;
    x->in_done = 0;
    x->in_abort = 0;
}

static rdx_status_t bs_peer_lost(const rdx_bootstrap_t *bs, const char *op, const bs_xfer_t *x,
                                 const char *what, int err)
{
    const char *addr = bs->peer_addr[bs->rank == 0 ? x->peer : 0];
    if (err != 0)
        return rdx_err(RDX_ERR_PEER_LOST, "rank %d: bootstrap %s: peer %d (%s): %s: %s",
                       bs->rank, op, x->peer, addr, what, strerror(err));
    return rdx_err(RDX_ERR_PEER_LOST, "rank %d: bootstrap %s: peer %d (%s): %s", bs->rank, op,
                   x->peer, addr, what);
}

static rdx_status_t bs_xfer_send(const rdx_bootstrap_t *bs, const char *op, bs_xfer_t *x)
{
    size_t total = RDX_BS_HDR_LEN + x->out_len;
    while (x->out_done < total) {
        struct iovec iov[2];
        int n = 0;
        size_t pay_off = 0;
        if (x->out_done < RDX_BS_HDR_LEN) {
            iov[n].iov_base = x->out_hdr + x->out_done;
            iov[n++].iov_len = RDX_BS_HDR_LEN - x->out_done;
        } else {
            pay_off = x->out_done - RDX_BS_HDR_LEN;
        }
        if (x->out_len > pay_off) {
            iov[n].iov_base = (void *)(x->out_buf + pay_off);
            iov[n++].iov_len = x->out_len - pay_off;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(x->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return RDX_SUCCESS;
            return bs_peer_lost(bs, op, x, "send", errno);
        }
        x->out_done += (size_t)w;
    }
    x->out_active = 0;
    return RDX_SUCCESS;
}

static rdx_status_t bs_xfer_check_hdr(const rdx_bootstrap_t *bs, const char *op, bs_xfer_t *x)
{
    rdx_bs_hdr_t h;
    rdx_bs_wire_status_t ws = rdx_bs_hdr_decode(x->in_hdr, RDX_BS_HDR_LEN, &h);
    if (ws != RDX_BS_WIRE_OK)
        return rdx_err(RDX_ERR_BOOTSTRAP, "rank %d: bootstrap %s: peer %d: protocol error: %s",
                       bs->rank, op, x->peer, rdx_bs_wire_strerror(ws));
    /* The root sends ABORT when it gives up; a non-root sends it to the root when its own
     * communicator failed (the root relays it): either side may receive one. */
    if (h.type == RDX_BS_MSG_ABORT) {
        if (h.len < 4 || h.len > RDX_BS_ABORT_MAX)
            return rdx_err(RDX_ERR_BOOTSTRAP,
                           "rank %d: bootstrap %s: peer %d: protocol error: abort of %u bytes",
                           bs->rank, op, x->peer, h.len);
        x->in_abort = 1;
        x->in_payload = h.len;
        return RDX_SUCCESS;
    }
    if (h.type != x->in_type)
        return rdx_err(RDX_ERR_MISMATCH,
                       "rank %d: bootstrap %s: peer %d: received %s, expected %s "
                       "(ranks called different bootstrap collectives)",
                       bs->rank, op, x->peer, rdx_bs_msg_name(h.type),
                       rdx_bs_msg_name(x->in_type));
    if (h.len != x->in_len)
        return rdx_err(RDX_ERR_MISMATCH,
                       "rank %d: bootstrap %s: peer %d: received %u bytes, expected %zu "
                       "(ranks passed different lengths)",
                       bs->rank, op, x->peer, h.len, x->in_len);
    x->in_payload = h.len;
    return RDX_SUCCESS;
}

static rdx_status_t bs_xfer_abort_status(const rdx_bootstrap_t *bs, const char *op,
                                         const bs_xfer_t *x)
{
    char reason[RDX_BS_REASON_MAX + 1];
    uint32_t st = get_be32(x->abort_buf);
    bs_clean_text(x->abort_buf + 4, x->in_payload - 4, reason, sizeof(reason));
    if (st <= RDX_SUCCESS || st > RDX_ERR_INTERNAL)
        st = RDX_ERR_BOOTSTRAP;
    if (x->peer == 0)
        return rdx_err((rdx_status_t)st, "rank %d: bootstrap %s: peer 0: root aborted: %s",
                       bs->rank, op, reason);
    return rdx_err((rdx_status_t)st, "rank %d: bootstrap %s: peer %d aborted: %s", bs->rank, op,
                   x->peer, reason);
}

static rdx_status_t bs_xfer_recv(const rdx_bootstrap_t *bs, const char *op, bs_xfer_t *x)
{
    for (;;) {
        uint8_t *dst;
        size_t want;
        if (x->in_done < RDX_BS_HDR_LEN) {
            dst = x->in_hdr + x->in_done;
            want = RDX_BS_HDR_LEN - x->in_done;
        } else {
            size_t off = x->in_done - RDX_BS_HDR_LEN;
            if (off >= x->in_payload)
                break;
            dst = (x->in_abort ? x->abort_buf : x->in_buf) + off;
            want = x->in_payload - off;
        }
        /* Exactly what this message still needs: the next message stays in the kernel. */
        ssize_t r = recv(x->fd, dst, want, MSG_DONTWAIT);
        if (r == 0)
            return bs_peer_lost(bs, op, x, "connection closed", 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return RDX_SUCCESS;
            return bs_peer_lost(bs, op, x, "recv", errno);
        }
        x->in_done += (size_t)r;
        if (x->in_done == RDX_BS_HDR_LEN) {
            rdx_status_t st = bs_xfer_check_hdr(bs, op, x);
            if (st != RDX_SUCCESS)
                return st;
        }
    }
    x->in_active = 0;
    if (x->in_abort)
        return bs_xfer_abort_status(bs, op, x);
    return RDX_SUCCESS;
}

static rdx_status_t bs_xfers_timeout(const rdx_bootstrap_t *bs, const char *op,
                                     const bs_xfer_t *xs, int n, long waited)
{
    char list[256];
    uint8_t *missing = calloc((size_t)bs->size, 1);
    int receiving = 0;
    if (missing == NULL)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: bootstrap %s: timed out", bs->rank, op);
    for (int i = 0; i < n; i++)
        if (xs[i].in_active) {
            missing[xs[i].peer] = 1;
            receiving = 1;
        }
    if (!receiving)
        for (int i = 0; i < n; i++)
            missing[xs[i].peer] |= (uint8_t)xs[i].out_active;
    bs_rank_list(missing, bs->size, list, sizeof(list));
    free(missing);
    if (bs->rank != 0)
        return rdx_err(RDX_ERR_TIMEOUT,
                       "rank %d: bootstrap %s: peer 0: timed out after %ld ms waiting for "
                       "rank 0 (a rank has not called %s yet?)",
                       bs->rank, op, waited, op);
    if (receiving)
        return rdx_err(RDX_ERR_TIMEOUT,
                       "rank 0: bootstrap %s: timed out after %ld ms: ranks not arrived: %s",
                       op, waited, list);
    return rdx_err(RDX_ERR_TIMEOUT,
                   "rank 0: bootstrap %s: timed out after %ld ms sending to ranks %s", op,
                   waited, list);
}

static rdx_status_t bs_xfers_step(const rdx_bootstrap_t *bs, const char *op, bs_xfer_t *x,
                                  short revents)
{
    rdx_status_t st = RDX_SUCCESS;
    if (revents & POLLNVAL)
        return rdx_err(RDX_ERR_INTERNAL, "rank %d: bootstrap %s: peer %d: socket closed locally",
                       bs->rank, op, x->peer);
    /* Receive first: an ABORT waiting in the socket explains a failing send. */
    if (x->in_active && (revents & (POLLIN | POLLERR | POLLHUP)))
        st = bs_xfer_recv(bs, op, x);
    if (st == RDX_SUCCESS && x->out_active && (revents & (POLLOUT | POLLERR | POLLHUP)))
        st = bs_xfer_send(bs, op, x);
    return st;
}

static rdx_status_t bs_xfers_run(const rdx_bootstrap_t *bs, const char *op, bs_xfer_t *xs,
                                 int n, long deadline)
{
    long start = rdx_net_now_ms();
    rdx_status_t st = RDX_SUCCESS;
    struct pollfd *pfd = calloc((size_t)n + 1, sizeof(*pfd));
    int *which = calloc((size_t)n + 1, sizeof(*which));

    if (pfd == NULL || which == NULL) {
        st = rdx_err(RDX_ERR_NO_MEMORY, "rank %d: bootstrap %s: out of memory", bs->rank, op);
        goto out_free;
    }
    /* Most sends fit in the socket buffer: try them before the first poll. */
    for (int i = 0; i < n && st == RDX_SUCCESS; i++)
        if (xs[i].out_active)
            st = bs_xfer_send(bs, op, &xs[i]);
    while (st == RDX_SUCCESS) {
        int live = 0;
        for (int i = 0; i < n; i++) {
            short ev = (short)((xs[i].out_active ? POLLOUT : 0) | (xs[i].in_active ? POLLIN : 0));
            if (ev == 0)
                continue;
            pfd[live] = (struct pollfd){.fd = xs[i].fd, .events = ev};
            which[live++] = i;
        }
        if (live == 0)
            break;
        long left = bs_left_ms(deadline);
        if (left == 0) {
            st = bs_xfers_timeout(bs, op, xs, n, rdx_net_now_ms() - start);
            break;
        }
        int rc = poll(pfd, (nfds_t)live, bs_poll_ms(left));
        if (rc < 0 && errno != EINTR) {
            st = rdx_err(RDX_ERR_INTERNAL, "rank %d: bootstrap %s: poll: %s", bs->rank, op,
                         strerror(errno));
            break;
        }
        for (int k = 0; k < live && rc > 0 && st == RDX_SUCCESS; k++)
            if (pfd[k].revents)
                st = bs_xfers_step(bs, op, &xs[which[k]], pfd[k].revents);
    }
out_free:
    free(which);
    free(pfd);
    return st;
}

/* Best effort, never blocking: a peer whose buffer is full learns by the close. */
static void bs_send_abort(int fd, rdx_status_t st, const char *why)
{
    uint8_t msg[RDX_BS_HDR_LEN + RDX_BS_ABORT_MAX];
    size_t wlen = strlen(why);
    if (wlen > RDX_BS_REASON_MAX)
        wlen = RDX_BS_REASON_MAX;
    rdx_bs_hdr_encode(RDX_BS_MSG_ABORT, (uint32_t)(4 + wlen), msg);
    put_be32(msg + RDX_BS_HDR_LEN, (uint32_t)st);
    memcpy(msg + RDX_BS_HDR_LEN + 4, why, wlen);
    ssize_t w = send(fd, msg, RDX_BS_HDR_LEN + 4 + wlen, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
}

/* After a failure the streams are out of step: keep `mine` as this rank's verdict, tell the
 * others `tell` (ABORT; the root relays what a non-root sends it) and stop using them. */
static void bs_fail_with(rdx_bootstrap_t *bs, rdx_status_t st, const char *mine,
                         const char *tell)
{
    if (bs->failed != RDX_SUCCESS)
        return;
    bs->failed = st;
    snprintf(bs->fail_msg, sizeof(bs->fail_msg), "%s", mine);
    for (int r = bs->rank == 0 ? 1 : 0; r < (bs->rank == 0 ? bs->size : 1); r++) {
        if (bs->fds[r] < 0)
            continue;
        bs_send_abort(bs->fds[r], st, tell);
        /* Root: write side only, so a non-root's ABORT still reaches the watchdog. */
        shutdown(bs->fds[r], bs->rank == 0 ? SHUT_WR : SHUT_RDWR);
    }
}

static void bs_fail(rdx_bootstrap_t *bs, rdx_status_t st)
{
    bs_fail_with(bs, st, rdx_err_last(), rdx_err_last());
}

/* ---- root: listening -------------------------------------------------------------------- */

static int bs_bind_listen(const struct sockaddr *sa, socklen_t len, int *out_fd)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    rdx_net_set_nodelay(fd);
    if (bind(fd, sa, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int err = errno;
        close(fd);
        return err;
    }
    *out_fd = fd;
    return 0;
}

/* Binds to the first address of host that is local. Returns 0, an errno, or -1 if the name
 * does not resolve (gai message in gai_msg). */
static int bs_listen_on_host(const char *host, int port, int *out_fd, const char **gai_msg)
{
    char portstr[16];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    int err = EADDRNOTAVAIL;

    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        *gai_msg = gai_strerror(rc);
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        err = bs_bind_listen(ai->ai_addr, ai->ai_addrlen, out_fd);
        if (err == 0 || err != EADDRNOTAVAIL)
            break;
    }
    freeaddrinfo(res);
    return err;
}

static rdx_status_t bs_root_listen(const rdx_bootstrap_params_t *p, const char *host, int port,
                                   int *out_fd)
{
    const char *ifname = p->ifname ? p->ifname : "";
    int wildcard = rdx_net_host_is_wildcard(host);
    int fd = -1;
    int err = 0;

    if (!wildcard || ifname[0] == '\0') {
        const char *gai_msg = NULL;
        if (wildcard) {
            struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                                        .sin6_addr = IN6ADDR_ANY_INIT};
            struct sockaddr_in any4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                       .sin_addr.s_addr = htonl(INADDR_ANY)};
            err = strcmp(host, "::") == 0
                      ? bs_bind_listen((struct sockaddr *)&any6, sizeof(any6), &fd)
                      : bs_bind_listen((struct sockaddr *)&any4, sizeof(any4), &fd);
        } else {
            err = bs_listen_on_host(host, port, &fd, &gai_msg);
        }
        if (err == -1)
            return rdx_err(RDX_ERR_BOOTSTRAP,
                           "rank 0: bootstrap listen on %s:%d: %s does not resolve: %s", host,
                           port, host, gai_msg);
        if (err == EADDRNOTAVAIL && ifname[0] == '\0')
            return rdx_err(RDX_ERR_BOOTSTRAP,
                           "rank 0: bootstrap listen on %s:%d: %s is not an address of this "
                           "machine (set RDX_ADDR to one of its addresses, or RDX_IFNAME)",
                           host, port, host);
        if (err != 0 && err != EADDRNOTAVAIL)
            return rdx_err(RDX_ERR_BOOTSTRAP, "rank 0: bootstrap listen on %s:%d: %s%s", host,
                           port, strerror(err),
                           err == EADDRINUSE ? " (another job on this port?)" : "");
    }
    if (fd < 0) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (rdx_net_ifaddr(ifname, AF_UNSPEC, port, &ss, &len) != 0)
            return rdx_err(RDX_ERR_BOOTSTRAP,
                           "rank 0: bootstrap listen on %s:%d: interface %s has no IP address "
                           "(or does not exist)",
                           host, port, ifname);
        err = bs_bind_listen((struct sockaddr *)&ss, len, &fd);
        if (err != 0)
            return rdx_err(RDX_ERR_BOOTSTRAP,
                           "rank 0: bootstrap listen on %s:%d (interface %s): %s", host, port,
                           ifname, strerror(err));
    }
    *out_fd = fd;
    return RDX_SUCCESS;
}

static void bs_root_log_listen(const rdx_bootstrap_params_t *p, const char *host, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char where[RDX_NET_ADDRSTR_MAX];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    rdx_net_sockaddr_str((struct sockaddr *)&ss, where);
    rdx_log_info("bootstrap: rank 0 listening on %s for %d ranks", where, p->size);
    /* Debian maps the host name to 127.0.1.1: a classic way to strand remote ranks. */
    if (rdx_net_sockaddr_is_loopback((struct sockaddr *)&ss) &&
        !rdx_net_host_is_loopback_name(host) && (p->ifname == NULL || p->ifname[0] == '\0'))
        rdx_log_warn("bootstrap: %s resolves to loopback address %s: ranks on other machines "
                     "cannot reach rank 0 (set RDX_ADDR to a routable address or RDX_IFNAME)",
                     host, where);
}

/* ---- root: handshakes ------------------------------------------------------------------- */

typedef enum { PEND_FREE = 0, PEND_SEND_HELLO, PEND_RECV_AUTH, PEND_SEND_REPLY } bs_pend_state_t;

typedef struct bs_pending {
    int fd;
    bs_pend_state_t state;
    long deadline;
    int rank;      /* reserved once AUTH verified, else -1 */
    int rejecting; /* out holds REJECT: close once sent */
    char addr[RDX_NET_ADDRSTR_MAX];
    uint8_t server_nonce[RDX_BS_NONCE_LEN];
    uint8_t out[RDX_BS_HDR_LEN + RDX_BS_REASON_MAX];
    size_t out_len;
    size_t out_done;
    uint8_t in[RDX_BS_HDR_LEN + RDX_BS_AUTH_LEN];
    size_t in_done;
} bs_pending_t;

typedef struct bs_root {
    rdx_bootstrap_t *bs;
    const char *key;
    size_t key_len;
    int listen_fd;
    uint8_t *taken; /* rank reserved (handshake finishing) or connected */
    int connected;
    int refused;
    char last_refusal[RDX_NET_ADDRSTR_MAX + 2 * RDX_BS_REASON_MAX];
    bs_pending_t pend[BS_PENDING_MAX];
} bs_root_t;

static void bs_pend_drop(bs_root_t *rt, bs_pending_t *pc, const char *why)
{
    rdx_log_warn("bootstrap: dropping connection from %s: %s", pc->addr, why);
    rt->refused++;
    snprintf(rt->last_refusal, sizeof(rt->last_refusal), "%s: %s", pc->addr, why);
    if (pc->rank >= 0)
        rt->taken[pc->rank] = 0;
    close(pc->fd);
    pc->fd = -1;
    pc->state = PEND_FREE;
}

static void bs_pend_install(bs_root_t *rt, bs_pending_t *pc)
{
    rdx_bootstrap_t *bs = rt->bs;
    bs->fds[pc->rank] = pc->fd;
    memcpy(bs->peer_addr[pc->rank], pc->addr, RDX_NET_ADDRSTR_MAX);
    rt->connected++;
    rdx_log_debug("bootstrap: rank %d connected from %s (%d of %d)", pc->rank, pc->addr,
                  rt->connected, bs->size - 1);
    pc->fd = -1;
    pc->state = PEND_FREE;
}

/* Sends what is left of pc->out; advances the state once all of it is out. */
static void bs_pend_send(bs_root_t *rt, bs_pending_t *pc)
{
    while (pc->out_done < pc->out_len) {
        ssize_t w = send(pc->fd, pc->out + pc->out_done, pc->out_len - pc->out_done,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (w < 0) {
            char why[128];
            snprintf(why, sizeof(why), "send: %s", strerror(errno));
            bs_pend_drop(rt, pc, why);
            return;
        }
        pc->out_done += (size_t)w;
    }
    if (pc->state == PEND_SEND_HELLO) {
        pc->state = PEND_RECV_AUTH;
    } else if (pc->rejecting) {
        close(pc->fd);
        pc->fd = -1;
        pc->state = PEND_FREE;
    } else {
        bs_pend_install(rt, pc);
    }
}

static void bs_pend_reply(bs_root_t *rt, bs_pending_t *pc, const rdx_bs_auth_t *auth)
{
    rdx_bs_auth_verdict_t v = rdx_bs_auth_verify(auth, rt->key, rt->key_len, pc->server_nonce,
                                                 rt->bs->size, rt->taken);
    pc->out_done = 0;
    pc->state = PEND_SEND_REPLY;
    if (v == RDX_BS_AUTH_ACCEPT) {
        pc->rank = (int)auth->rank;
        rt->taken[pc->rank] = 1;
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH_OK, RDX_BS_MAC_LEN, pc->out);
        rdx_bs_root_mac(rt->key, rt->key_len, auth->nonce, pc->server_nonce,
                        pc->out + RDX_BS_HDR_LEN);
        pc->out_len = RDX_BS_HDR_LEN + RDX_BS_MAC_LEN;
    } else {
        char why[RDX_BS_REASON_MAX];
        int n = snprintf(why, sizeof(why), "%s (claimed rank %u of %u; job size is %d)",
                         rdx_bs_auth_verdict_str(v), auth->rank, auth->size, rt->bs->size);
        size_t len = n < (int)sizeof(why) ? (size_t)n : sizeof(why) - 1;
        rdx_log_warn("bootstrap: refusing connection from %s: %s", pc->addr, why);
        rt->refused++;
        snprintf(rt->last_refusal, sizeof(rt->last_refusal), "%s: %s", pc->addr,
                 rdx_bs_auth_verdict_str(v));
        pc->rejecting = 1;
        rdx_bs_hdr_encode(RDX_BS_MSG_REJECT, (uint32_t)len, pc->out);
        memcpy(pc->out + RDX_BS_HDR_LEN, why, len);
        pc->out_len = RDX_BS_HDR_LEN + len;
    }
    bs_pend_send(rt, pc);
}

/* Validates the header as soon as its bytes are in, so garbage is dropped at once. */
static int bs_pend_check_hdr(bs_root_t *rt, bs_pending_t *pc)
{
    rdx_bs_hdr_t h;
    char why[160];
    size_t have = pc->in_done < RDX_BS_HDR_LEN ? pc->in_done : RDX_BS_HDR_LEN;
    rdx_bs_wire_status_t ws = rdx_bs_hdr_decode(pc->in, have, &h);
    if (ws == RDX_BS_WIRE_TRUNCATED)
        return 0;
    if (ws == RDX_BS_WIRE_TOO_LONG) {
        snprintf(why, sizeof(why), "length %u exceeds the maximum %u", h.len,
                 RDX_BOOTSTRAP_MAX_PAYLOAD);
    } else if (ws != RDX_BS_WIRE_OK) {
        snprintf(why, sizeof(why), "%s", rdx_bs_wire_strerror(ws));
    } else if (h.type != RDX_BS_MSG_AUTH || h.len != RDX_BS_AUTH_LEN) {
        snprintf(why, sizeof(why), "unexpected %s message of %u bytes during the handshake",
                 rdx_bs_msg_name(h.type), h.len);
    } else {
        return 0;
    }
    bs_pend_drop(rt, pc, why);
    return -1;
}

static void bs_pend_recv(bs_root_t *rt, bs_pending_t *pc)
{
    const size_t total = RDX_BS_HDR_LEN + RDX_BS_AUTH_LEN;
    while (pc->in_done < total) {
        /* Never past the header until it is validated: a huge length reads nothing more. */
        size_t want = pc->in_done < RDX_BS_HDR_LEN ? RDX_BS_HDR_LEN - pc->in_done
                                                   : total - pc->in_done;
        ssize_t r = recv(pc->fd, pc->in + pc->in_done, want, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            char why[128];
            if (r == 0)
                snprintf(why, sizeof(why), "connection closed after %zu of %zu handshake bytes",
                         pc->in_done, total);
            else
                snprintf(why, sizeof(why), "recv: %s", strerror(errno));
            bs_pend_drop(rt, pc, why);
            return;
        }
        pc->in_done += (size_t)r;
        if (pc->in_done <= RDX_BS_HDR_LEN && bs_pend_check_hdr(rt, pc) != 0)
            return;
    }
    rdx_bs_auth_t auth;
    rdx_bs_auth_decode(pc->in + RDX_BS_HDR_LEN, &auth);
    bs_pend_reply(rt, pc, &auth);
}

static bs_pending_t *bs_pend_slot(bs_root_t *rt)
{
    bs_pending_t *oldest = &rt->pend[0];
    for (int i = 0; i < BS_PENDING_MAX; i++) {
        if (rt->pend[i].state == PEND_FREE)
            return &rt->pend[i];
        if (rt->pend[i].deadline < oldest->deadline)
            oldest = &rt->pend[i];
    }
    /* Full of handshakes: a flood of strangers must not lock genuine ranks out. */
    bs_pend_drop(rt, oldest, "too many connections in handshake: dropping the oldest");
    return oldest;
}

static void bs_pend_start(bs_root_t *rt, int fd)
{
    bs_pending_t *pc = bs_pend_slot(rt);
    memset(pc, 0, sizeof(*pc));
    pc->fd = fd;
    pc->rank = -1;
    pc->deadline = rdx_net_now_ms() + RDX_BS_HANDSHAKE_MS;
    rdx_net_peer_str(fd, pc->addr);
    rdx_net_set_nodelay(fd);
    if (bs_random(pc->server_nonce, RDX_BS_NONCE_LEN) != 0) {
        bs_pend_drop(rt, pc, "getrandom failed");
        return;
    }
    rdx_bs_hdr_encode(RDX_BS_MSG_HELLO, RDX_BS_NONCE_LEN, pc->out);
    memcpy(pc->out + RDX_BS_HDR_LEN, pc->server_nonce, RDX_BS_NONCE_LEN);
    pc->out_len = RDX_BS_HDR_LEN + RDX_BS_NONCE_LEN;
    pc->state = PEND_SEND_HELLO;
    rdx_log_debug("bootstrap: connection from %s", pc->addr);
    bs_pend_send(rt, pc);
}

static rdx_status_t bs_root_accept(bs_root_t *rt)
{
    for (;;) {
        int fd = accept4(rt->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            bs_pend_start(rt, fd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return RDX_SUCCESS;
        if (errno == EMFILE || errno == ENFILE)
            return rdx_err(RDX_ERR_BOOTSTRAP,
                           "rank 0: bootstrap rendezvous: accept: %s (rank 0 needs one "
                           "descriptor per rank: raise ulimit -n)",
                           strerror(errno));
        if (errno == ENOBUFS || errno == ENOMEM)
            return rdx_err(RDX_ERR_NO_MEMORY, "rank 0: bootstrap rendezvous: accept: %s",
                           strerror(errno));
        /* ECONNABORTED, EINTR, EPERM (firewall), protocol errors: that one connection only. */
        if (errno != EINTR && errno != ECONNABORTED)
            rdx_log_warn("bootstrap: accept: %s", strerror(errno));
        if (errno != EINTR)
            return RDX_SUCCESS;
    }
}

/* An admitted rank must stay silent until READY: data or a close means it is gone. */
static void bs_root_check_rank(bs_root_t *rt, int r)
{
    rdx_bootstrap_t *bs = rt->bs;
    uint8_t byte;
    ssize_t n = recv(bs->fds[r], &byte, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    rdx_log_warn("bootstrap: rank %d (%s) %s before the rendezvous completed: waiting for it "
                 "to connect again",
                 r, bs->peer_addr[r], n > 0 ? "sent unexpected data" : "disconnected");
    close(bs->fds[r]);
    bs->fds[r] = -1;
    rt->taken[r] = 0;
    rt->connected--;
}

typedef enum { BS_POLL_LISTEN, BS_POLL_PEND, BS_POLL_RANK } bs_poll_kind_t;

/* One poll round of the rendezvous loop. */
static rdx_status_t bs_root_poll_once(bs_root_t *rt, struct pollfd *pfd, int *tag, long deadline)
{
    rdx_bootstrap_t *bs = rt->bs;
    int n = 0;
    long wake = deadline;

    pfd[n] = (struct pollfd){.fd = rt->listen_fd, .events = POLLIN};
    tag[n++] = BS_POLL_LISTEN;
    for (int i = 0; i < BS_PENDING_MAX; i++) {
        bs_pending_t *pc = &rt->pend[i];
        if (pc->state == PEND_FREE)
            continue;
        pfd[n] = (struct pollfd){.fd = pc->fd,
                                 .events = pc->state == PEND_RECV_AUTH ? POLLIN : POLLOUT};
        tag[n++] = BS_POLL_PEND + 4 * i;
        if (pc->deadline < wake)
            wake = pc->deadline;
    }
    for (int r = 1; r < bs->size; r++) {
        if (bs->fds[r] < 0)
            continue;
        pfd[n] = (struct pollfd){.fd = bs->fds[r], .events = POLLIN};
        tag[n++] = BS_POLL_RANK + 4 * r;
    }
    int rc = poll(pfd, (nfds_t)n, bs_poll_ms(bs_left_ms(wake)));
    if (rc < 0 && errno != EINTR)
        return rdx_err(RDX_ERR_INTERNAL, "rank 0: bootstrap rendezvous: poll: %s",
                       strerror(errno));
    for (int k = 0; k < n && rc > 0; k++) {
        if (pfd[k].revents == 0)
            continue;
        int kind = tag[k] % 4, idx = tag[k] / 4;
        if (kind == BS_POLL_LISTEN) {
            RDX_CHECK(bs_root_accept(rt));
        } else if (kind == BS_POLL_RANK) {
            bs_root_check_rank(rt, idx);
        } else if (rt->pend[idx].fd == pfd[k].fd) { /* the slot may have been recycled */
            bs_pending_t *pc = &rt->pend[idx];
            if (pc->state == PEND_RECV_AUTH)
                bs_pend_recv(rt, pc);
            else if (pc->state != PEND_FREE)
                bs_pend_send(rt, pc);
        }
    }
    long now = rdx_net_now_ms();
    for (int i = 0; i < BS_PENDING_MAX; i++) {
        bs_pending_t *pc = &rt->pend[i];
        if (pc->state != PEND_FREE && now >= pc->deadline) {
            char why[128];
            snprintf(why, sizeof(why), "no complete handshake within %d ms (%zu bytes received)",
                     RDX_BS_HANDSHAKE_MS, pc->in_done);
            bs_pend_drop(rt, pc, why);
        }
    }
    return RDX_SUCCESS;
}

static rdx_status_t bs_root_timeout(bs_root_t *rt, const char *addr, long waited)
{
    rdx_bootstrap_t *bs = rt->bs;
    char list[256];
    uint8_t *missing = calloc((size_t)bs->size, 1);
    if (missing == NULL)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank 0: bootstrap rendezvous: timed out");
    for (int r = 1; r < bs->size; r++)
        missing[r] = bs->fds[r] < 0;
    bs_rank_list(missing, bs->size, list, sizeof(list));
    free(missing);
    if (rt->refused > 0)
        return rdx_err(RDX_ERR_TIMEOUT,
                       "rank 0: bootstrap rendezvous on %s: timed out after %ld ms: ranks not "
                       "connected: %s (%d connections refused, last %s)",
                       addr, waited, list, rt->refused, rt->last_refusal);
    return rdx_err(RDX_ERR_TIMEOUT,
                   "rank 0: bootstrap rendezvous on %s: timed out after %ld ms: ranks not "
                   "connected: %s",
                   addr, waited, list);
}

static rdx_status_t bs_root_send_ready(rdx_bootstrap_t *bs)
{
    bs_xfer_t *xs = calloc((size_t)bs->size, sizeof(*xs));
    if (xs == NULL)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank 0: bootstrap rendezvous: out of memory");
    for (int r = 1; r < bs->size; r++) {
        xs[r - 1].peer = r;
        xs[r - 1].fd = bs->fds[r];
        bs_xfer_set_send(&xs[r - 1], RDX_BS_MSG_READY, NULL, 0);
    }
    rdx_status_t st = bs_xfers_run(bs, "rendezvous", xs, bs->size - 1,
                                   rdx_net_now_ms() + bs->timeout_ms);
    free(xs);
    return st;
}

static rdx_status_t bs_root_rendezvous(rdx_bootstrap_t *bs, const rdx_bootstrap_params_t *p,
                                       const char *host, int port, long deadline)
{
    bs_root_t *rt = calloc(1, sizeof(*rt));
    struct pollfd *pfd = NULL;
    int *tag = NULL;
    long start = rdx_net_now_ms();
    rdx_status_t st;

    if (rt == NULL)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank 0: bootstrap rendezvous: out of memory");
    rt->bs = bs;
    rt->key = p->job_key ? p->job_key : "";
    rt->key_len = strlen(rt->key);
    rt->listen_fd = -1;
    for (int i = 0; i < BS_PENDING_MAX; i++)
        rt->pend[i].fd = -1;
    size_t slots = 1 + BS_PENDING_MAX + (size_t)bs->size;
    rt->taken = calloc((size_t)bs->size, 1);
    pfd = calloc(slots, sizeof(*pfd));
    tag = calloc(slots, sizeof(*tag));
    if (rt->taken == NULL || pfd == NULL || tag == NULL) {
        st = rdx_err(RDX_ERR_NO_MEMORY, "rank 0: bootstrap rendezvous: out of memory");
        goto out_free;
    }
    st = bs_root_listen(p, host, port, &rt->listen_fd);
    if (st != RDX_SUCCESS)
        goto out_free;
    bs_root_log_listen(p, host, rt->listen_fd);

    while (st == RDX_SUCCESS && rt->connected < bs->size - 1) {
        if (bs_left_ms(deadline) == 0) {
            st = bs_root_timeout(rt, p->addr, rdx_net_now_ms() - start);
            break;
        }
        st = bs_root_poll_once(rt, pfd, tag, deadline);
    }
    if (st == RDX_SUCCESS)
        st = bs_root_send_ready(bs);
    if (st != RDX_SUCCESS)
        bs_fail(bs, st);
    else
        rdx_log_info("bootstrap: all %d ranks connected in %ld ms", bs->size,
                     rdx_net_now_ms() - start);

    for (int i = 0; i < BS_PENDING_MAX; i++)
        if (rt->pend[i].state != PEND_FREE)
            close(rt->pend[i].fd); /* strangers still talking: the job no longer listens */
    close(rt->listen_fd);
out_free:
    free(tag);
    free(pfd);
    free(rt->taken);
    free(rt);
    return st;
}

/* ---- clients ---------------------------------------------------------------------------- */

/* One connection attempt to every address host resolves to. 0 and *out_fd, or an errno
 * (-1: name resolution failed, message in *gai_msg). */
static int bs_client_try_connect(const char *host, int port, long deadline, int *out_fd,
                                 const char **gai_msg)
{
    char portstr[16];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    int err = ECONNREFUSED;

    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        *gai_msg = gai_strerror(rc);
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        rdx_net_set_nodelay(fd);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            err = 0;
        } else if (errno != EINPROGRESS) {
            err = errno;
        } else {
            long limit = rdx_net_now_ms() + BS_CONNECT_ATTEMPT_MS;
            bs_io_t io = bs_wait_fd(fd, POLLOUT, limit < deadline ? limit : deadline);
            socklen_t len = sizeof(err);
            if (io == BS_IO_TIMEOUT)
                err = ETIMEDOUT;
            else if (io == BS_IO_ERR)
                err = errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
        }
        if (err == 0) {
            *out_fd = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

typedef struct bs_client {
    rdx_bootstrap_t *bs;
    const char *host;
    int port;
    const char *key;
    size_t key_len;
    long start;
    long deadline;
} bs_client_t;

/* Every client-side message names peer 0: the rendezvous is rank 0's, and "which peer" is
 * the first question a user asks when a job will not start. */
static rdx_status_t bs_client_fail(const bs_client_t *c, rdx_status_t st, const char *what)
{
    return rdx_err(st, "rank %d: bootstrap connect to peer 0 (rendezvous at %s:%d): %s",
                   c->bs->rank, c->host, c->port, what);
}

/* Status for a failed exchange with rank 0 mid-handshake. After its hello, rank 0 either
 * answers or sends REJECT; a bare close means its process died or its init failed. */
static rdx_status_t bs_client_io_status(bs_io_t io)
{
    bool gone = io == BS_IO_EOF || (io == BS_IO_ERR && (errno == ECONNRESET || errno == EPIPE));
    return io == BS_IO_TIMEOUT ? RDX_ERR_TIMEOUT : gone ? RDX_ERR_PEER_LOST : RDX_ERR_BOOTSTRAP;
}

/* Fails the handshake at `stage` after a receive or send from rank 0 returned io. */
static rdx_status_t bs_client_io_fail(const bs_client_t *c, const char *stage, bs_io_t io)
{
    rdx_status_t st = bs_client_io_status(io); /* before snprintf can touch errno */
    char why[200];
    snprintf(why, sizeof(why), "%s: %s", stage, bs_io_str(io));
    return bs_client_fail(c, st, why);
}

/* Receives one header that must be one of the two given types, with len <= max_len. */
static rdx_status_t bs_client_recv_hdr(const bs_client_t *c, int fd, const char *stage,
                                       uint16_t type_a, uint16_t type_b, uint32_t max_len,
                                       rdx_bs_hdr_t *h)
{
    uint8_t raw[RDX_BS_HDR_LEN];
    char why[200];
    bs_io_t io = bs_recv_exact(fd, raw, sizeof(raw), c->deadline);
    if (io != BS_IO_OK)
        return bs_client_io_fail(c, stage, io);
    rdx_bs_wire_status_t ws = rdx_bs_hdr_decode(raw, sizeof(raw), h);
    if (ws == RDX_BS_WIRE_OK && h->type != type_a && h->type != type_b)
        snprintf(why, sizeof(why), "%s: unexpected %s message", stage, rdx_bs_msg_name(h->type));
    else if (ws == RDX_BS_WIRE_OK && h->len > max_len)
        snprintf(why, sizeof(why), "%s: %s message of %u bytes", stage,
                 rdx_bs_msg_name(h->type), h->len);
    else if (ws != RDX_BS_WIRE_OK)
        snprintf(why, sizeof(why), "%s: protocol error: %s (is this an rdx rank 0?)", stage,
                 rdx_bs_wire_strerror(ws));
    else
        return RDX_SUCCESS;
    return bs_client_fail(c, RDX_ERR_BOOTSTRAP, why);
}

static rdx_status_t bs_client_recv_body(const bs_client_t *c, int fd, const char *stage,
                                        void *buf, size_t len)
{
    bs_io_t io = bs_recv_exact(fd, buf, len, c->deadline);
    if (io == BS_IO_OK)
        return RDX_SUCCESS;
    return bs_client_io_fail(c, stage, io);
}

/* Waits for the root's HELLO. *retry is set if the root closed before saying anything:
 * an overloaded root sheds connections that way, and trying again is right. */
static rdx_status_t bs_client_hello(const bs_client_t *c, int fd, uint8_t nonce[RDX_BS_NONCE_LEN],
                                    int *retry)
{
    uint8_t first;
    *retry = 0;
    bs_io_t io = BS_IO_OK;
    for (;;) {
        ssize_t r = recv(fd, &first, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r > 0)
            break;
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            *retry = 1;
            return RDX_ERR_BOOTSTRAP;
        }
        io = bs_wait_fd(fd, POLLIN, c->deadline);
        if (io != BS_IO_OK) {
            char why[160];
            snprintf(why, sizeof(why), "waiting for rank 0's hello: %s", bs_io_str(io));
            return bs_client_fail(c, io == BS_IO_TIMEOUT ? RDX_ERR_TIMEOUT : RDX_ERR_BOOTSTRAP,
                                  why);
        }
    }
    rdx_bs_hdr_t h;
    RDX_CHECK(bs_client_recv_hdr(c, fd, "hello", RDX_BS_MSG_HELLO, RDX_BS_MSG_HELLO,
                                 RDX_BS_NONCE_LEN, &h));
    if (h.len != RDX_BS_NONCE_LEN)
        return bs_client_fail(c, RDX_ERR_BOOTSTRAP, "hello: wrong nonce length");
    return bs_client_recv_body(c, fd, "hello", nonce, RDX_BS_NONCE_LEN);
}

static rdx_status_t bs_client_auth(const bs_client_t *c, int fd,
                                   const uint8_t server_nonce[RDX_BS_NONCE_LEN])
{
    rdx_bs_auth_t auth = {.rank = (uint32_t)c->bs->rank, .size = (uint32_t)c->bs->size};
    uint8_t msg[RDX_BS_HDR_LEN + RDX_BS_AUTH_LEN];
    char why[RDX_BS_REASON_MAX + 64];

    if (bs_random(auth.nonce, RDX_BS_NONCE_LEN) != 0)
        return bs_client_fail(c, RDX_ERR_INTERNAL, "getrandom failed");
    rdx_bs_auth_mac(c->key, c->key_len, server_nonce, auth.nonce, auth.rank, auth.size, auth.mac);
    rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, RDX_BS_AUTH_LEN, msg);
    rdx_bs_auth_encode(&auth, msg + RDX_BS_HDR_LEN);
    bs_io_t io = bs_send_exact(fd, msg, sizeof(msg), c->deadline);
    if (io != BS_IO_OK)
        return bs_client_io_fail(c, "sending authentication", io);

    rdx_bs_hdr_t h;
    uint8_t body[RDX_BS_REASON_MAX];
    RDX_CHECK(bs_client_recv_hdr(c, fd, "authentication", RDX_BS_MSG_AUTH_OK, RDX_BS_MSG_REJECT,
                                 RDX_BS_REASON_MAX, &h));
    RDX_CHECK(bs_client_recv_body(c, fd, "authentication", body, h.len));
    if (h.type == RDX_BS_MSG_REJECT) {
        char reason[RDX_BS_REASON_MAX + 1];
        bs_clean_text(body, h.len, reason, sizeof(reason));
        snprintf(why, sizeof(why), "rank 0 refused this rank: %s", reason);
        return bs_client_fail(c, RDX_ERR_BOOTSTRAP, why);
    }
    uint8_t want[RDX_BS_MAC_LEN];
    rdx_bs_root_mac(c->key, c->key_len, auth.nonce, server_nonce, want);
    if (h.len != RDX_BS_MAC_LEN || !rdx_memeq_consttime(want, body, RDX_BS_MAC_LEN))
        return bs_client_fail(c, RDX_ERR_BOOTSTRAP,
                              "the listener failed to prove it knows the job key (another "
                              "job's rank 0? check RDX_JOB_KEY)");
    return RDX_SUCCESS;
}

/* Admitted: wait until every rank is (READY) or the root gives up (ABORT). */
static rdx_status_t bs_client_wait_ready(const bs_client_t *c, int fd)
{
    rdx_bootstrap_t *bs = c->bs;
    bs_xfer_t x = {.peer = 0, .fd = fd};
    bs_xfer_set_recv(&x, RDX_BS_MSG_READY, NULL, 0);
    rdx_status_t st = bs_xfers_run(bs, "rendezvous", &x, 1,
                                   bs_deadline_for(bs, c->start, c->deadline - c->start));
    if (st == RDX_ERR_TIMEOUT && !x.in_abort) /* our own deadline, not the root's verdict */
        return rdx_err(RDX_ERR_TIMEOUT,
                       "rank %d: bootstrap rendezvous: peer 0: timed out after %ld ms waiting "
                       "for the other ranks to connect",
                       bs->rank, rdx_net_now_ms() - c->start);
    return st;
}

static rdx_status_t bs_client_rendezvous(rdx_bootstrap_t *bs, const rdx_bootstrap_params_t *p,
                                         const char *host, int port, long deadline)
{
    bs_client_t c = {.bs = bs, .host = host, .port = port,
                     .key = p->job_key ? p->job_key : "", .start = rdx_net_now_ms(),
                     .deadline = deadline};
    long backoff = BS_BACKOFF_MIN_MS;
    int attempts = 0;
    char cause[RDX_NET_HOST_MAX + 128] = "no attempt";
    c.key_len = strlen(c.key);

    for (;;) {
        int fd = -1, retry = 0;
        const char *gai_msg = NULL;
        uint8_t server_nonce[RDX_BS_NONCE_LEN];
        attempts++;
        int err = bs_client_try_connect(host, port, deadline, &fd, &gai_msg);
        if (err == 0) {
            rdx_status_t st = bs_client_hello(&c, fd, server_nonce, &retry);
            if (st == RDX_SUCCESS)
                st = bs_client_auth(&c, fd, server_nonce);
            if (st == RDX_SUCCESS) {
                bs->fds[0] = fd;
                rdx_net_peer_str(fd, bs->peer_addr[0]);
                break;
            }
            close(fd);
            if (!retry)
                return st;
            snprintf(cause, sizeof(cause), "rank 0 closed the connection before its hello");
        } else if (err == -1) {
            snprintf(cause, sizeof(cause), "cannot resolve %s: %s", host, gai_msg);
        } else {
            snprintf(cause, sizeof(cause), "%s", strerror(err));
        }
        long left = bs_left_ms(deadline);
        if (left > 0) {
            rdx_log_trace("bootstrap: connect to %s:%d: %s; retrying in %ld ms", host, port,
                          cause, backoff);
            poll(NULL, 0, bs_poll_ms(backoff < left ? backoff : left));
            backoff = backoff * 2 > BS_BACKOFF_MAX_MS ? BS_BACKOFF_MAX_MS : backoff * 2;
        }
        /* Checked after the sleep too, so the cause reported is a real attempt's. */
        if (bs_left_ms(deadline) == 0)
            return rdx_err(RDX_ERR_BOOTSTRAP,
                           "rank %d: bootstrap connect to peer 0 (rendezvous at %s:%d): %s "
                           "after %d attempts in %ld ms",
                           bs->rank, host, port, cause, attempts, rdx_net_now_ms() - c.start);
    }
    rdx_log_debug("bootstrap: rank %d authenticated to rank 0 at %s after %d attempts", bs->rank,
                  bs->peer_addr[0], attempts);
    rdx_status_t st = bs_client_wait_ready(&c, bs->fds[0]);
    if (st != RDX_SUCCESS)
        bs_fail(bs, st);
    return st;
}

/* ---- public API ------------------------------------------------------------------------- */

static rdx_status_t bs_check_params(const rdx_bootstrap_params_t *p, rdx_bootstrap_t **out)
{
    if (p == NULL || out == NULL)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank ?: bootstrap create: NULL argument");
    if (p->size < 1 || p->rank < 0 || p->rank >= p->size)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: bootstrap create: rank %d of size %d",
                       p->rank, p->rank, p->size);
    if (p->size > 1 && p->addr == NULL)
        return rdx_err(RDX_ERR_CONFIG, "rank %d: bootstrap create: no rendezvous address",
                       p->rank);
    return RDX_SUCCESS;
}

/* A process that dies closes its sockets, but a host that dies (power, kernel panic, cable)
 * sends nothing: keepalive probes make its connection fail within about
 * BS_KEEPALIVE_IDLE_S + BS_KEEPALIVE_CNT x BS_KEEPALIVE_INTVL_S seconds, which the watchdog
 * then reports as a lost peer. Best effort: a failing setsockopt leaves the default. */
#define BS_KEEPALIVE_IDLE_S 2
#define BS_KEEPALIVE_INTVL_S 1
#define BS_KEEPALIVE_CNT 3

static void bs_keepalive(int fd)
{
    int on = 1, idle = BS_KEEPALIVE_IDLE_S, intvl = BS_KEEPALIVE_INTVL_S, cnt = BS_KEEPALIVE_CNT;
    unsigned user_ms = (BS_KEEPALIVE_IDLE_S + BS_KEEPALIVE_CNT * BS_KEEPALIVE_INTVL_S) * 1000u;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    /* ... and data a dead host never acknowledges fails as fast */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms));
}

rdx_status_t rdx_bootstrap_create(const rdx_bootstrap_params_t *p, rdx_bootstrap_t **out)
{
    char host[RDX_NET_HOST_MAX];
    int port = 0;
    rdx_status_t st = bs_check_params(p, out);
    if (st != RDX_SUCCESS)
        return st;

    rdx_bootstrap_t *bs = calloc(1, sizeof(*bs));
    if (bs == NULL)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: bootstrap create: out of memory", p->rank);
    bs->rank = p->rank;
    bs->size = p->size;
    bs->timeout_ms = p->timeout_ms > 0 ? p->timeout_ms : BS_DEFAULT_TIMEOUT_MS;
    bs->fds = malloc((size_t)p->size * sizeof(*bs->fds));
    bs->peer_addr = calloc((size_t)p->size, sizeof(*bs->peer_addr));
    if (bs->fds == NULL || bs->peer_addr == NULL) {
        st = rdx_err(RDX_ERR_NO_MEMORY, "rank %d: bootstrap create: out of memory", p->rank);
        goto err_free;
    }
    for (int i = 0; i < p->size; i++)
        bs->fds[i] = -1;
    if (p->size == 1)
        goto done; /* a job of one needs nobody: no sockets at all */

    if (rdx_net_split_hostport(p->addr, host, &port) != 0 || port == 0) {
        st = rdx_err(RDX_ERR_CONFIG,
                     "rank %d: bootstrap create: bad rendezvous address '%s' (want host:port "
                     "or [ipv6]:port, port 1..65535)",
                     p->rank, p->addr);
        goto err_free;
    }
    if (p->job_key == NULL || p->job_key[0] == '\0')
        rdx_log_debug("bootstrap: no job key: the handshake authenticates nothing");
    long connect_ms = p->connect_timeout_ms > 0 ? p->connect_timeout_ms : BS_DEFAULT_TIMEOUT_MS;
    long deadline = rdx_net_now_ms() + connect_ms;
    st = p->rank == 0 ? bs_root_rendezvous(bs, p, host, port, deadline)
                      : bs_client_rendezvous(bs, p, host, port, deadline);
    if (st != RDX_SUCCESS)
        goto err_free;
    for (int i = 0; i < p->size; i++)
        if (bs->fds[i] >= 0)
            bs_keepalive(bs->fds[i]);
done:
    *out = bs;
    return RDX_SUCCESS;
err_free:
    rdx_bootstrap_destroy(bs);
    return st;
}

void rdx_bootstrap_destroy(rdx_bootstrap_t *bs)
{
    if (bs == NULL)
        return;
    if (bs->fds != NULL)
        for (int i = 0; i < bs->size; i++)
            if (bs->fds[i] >= 0)
                close(bs->fds[i]);
    free(bs->fds);
    free(bs->peer_addr);
    free(bs->watch_pfd);
    free(bs->stalls);
    free(bs);
}

int rdx_bootstrap_rank(const rdx_bootstrap_t *bs) { return bs->rank; }
int rdx_bootstrap_size(const rdx_bootstrap_t *bs) { return bs->size; }

static rdx_status_t bs_check_usable(const rdx_bootstrap_t *bs, const char *op)
{
    if (bs->failed != RDX_SUCCESS)
        return rdx_err(bs->failed, "rank %d: bootstrap %s: unusable after an earlier failure: %s",
                       bs->rank, op, bs->fail_msg);
    return RDX_SUCCESS;
}

/* Gather to the root, root sends the assembled block back: allgather and barrier. */
static rdx_status_t bs_gather_all(rdx_bootstrap_t *bs, uint16_t type, const char *op,
                                  const void *mine, size_t len, void *all)
{
    int n = bs->size;
    size_t total = (size_t)n * len;
    rdx_status_t st;

    if (bs->rank != 0) {
        bs_xfer_t x = {.peer = 0, .fd = bs->fds[0]};
        bs_xfer_set_send(&x, type, mine, len);
        bs_xfer_set_recv(&x, type, all, total);
        st = bs_xfers_run(bs, op, &x, 1, bs_deadline_for(bs, rdx_net_now_ms(), bs->timeout_ms));
        if (st != RDX_SUCCESS)
            bs_fail(bs, st);
        return st;
    }
    bs_xfer_t *xs = calloc((size_t)n, sizeof(*xs));
    if (xs == NULL)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank 0: bootstrap %s: out of memory", op);
    memmove(all, mine, len);
    for (int r = 1; r < n; r++) {
        xs[r - 1].peer = r;
        xs[r - 1].fd = bs->fds[r];
        bs_xfer_set_recv(&xs[r - 1], type, (uint8_t *)all + (size_t)r * len, len);
    }
    long deadline = bs_deadline_for(bs, rdx_net_now_ms(), bs->timeout_ms);
    st = bs_xfers_run(bs, op, xs, n - 1, deadline);
    for (int r = 1; r < n && st == RDX_SUCCESS; r++)
        bs_xfer_set_send(&xs[r - 1], type, all, total);
    if (st == RDX_SUCCESS)
        st = bs_xfers_run(bs, op, xs, n - 1, deadline);
    if (st != RDX_SUCCESS)
        bs_fail(bs, st);
    free(xs);
    return st;
}

rdx_status_t rdx_bootstrap_allgather(rdx_bootstrap_t *bs, const void *mine, size_t len, void *all)
{
    if (bs == NULL || (len > 0 && (mine == NULL || all == NULL)))
        return rdx_err(RDX_ERR_INVALID_ARG, "rank ?: bootstrap allgather: NULL argument");
    if (len > RDX_BOOTSTRAP_MAX_PAYLOAD / (size_t)bs->size)
        return rdx_err(RDX_ERR_INVALID_ARG,
                       "rank %d: bootstrap allgather: %zu bytes x %d ranks exceeds the %u-byte "
                       "bootstrap message limit",
                       bs->rank, len, bs->size, RDX_BOOTSTRAP_MAX_PAYLOAD);
    RDX_CHECK(bs_check_usable(bs, "allgather"));
    if (bs->size == 1) {
        memmove(all, mine, len);
        return RDX_SUCCESS;
    }
    return bs_gather_all(bs, RDX_BS_MSG_ALLGATHER, "allgather", mine, len, all);
}

rdx_status_t rdx_bootstrap_barrier(rdx_bootstrap_t *bs)
{
    if (bs == NULL)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank ?: bootstrap barrier: NULL argument");
    RDX_CHECK(bs_check_usable(bs, "barrier"));
    if (bs->size == 1)
        return RDX_SUCCESS;
    uint8_t mine = 1;
    uint8_t *all = malloc((size_t)bs->size);
    if (all == NULL)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: bootstrap barrier: out of memory", bs->rank);
    rdx_status_t st = bs_gather_all(bs, RDX_BS_MSG_BARRIER, "barrier", &mine, 1, all);
    free(all);
    return st;
}

/* Root relays: from rank root (if not 0) to rank 0, then from rank 0 to all but root. */
static rdx_status_t bs_bcast_root(rdx_bootstrap_t *bs, void *buf, size_t len, int root)
{
    int n = bs->size;
    long deadline = bs_deadline_for(bs, rdx_net_now_ms(), bs->timeout_ms);
    rdx_status_t st = RDX_SUCCESS;
    bs_xfer_t *xs = calloc((size_t)n, sizeof(*xs));
    if (xs == NULL)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank 0: bootstrap bcast: out of memory");
    if (root != 0) {
        xs[0].peer = root;
        xs[0].fd = bs->fds[root];
        bs_xfer_set_recv(&xs[0], RDX_BS_MSG_BCAST, buf, len);
        st = bs_xfers_run(bs, "bcast", xs, 1, deadline);
    }
    int k = 0;
    for (int r = 1; r < n && st == RDX_SUCCESS; r++) {
        if (r == root)
            continue;
        xs[k] = (bs_xfer_t){.peer = r, .fd = bs->fds[r]};
        bs_xfer_set_send(&xs[k++], RDX_BS_MSG_BCAST, buf, len);
    }
    if (st == RDX_SUCCESS && k > 0)
        st = bs_xfers_run(bs, "bcast", xs, k, deadline);
    free(xs);
    return st;
}

rdx_status_t rdx_bootstrap_bcast(rdx_bootstrap_t *bs, void *buf, size_t len, int root)
{
    if (bs == NULL || (len > 0 && buf == NULL))
        return rdx_err(RDX_ERR_INVALID_ARG, "rank ?: bootstrap bcast: NULL argument");
    if (root < 0 || root >= bs->size)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: bootstrap bcast: root %d of size %d",
                       bs->rank, root, bs->size);
    if (len > RDX_BOOTSTRAP_MAX_PAYLOAD)
        return rdx_err(RDX_ERR_INVALID_ARG,
                       "rank %d: bootstrap bcast: %zu bytes exceeds the %u-byte limit", bs->rank,
                       len, RDX_BOOTSTRAP_MAX_PAYLOAD);
    RDX_CHECK(bs_check_usable(bs, "bcast"));
    if (bs->size == 1)
        return RDX_SUCCESS;

    rdx_status_t st;
    if (bs->rank == 0) {
        st = bs_bcast_root(bs, buf, len, root);
    } else {
        bs_xfer_t x = {.peer = 0, .fd = bs->fds[0]};
        if (bs->rank == root)
            bs_xfer_set_send(&x, RDX_BS_MSG_BCAST, buf, len);
        else
            bs_xfer_set_recv(&x, RDX_BS_MSG_BCAST, buf, len);
        st = bs_xfers_run(bs, "bcast", &x, 1,
                          bs_deadline_for(bs, rdx_net_now_ms(), bs->timeout_ms));
    }
    if (st != RDX_SUCCESS)
        bs_fail(bs, st);
    return st;
}

void rdx_bootstrap_set_timeout(rdx_bootstrap_t *bs, long timeout_ms)
{
    if (bs != NULL && timeout_ms > 0)
        bs->timeout_ms = timeout_ms;
}

/* ---- watchdog and abort ------------------------------------------------------------------
 *
 * The star doubles as a failure detector for every transport: the kernel closes the socket
 * of a process that dies, however it dies, so the root sees EOF from a dead rank and every
 * rank sees EOF from a dead root. Whoever notices first tells the rest by ABORT (a non-root
 * tells the root, the root relays to all), so a failure anywhere reaches every rank within
 * two watchdog periods of the root and the rank calling into rdx. The watchdog only peeks:
 * a legitimate message that arrives early (a BCAST from the root, a BARRIER from a rank
 * already in rdx_comm_destroy) stays in the socket for the collective that reads it. */

#define BS_WATCH_EVERY_MS 10L

typedef enum { BS_FRONT_NOTHING, BS_FRONT_ABORT, BS_FRONT_STALL, BS_FRONT_CLOSED } bs_front_t;

/* What the front of fd holds, without consuming it: an ABORT (or, at the root, a STALL)
 * complete in buf (*len bytes), a closed connection, or nothing for the watchdog (no data,
 * partial data or another message, from a peer that is still connected). */
static bs_front_t bs_front(int fd, bool root, short revents, uint8_t *buf, size_t cap,
                           size_t *len)
{
    int hup = (revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
    ssize_t n = recv(fd, buf, cap, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return BS_FRONT_CLOSED;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? BS_FRONT_NOTHING
                                                                         : BS_FRONT_CLOSED;
    rdx_bs_hdr_t h;
    bool whole = rdx_bs_hdr_decode(buf, (size_t)n, &h) == RDX_BS_WIRE_OK &&
                 (size_t)n >= RDX_BS_HDR_LEN + h.len;
    if (whole && h.type == RDX_BS_MSG_ABORT && h.len >= 4 && h.len <= RDX_BS_ABORT_MAX) {
        *len = RDX_BS_HDR_LEN + h.len;
        return BS_FRONT_ABORT;
    }
    if (whole && root && h.type == RDX_BS_MSG_STALL && h.len <= RDX_BS_STALL_MAX) {
        *len = RDX_BS_HDR_LEN + h.len;
        return BS_FRONT_STALL;
    }
    /* Data followed by a close: the sender is gone before anyone read its message. */
    return hup ? BS_FRONT_CLOSED : BS_FRONT_NOTHING;
}

/* Root: consumes the STALL at the front of peer's fd and keeps its text. */
static void bs_take_stall(rdx_bootstrap_t *bs, int peer, int fd, size_t len)
{
    uint8_t buf[RDX_BS_HDR_LEN + RDX_BS_STALL_MAX];
    ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
    if (bs->stalls == NULL)
        bs->stalls = calloc((size_t)bs->size, sizeof(*bs->stalls));
    if (n == (ssize_t)len && bs->stalls != NULL)
        bs_clean_text(buf + RDX_BS_HDR_LEN, len - RDX_BS_HDR_LEN, bs->stalls[peer],
                      sizeof(bs->stalls[peer]));
}

/* Consumes the ABORT at the front of fd: its status and reason text. */
static rdx_status_t bs_take_abort(int fd, size_t len, char *reason, size_t cap)
{
    uint8_t buf[RDX_BS_HDR_LEN + RDX_BS_ABORT_MAX];
    ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
    if (n != (ssize_t)len)
        return RDX_ERR_PEER_LOST;
    uint32_t st = get_be32(buf + RDX_BS_HDR_LEN);
    bs_clean_text(buf + RDX_BS_HDR_LEN + 4, len - RDX_BS_HDR_LEN - 4, reason, cap);
    return st > RDX_SUCCESS && st <= RDX_ERR_INTERNAL ? (rdx_status_t)st : RDX_ERR_PEER_LOST;
}

/* Peer `peer` (on fd) changed state: a relayed or direct ABORT, or a closed connection. */
static rdx_status_t bs_watch_event(rdx_bootstrap_t *bs, int peer, int fd, short revents)
{
    uint8_t buf[RDX_BS_HDR_LEN + RDX_BS_ABORT_MAX];
    char reason[RDX_BS_REASON_MAX + 1], mine[RDX_ERRMSG_MAX];
    size_t len = 0;
    rdx_status_t st;
    switch (bs_front(fd, bs->rank == 0, revents, buf, sizeof(buf), &len)) {
    case BS_FRONT_NOTHING:
        return RDX_SUCCESS;
    case BS_FRONT_STALL:
        bs_take_stall(bs, peer, fd, len);
        return RDX_SUCCESS;
    case BS_FRONT_ABORT:
        st = bs_take_abort(fd, len, reason, sizeof(reason));
        break;
    default:
        st = RDX_ERR_PEER_LOST;
        snprintf(reason, sizeof(reason), "rank %d: peer %d: bootstrap connection closed (the "
                 "process died, or left without rdx_comm_destroy)", bs->rank, peer);
        break;
    }
    /* The reason keeps its author's words ("rank R: ..."); relays pass it on verbatim. */
    /* (the relayed words may be cut: the author logged them whole) */
    snprintf(mine, sizeof(mine), "rank %d: bootstrap watchdog: %.440s", bs->rank, reason);
    bs_fail_with(bs, st, mine, reason);
    return rdx_err(st, "%s", mine);
}

rdx_status_t rdx_bootstrap_watch(rdx_bootstrap_t *bs)
{
    if (bs == NULL || bs->size == 1)
        return RDX_SUCCESS;
    if (bs->failed != RDX_SUCCESS)
        return rdx_err(bs->failed, "%s", bs->fail_msg);
    long now = rdx_net_now_ms();
    if (now - bs->watch_ms < BS_WATCH_EVERY_MS)
        return RDX_SUCCESS;
    bs->watch_ms = now;
    int n = bs->rank == 0 ? bs->size - 1 : 1;
    if (bs->watch_pfd == NULL && (bs->watch_pfd = calloc((size_t)n, sizeof(struct pollfd))) == NULL)
        return RDX_SUCCESS; /* no memory for the watch: the collectives' own deadlines remain */
    for (int i = 0; i < n; i++)
        bs->watch_pfd[i] = (struct pollfd){.fd = bs->fds[bs->rank == 0 ? i + 1 : 0],
                                           .events = POLLIN | POLLRDHUP};
    if (poll(bs->watch_pfd, (nfds_t)n, 0) <= 0)
        return RDX_SUCCESS;
    for (int i = 0; i < n; i++) {
        if (!bs->watch_pfd[i].revents)
            continue;
        rdx_status_t st = bs_watch_event(bs, bs->rank == 0 ? i + 1 : 0, bs->watch_pfd[i].fd,
                                         bs->watch_pfd[i].revents);
        if (st != RDX_SUCCESS)
            return st;
    }
    return RDX_SUCCESS;
}

rdx_status_t rdx_bootstrap_verdict(rdx_bootstrap_t *bs, long wait_ms)
{
    long end = rdx_net_now_ms() + wait_ms;
    for (;;) {
        if (bs != NULL)
            bs->watch_ms = 0; /* no rate limit here */
        rdx_status_t st = rdx_bootstrap_watch(bs);
        if (st != RDX_SUCCESS || bs == NULL || bs->size == 1 || rdx_net_now_ms() >= end)
            return st;
        poll(NULL, 0, 1);
    }
}

void rdx_bootstrap_report_stall(rdx_bootstrap_t *bs, const char *report)
{
    if (bs == NULL || bs->size == 1 || bs->rank == 0 || bs->failed != RDX_SUCCESS)
        return;
    uint8_t msg[RDX_BS_HDR_LEN + RDX_BS_STALL_MAX];
    size_t len = strlen(report);
    if (len > RDX_BS_STALL_MAX)
        len = RDX_BS_STALL_MAX;
    rdx_bs_hdr_encode(RDX_BS_MSG_STALL, (uint32_t)len, msg);
    memcpy(msg + RDX_BS_HDR_LEN, report, len);
    /* Best effort like ABORT: the root's socket buffer is empty but for this. */
    ssize_t w = send(bs->fds[0], msg, RDX_BS_HDR_LEN + len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
}

/* The bootstrap collective ("barrier", ...) whose message from rank r waits unread at the
 * root, or NULL: a rank that sent no STALL may be waiting there instead. */
static const char *bs_pending_collective(const rdx_bootstrap_t *bs, int r)
{
    uint8_t raw[RDX_BS_HDR_LEN];
    rdx_bs_hdr_t h;
    ssize_t n = recv(bs->fds[r], raw, sizeof(raw), MSG_PEEK | MSG_DONTWAIT);
    if (n != (ssize_t)sizeof(raw) || rdx_bs_hdr_decode(raw, sizeof(raw), &h) != RDX_BS_WIRE_OK)
        return NULL;
    bool coll = h.type == RDX_BS_MSG_BARRIER || h.type == RDX_BS_MSG_ALLGATHER ||
                h.type == RDX_BS_MSG_BCAST;
    return coll ? rdx_bs_msg_name(h.type) : NULL;
}

/* Fills reports/pending for ranks 1..size-1; returns how many ranks are accounted for. */
static int bs_stalls_in(const rdx_bootstrap_t *bs, const char **reports, const char **pending)
{
    int got = 0;
    for (int r = 1; r < bs->size; r++) {
        reports[r] = bs->stalls != NULL && bs->stalls[r][0] ? bs->stalls[r] : NULL;
        pending[r] = reports[r] || bs->fds[r] < 0 ? NULL : bs_pending_collective(bs, r);
        got += reports[r] != NULL || pending[r] != NULL;
    }
    return got;
}

rdx_status_t rdx_bootstrap_stall_reports(rdx_bootstrap_t *bs, long wait_ms,
                                         const char **reports, const char **pending)
{
    if (bs == NULL || bs->rank != 0)
        return rdx_err(RDX_ERR_INTERNAL, "bootstrap stall reports: not the root");
    long end = rdx_net_now_ms() + wait_ms;
    rdx_status_t st = RDX_SUCCESS;
    while (st == RDX_SUCCESS && bs_stalls_in(bs, reports, pending) < bs->size - 1 &&
           rdx_net_now_ms() < end) {
        bs->watch_ms = 0; /* no rate limit here */
        if ((st = rdx_bootstrap_watch(bs)) == RDX_SUCCESS)
            poll(NULL, 0, 1);
    }
    bs_stalls_in(bs, reports, pending);
    return st;
}

void rdx_bootstrap_abort(rdx_bootstrap_t *bs, rdx_status_t st, const char *reason)
{
    if (bs == NULL || bs->size == 1)
        return;
    bs_fail_with(bs, st, reason, reason);
}

rdx_status_t rdx_bootstrap_failed(const rdx_bootstrap_t *bs)
{
    if (bs == NULL || bs->failed == RDX_SUCCESS)
        return RDX_SUCCESS;
    return rdx_err(bs->failed, "%s", bs->fail_msg);
}
