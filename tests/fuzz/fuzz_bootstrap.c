/*
 * libFuzzer target: the bootstrap wire parser and the real framed-message state machines of
 * src/bootstrap.c, driven with arbitrary bytes through a socketpair.
 *
 * bootstrap.c is compiled into this file (#include) so its static state machines can be
 * driven one connection at a time, without a listener or a poll loop; getrandom is
 * replaced by a fixed pattern so the harness can compute the MACs a peer would send. (So a
 * change to those static functions or to struct rdx_bootstrap may need this file updated:
 * CI builds it in its fuzz stage.)
 *
 * Input: byte 0 picks the mode, bytes 1-2 are parameters, the rest is the peer's stream.
 *   0  pure: rdx_bs_hdr_decode/encode, rdx_bs_auth_decode/encode/verify against a model
 *   1  root: a pending connection at rank 0 (HELLO out, AUTH in, AUTH_OK/REJECT out)
 *   2  collective: one framed receive (bs_xfer_recv) of an expected type and length
 *   3  client: rank r's handshake (bs_client_hello, bs_client_auth) against a fuzzed root
 *   4  watchdog: rdx_bootstrap_watch on a connection whose peer sent the stream (an ABORT
 *      relayed or direct, anything else, a close)
 * Each mode computes the expected outcome from the bytes with an independent model of the
 * protocol (bootstrap_wire.h) and asserts the code agrees: status, bytes delivered, bytes
 * consumed from the socket (never past the message), reply sent. ASan sees every buffer
 * at its exact size, so a read or write past a bound is a crash.
 */
#include <sys/ioctl.h>
#include <sys/random.h>

ssize_t fuzz_getrandom(void *buf, size_t len, unsigned int flags);
#define getrandom fuzz_getrandom
#include "src/bootstrap.c"
#undef getrandom

#include "tests/fuzz/fuzz_common.h"

ssize_t fuzz_getrandom(void *buf, size_t len, unsigned int flags)
{
    (void)flags;
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(0x5a ^ (i * 7));
    return (ssize_t)len;
}

static const char fz_key[] = "fuzz-job-key";
#define FZ_KEY_LEN (sizeof(fz_key) - 1)
#define FZ_AUTH_MSG (RDX_BS_HDR_LEN + RDX_BS_AUTH_LEN)

/* ---- model of the header (written from bootstrap_wire.h, not from the decoder) ------- */

typedef enum { HM_OK, HM_PARTIAL, HM_BAD } hdr_model_t;

/* Whether the first n bytes (n may be < 12) can still start a valid header; *type, *len
 * when the whole header is there and valid. */
static hdr_model_t hdr_model(const uint8_t *b, size_t n, uint16_t *type, uint32_t *len)
{
    if (n >= 4 && fz_be32(b) != RDX_BS_MAGIC)
        return HM_BAD;
    if (n >= 6 && fz_be16(b + 4) != RDX_BS_VERSION)
        return HM_BAD;
    if (n >= 8 && (fz_be16(b + 6) < 1 || fz_be16(b + 6) > 10)) /* hello .. stall */
        return HM_BAD;
    if (n < RDX_BS_HDR_LEN)
        return HM_PARTIAL;
    if (fz_be32(b + 8) > RDX_BOOTSTRAP_MAX_PAYLOAD)
        return HM_BAD;
    *type = fz_be16(b + 6);
    *len = fz_be32(b + 8);
    return HM_OK;
}

/* ---- mode 0: pure functions ------------------------------------------------------------ */

static void fuzz_pure(uint8_t p1, uint8_t p2, const uint8_t *b, size_t n)
{
    rdx_bs_hdr_t h;
    uint16_t type = 0;
    uint32_t len = 0;
    rdx_bs_wire_status_t ws = rdx_bs_hdr_decode(b, n, &h);
    hdr_model_t m = hdr_model(b, n, &type, &len);
    FZ_ASSERT((ws == RDX_BS_WIRE_OK) == (m == HM_OK));
    FZ_ASSERT((ws == RDX_BS_WIRE_TRUNCATED) == (m == HM_PARTIAL));
    FZ_ASSERT(rdx_bs_wire_strerror(ws) != NULL);
    if (ws == RDX_BS_WIRE_OK) {
        uint8_t again[RDX_BS_HDR_LEN];
        FZ_ASSERT(h.magic == RDX_BS_MAGIC && h.version == RDX_BS_VERSION);
        FZ_ASSERT(h.type == type && h.len == len);
        FZ_ASSERT(strcmp(rdx_bs_msg_name(h.type), "unknown") != 0);
        rdx_bs_hdr_encode(h.type, h.len, again); /* encode(decode(x)) == x */
        FZ_ASSERT(memcmp(again, b, RDX_BS_HDR_LEN) == 0);
    }
    FZ_ASSERT(rdx_bs_hdr_decode(NULL, n, &h) == RDX_BS_WIRE_TRUNCATED);

    /* decode(encode(type, len)) == (type, len) for every valid pair, and a clear error
     * for the invalid ones. */
    uint16_t t = (uint16_t)(p1 % 12);
    uint32_t l = n >= 4 ? fz_be32(b) : p2;
    uint8_t enc[RDX_BS_HDR_LEN];
    rdx_bs_hdr_encode(t, l, enc);
    ws = rdx_bs_hdr_decode(enc, sizeof(enc), &h);
    if (t < 1 || t > RDX_BS_MSG_LAST)
        FZ_ASSERT(ws == RDX_BS_WIRE_BAD_TYPE);
    else if (l > RDX_BOOTSTRAP_MAX_PAYLOAD)
        FZ_ASSERT(ws == RDX_BS_WIRE_TOO_LONG);
    else
        FZ_ASSERT(ws == RDX_BS_WIRE_OK && h.type == t && h.len == l);
    /* Every prefix of a valid header is "truncated", never an error. */
    for (size_t k = 0; k < RDX_BS_HDR_LEN && ws == RDX_BS_WIRE_OK; k++)
        FZ_ASSERT(rdx_bs_hdr_decode(enc, k, &h) == RDX_BS_WIRE_TRUNCATED);

    if (n < RDX_BS_AUTH_LEN)
        return;
    /* AUTH body: decode(encode) round trip, then the root's verdict against a model. */
    uint8_t body[RDX_BS_AUTH_LEN], server_nonce[RDX_BS_NONCE_LEN], re[RDX_BS_AUTH_LEN];
    memcpy(body, b, sizeof(body));
    for (int i = 0; i < RDX_BS_NONCE_LEN; i++)
        server_nonce[i] = (uint8_t)(p2 + i);
    int size = 1 + p1 % 9;
    uint8_t taken[9] = {0};
    for (int r = 0; r < size; r++)
        taken[r] = (uint8_t)((p2 >> (r % 8)) & 1);
    rdx_bs_auth_t a;
    if (p2 & 0x80) /* reach past the MAC check: the right proof for these fields */
        rdx_bs_auth_mac(fz_key, FZ_KEY_LEN, server_nonce, body + 8, fz_be32(body),
                        fz_be32(body + 4), body + 8 + RDX_BS_NONCE_LEN);
    rdx_bs_auth_decode(body, &a);
    FZ_ASSERT(a.rank == fz_be32(body) && a.size == fz_be32(body + 4));
    FZ_ASSERT(memcmp(a.nonce, body + 8, RDX_BS_NONCE_LEN) == 0);
    rdx_bs_auth_encode(&a, re);
    FZ_ASSERT(memcmp(re, body, sizeof(re)) == 0);

    uint8_t want[RDX_BS_MAC_LEN];
    rdx_bs_auth_mac(fz_key, FZ_KEY_LEN, server_nonce, a.nonce, a.rank, a.size, want);
    rdx_bs_auth_verdict_t expect;
    if (memcmp(want, a.mac, RDX_BS_MAC_LEN) != 0)
        expect = RDX_BS_AUTH_BAD_MAC;
    else if (a.size != (uint32_t)size)
        expect = RDX_BS_AUTH_BAD_SIZE;
    else if (a.rank == 0 || a.rank >= (uint32_t)size)
        expect = RDX_BS_AUTH_BAD_RANK;
    else if (taken[a.rank])
        expect = RDX_BS_AUTH_DUP_RANK;
    else
        expect = RDX_BS_AUTH_ACCEPT;
    rdx_bs_auth_verdict_t v =
        rdx_bs_auth_verify(&a, fz_key, FZ_KEY_LEN, server_nonce, size, taken);
    FZ_ASSERT(v == expect);
    FZ_ASSERT(rdx_bs_auth_verdict_str(v) != NULL);
}

/* ---- shared set-up of a fake bootstrap and a socketpair -------------------------------- */

typedef struct fz_bs {
    rdx_bootstrap_t bs;
    int sv[2]; /* sv[0]: the side under test; sv[1]: the fuzzed peer */
} fz_bs_t;

static void fz_bs_init(fz_bs_t *f, int rank, int size)
{
    memset(f, 0, sizeof(*f));
    f->bs.rank = rank;
    f->bs.size = size;
    f->bs.timeout_ms = 1000;
    f->bs.fds = malloc((size_t)size * sizeof(int));
    f->bs.peer_addr = calloc((size_t)size, sizeof(*f->bs.peer_addr));
    FZ_ASSERT(f->bs.fds && f->bs.peer_addr);
    for (int i = 0; i < size; i++)
        f->bs.fds[i] = -1;
    FZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, f->sv) == 0);
}

static void fz_bs_fini(fz_bs_t *f)
{
    for (int i = 0; i < f->bs.size; i++)
        if (f->bs.fds[i] >= 0 && f->bs.fds[i] != f->sv[0])
            close(f->bs.fds[i]);
    if (f->sv[0] >= 0)
        close(f->sv[0]);
    close(f->sv[1]);
    free(f->bs.fds);
    free(f->bs.peer_addr);
    free(f->bs.stalls);
}

/* The peer's whole stream goes into the socket at once (inputs are far below its buffer). */
static void fz_feed(int fd, const uint8_t *b, size_t n, int eof)
{
    if (n > 0)
        FZ_ASSERT(send(fd, b, n, MSG_NOSIGNAL) == (ssize_t)n);
    if (eof)
        shutdown(fd, SHUT_WR);
}

static size_t fz_unread(int fd)
{
    int left = 0;
    FZ_ASSERT(ioctl(fd, FIONREAD, &left) == 0);
    return (size_t)left;
}

/* The other end closed (a reset if it left bytes unread), nothing more to read. */
static int fz_closed(int fd)
{
    /* Waits (up to 1 s) for the close to show: twice in about 10 million runs (never when the
     * input was replayed alone) the peer of a socket the code had just closed still read
     * EAGAIN at once. A socket that stays open still fails after the second. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ready = poll(&p, 1, 1000);
    uint8_t byte;
    ssize_t r = recv(fd, &byte, 1, MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno == ECONNRESET))
        return 1;
    fprintf(stderr, "fz_closed: poll %d (revents %x), recv returned %zd (%s)\n", ready,
            (unsigned)p.revents, r, r < 0 ? strerror(errno) : "data");
    return 0;
}

/* Reads one whole framed message the code under test sent; asserts it is well formed. */
static void fz_read_msg(int fd, rdx_bs_hdr_t *h, uint8_t *body, size_t cap)
{
    uint8_t raw[RDX_BS_HDR_LEN];
    FZ_ASSERT(recv(fd, raw, sizeof(raw), MSG_DONTWAIT) == (ssize_t)sizeof(raw));
    FZ_ASSERT(rdx_bs_hdr_decode(raw, sizeof(raw), h) == RDX_BS_WIRE_OK);
    FZ_ASSERT(h->len <= cap);
    if (h->len > 0)
        FZ_ASSERT(recv(fd, body, h->len, MSG_DONTWAIT) == (ssize_t)h->len);
}

/* ---- mode 1: rank 0's pending connection ---------------------------------------------- */

static void fuzz_root(uint8_t p1, uint8_t p2, const uint8_t *in, size_t n)
{
    int size = 2 + p1 % 7;
    int fixmac = p2 & 1, eof = (p2 >> 1) & 1;
    fz_bs_t f;
    fz_bs_init(&f, 0, size);
    bs_root_t *rt = calloc(1, sizeof(*rt));
    FZ_ASSERT(rt != NULL);
    rt->bs = &f.bs;
    rt->key = fz_key;
    rt->key_len = FZ_KEY_LEN;
    rt->listen_fd = -1;
    rt->taken = calloc((size_t)size, 1);
    FZ_ASSERT(rt->taken != NULL);
    for (int i = 0; i < BS_PENDING_MAX; i++)
        rt->pend[i].fd = -1;
    for (int r = 1; r < size; r++) /* ranks already in (or reserved by another handshake) */
        rt->taken[r] = (uint8_t)((p2 >> (1 + r)) & 1);

    bs_pend_start(rt, f.sv[0]);
    bs_pending_t *pc = &rt->pend[0];
    FZ_ASSERT(pc->state == PEND_RECV_AUTH); /* the HELLO fits the socket buffer */
    rdx_bs_hdr_t h;
    uint8_t body[RDX_BS_REASON_MAX];
    fz_read_msg(f.sv[1], &h, body, sizeof(body));
    FZ_ASSERT(h.type == RDX_BS_MSG_HELLO && h.len == RDX_BS_NONCE_LEN);
    FZ_ASSERT(memcmp(body, pc->server_nonce, RDX_BS_NONCE_LEN) == 0);

    uint8_t *s = malloc(n ? n : 1);
    FZ_ASSERT(s != NULL);
    memcpy(s, in, n);
    if (fixmac && n >= FZ_AUTH_MSG)
        rdx_bs_auth_mac(fz_key, FZ_KEY_LEN, pc->server_nonce, s + RDX_BS_HDR_LEN + 8,
                        fz_be32(s + RDX_BS_HDR_LEN), fz_be32(s + RDX_BS_HDR_LEN + 4),
                        s + RDX_BS_HDR_LEN + 8 + RDX_BS_NONCE_LEN);
    fz_feed(f.sv[1], s, n, eof);
    for (int i = 0; i < 4 && pc->state != PEND_FREE; i++) {
        if (pc->state == PEND_RECV_AUTH)
            bs_pend_recv(rt, pc);
        else
            bs_pend_send(rt, pc);
    }

    /* The model: a header that can no longer be valid (bad magic, version or type range,
     * checked field by field) drops the connection at once; a complete valid header that
     * is not AUTH of its exact length too. */
    uint16_t type = 0;
    uint32_t len = 0;
    hdr_model_t m = hdr_model(s, n < RDX_BS_HDR_LEN ? n : RDX_BS_HDR_LEN, &type, &len);
    int bad = m == HM_BAD || (m == HM_OK && (type != RDX_BS_MSG_AUTH || len != RDX_BS_AUTH_LEN));
    int installed = -1;
    for (int r = 0; r < size; r++)
        if (f.bs.fds[r] >= 0)
            installed = r;

    if (!bad && n < FZ_AUTH_MSG && !eof) { /* still waiting for the rest */
        FZ_ASSERT(pc->state == PEND_RECV_AUTH && pc->in_done == n && installed < 0);
    } else if (bad || n < FZ_AUTH_MSG) { /* dropped without a word */
        FZ_ASSERT(pc->state == PEND_FREE && pc->fd == -1 && installed < 0);
        FZ_ASSERT(fz_closed(f.sv[1]));
        f.sv[0] = -1; /* closed by the root */
    } else {
        const uint8_t *a = s + RDX_BS_HDR_LEN;
        uint32_t rank = fz_be32(a), asize = fz_be32(a + 4);
        uint8_t mac[RDX_BS_MAC_LEN];
        rdx_bs_auth_mac(fz_key, FZ_KEY_LEN, pc->server_nonce, a + 8, rank, asize, mac);
        int accept = memcmp(mac, a + 8 + RDX_BS_NONCE_LEN, RDX_BS_MAC_LEN) == 0 &&
                     asize == (uint32_t)size && rank >= 1 && rank < (uint32_t)size &&
                     !((p2 >> (1 + rank)) & 1);
        FZ_ASSERT(pc->state == PEND_FREE);
        fz_read_msg(f.sv[1], &h, body, sizeof(body));
        if (accept) {
            FZ_ASSERT(installed == (int)rank && f.bs.fds[rank] == f.sv[0]);
            FZ_ASSERT(rt->connected == 1 && rt->taken[rank] == 1);
            FZ_ASSERT(h.type == RDX_BS_MSG_AUTH_OK && h.len == RDX_BS_MAC_LEN);
            rdx_bs_root_mac(fz_key, FZ_KEY_LEN, a + 8, pc->server_nonce, mac);
            FZ_ASSERT(memcmp(body, mac, RDX_BS_MAC_LEN) == 0);
            /* The root read the handshake and not one byte more. */
            FZ_ASSERT(fz_unread(f.sv[0]) == n - FZ_AUTH_MSG);
        } else {
            FZ_ASSERT(installed < 0 && rt->connected == 0 && rt->refused == 1);
            FZ_ASSERT(h.type == RDX_BS_MSG_REJECT && h.len > 0);
            FZ_ASSERT(fz_closed(f.sv[1])); /* then closed */
            f.sv[0] = -1;
        }
    }
    if (pc->state != PEND_FREE) /* still waiting: its fd is sv[0] */
        pc->state = PEND_FREE;
    if (installed >= 0)
        f.bs.fds[installed] = -1;
    free(s);
    free(rt->taken);
    free(rt);
    fz_bs_fini(&f);
}

/* ---- mode 2: one framed collective receive --------------------------------------------- */

static void fuzz_xfer(uint8_t p1, uint8_t p2, const uint8_t *s, size_t n)
{
    static const uint16_t types[4] = {RDX_BS_MSG_READY, RDX_BS_MSG_ALLGATHER, RDX_BS_MSG_BCAST,
                                      RDX_BS_MSG_BARRIER};
    int root = p1 & 1, size = 2 + (p1 >> 1) % 7;
    uint16_t in_type = types[p2 & 3];
    int eof = (p2 >> 2) & 1;
    size_t in_len = (size_t)(p2 >> 3) * 9; /* 0 .. 279 */
    if (n >= RDX_BS_HDR_LEN && (p2 & 0x80)) /* or the stream's own length field */
        in_len = fz_be32(s + 8) % 4096;
    fz_bs_t f;
    fz_bs_init(&f, root ? 0 : 1, size);
    uint8_t *buf = in_len ? malloc(in_len) : NULL; /* exact size: ASan guards the bound */
    FZ_ASSERT(in_len == 0 || buf != NULL);
    bs_xfer_t x = {.peer = root ? 1 : 0, .fd = f.sv[0]};
    bs_xfer_set_recv(&x, in_type, buf, in_len);
    fz_feed(f.sv[1], s, n, eof);
    rdx_err_clear();
    rdx_status_t st = RDX_SUCCESS;
    for (int i = 0; i < 4 && st == RDX_SUCCESS && x.in_active; i++)
        st = bs_xfer_recv(&f.bs, "fuzz", &x);

    uint16_t type = 0;
    uint32_t len = 0;
    hdr_model_t m = hdr_model(s, n < RDX_BS_HDR_LEN ? n : RDX_BS_HDR_LEN, &type, &len);
    if (n < RDX_BS_HDR_LEN) {
        /* The header is checked once complete: a short one waits, or the peer is gone. */
        FZ_ASSERT(st == (eof ? RDX_ERR_PEER_LOST : RDX_SUCCESS));
        FZ_ASSERT(eof || (x.in_active && x.in_done == n));
    } else if (m == HM_BAD) {
        FZ_ASSERT(st == RDX_ERR_BOOTSTRAP);
        FZ_ASSERT(fz_unread(f.sv[0]) == n - RDX_BS_HDR_LEN); /* nothing past the header */
    } else if (type == RDX_BS_MSG_ABORT) { /* either side may be told to give up */
        if (len < 4 || len > RDX_BS_ABORT_MAX) {
            FZ_ASSERT(st == RDX_ERR_BOOTSTRAP);
        } else if (n >= RDX_BS_HDR_LEN + len) {
            uint32_t code = fz_be32(s + RDX_BS_HDR_LEN);
            rdx_status_t want = code >= 1 && code <= RDX_ERR_INTERNAL ? (rdx_status_t)code
                                                                      : RDX_ERR_BOOTSTRAP;
            FZ_ASSERT(st == want && !x.in_active && x.in_abort);
            FZ_ASSERT(strstr(rdx_err_last(), "aborted") != NULL); /* says why */
            FZ_ASSERT(fz_unread(f.sv[0]) == n - RDX_BS_HDR_LEN - len);
        } else {
            FZ_ASSERT(st == (eof ? RDX_ERR_PEER_LOST : RDX_SUCCESS));
        }
    } else if (type != in_type || len != in_len) {
        FZ_ASSERT(st == RDX_ERR_MISMATCH);
        FZ_ASSERT(fz_unread(f.sv[0]) == n - RDX_BS_HDR_LEN);
    } else if (n >= RDX_BS_HDR_LEN + in_len) {
        FZ_ASSERT(st == RDX_SUCCESS && !x.in_active);
        FZ_ASSERT(in_len == 0 || memcmp(buf, s + RDX_BS_HDR_LEN, in_len) == 0);
        FZ_ASSERT(fz_unread(f.sv[0]) == n - RDX_BS_HDR_LEN - in_len);
    } else {
        FZ_ASSERT(st == (eof ? RDX_ERR_PEER_LOST : RDX_SUCCESS));
        FZ_ASSERT(eof || (x.in_active && x.in_done == n));
    }
    FZ_ASSERT(x.in_done <= RDX_BS_HDR_LEN + (x.in_abort ? RDX_BS_ABORT_MAX : in_len));
    free(buf);
    fz_bs_fini(&f);
}

/* ---- mode 3: a client's handshake against a fuzzed root ------------------------------- */

/* The status of a client's receive that failed on m (avail bytes, then EOF), expecting type
 * ta or tb of at most max_len bytes (exactly need_len unless 0): a stream cut short is rank
 * 0 gone (RDX_ERR_PEER_LOST), anything malformed a protocol error (RDX_ERR_BOOTSTRAP). */
static rdx_status_t client_fail_model(const uint8_t *m, size_t avail, uint16_t ta, uint16_t tb,
                                      uint32_t max_len, uint32_t need_len)
{
    uint16_t type = 0;
    uint32_t len = 0;
    if (avail < RDX_BS_HDR_LEN)
        return RDX_ERR_PEER_LOST;
    if (hdr_model(m, RDX_BS_HDR_LEN, &type, &len) != HM_OK || (type != ta && type != tb) ||
        len > max_len || (need_len && len != need_len))
        return RDX_ERR_BOOTSTRAP;
    return avail < RDX_BS_HDR_LEN + len ? RDX_ERR_PEER_LOST : RDX_ERR_BOOTSTRAP;
}

static void fuzz_client(uint8_t p1, uint8_t p2, const uint8_t *in, size_t n)
{
    enum { HELLO_MSG = RDX_BS_HDR_LEN + RDX_BS_NONCE_LEN,
           OK_MSG = RDX_BS_HDR_LEN + RDX_BS_MAC_LEN };
    int size = 2 + p1 % 7;
    int rank = 1 + (p1 >> 3) % (size - 1);
    fz_bs_t f;
    fz_bs_init(&f, rank, size);
    uint8_t *s = malloc(n ? n : 1);
    FZ_ASSERT(s != NULL);
    memcpy(s, in, n);
    /* The client's nonce is the fixed getrandom pattern, so the right proof is computable. */
    uint8_t cnonce[RDX_BS_NONCE_LEN], proof[RDX_BS_MAC_LEN];
    fuzz_getrandom(cnonce, sizeof(cnonce), 0);
    if ((p2 & 1) && n >= HELLO_MSG + OK_MSG)
        rdx_bs_root_mac(fz_key, FZ_KEY_LEN, cnonce, s + RDX_BS_HDR_LEN,
                        s + HELLO_MSG + RDX_BS_HDR_LEN);
    fz_feed(f.sv[1], s, n, 1); /* always EOF: a short stream fails instead of waiting */

    long now = rdx_net_now_ms();
    bs_client_t c = {.bs = &f.bs, .host = "fuzz", .port = 1, .key = fz_key,
                     .key_len = FZ_KEY_LEN, .start = now, .deadline = now + 5000};
    uint8_t snonce[RDX_BS_NONCE_LEN];
    int retry = 0;
    rdx_status_t st = bs_client_hello(&c, f.sv[0], snonce, &retry);
    int hello_ok = st == RDX_SUCCESS;
    if (hello_ok)
        st = bs_client_auth(&c, f.sv[0], snonce);
    FZ_ASSERT(rdx_net_now_ms() - now < 4000); /* nothing waited for its deadline */

    uint16_t type = 0;
    uint32_t len = 0;
    int want_hello = n >= HELLO_MSG &&
                     hdr_model(s, RDX_BS_HDR_LEN, &type, &len) == HM_OK &&
                     type == RDX_BS_MSG_HELLO && len == RDX_BS_NONCE_LEN;
    FZ_ASSERT(hello_ok == want_hello);
    FZ_ASSERT(retry == (n == 0));
    if (!hello_ok) {
        FZ_ASSERT(st == (n == 0 ? RDX_ERR_BOOTSTRAP
                                : client_fail_model(s, n, RDX_BS_MSG_HELLO, RDX_BS_MSG_HELLO,
                                                    RDX_BS_NONCE_LEN, RDX_BS_NONCE_LEN)));
        goto out;
    }
    FZ_ASSERT(memcmp(snonce, s + RDX_BS_HDR_LEN, RDX_BS_NONCE_LEN) == 0);
    /* The client's AUTH is well formed and proves the key to this root's nonce. */
    rdx_bs_hdr_t h;
    uint8_t body[RDX_BS_AUTH_LEN];
    fz_read_msg(f.sv[1], &h, body, sizeof(body));
    FZ_ASSERT(h.type == RDX_BS_MSG_AUTH && h.len == RDX_BS_AUTH_LEN);
    rdx_bs_auth_t a;
    uint8_t none_taken[9] = {0};
    rdx_bs_auth_decode(body, &a);
    FZ_ASSERT(a.rank == (uint32_t)rank && a.size == (uint32_t)size);
    FZ_ASSERT(memcmp(a.nonce, cnonce, RDX_BS_NONCE_LEN) == 0);
    FZ_ASSERT(rdx_bs_auth_verify(&a, fz_key, FZ_KEY_LEN, snonce, size, none_taken) ==
              RDX_BS_AUTH_ACCEPT);

    rdx_bs_root_mac(fz_key, FZ_KEY_LEN, cnonce, snonce, proof);
    const uint8_t *r = s + HELLO_MSG;
    int want_ok = n >= HELLO_MSG + OK_MSG &&
                  hdr_model(r, RDX_BS_HDR_LEN, &type, &len) == HM_OK &&
                  type == RDX_BS_MSG_AUTH_OK && len == RDX_BS_MAC_LEN &&
                  memcmp(r + RDX_BS_HDR_LEN, proof, RDX_BS_MAC_LEN) == 0;
    FZ_ASSERT((st == RDX_SUCCESS) == want_ok);
    if (want_ok)
        FZ_ASSERT(fz_unread(f.sv[0]) == n - HELLO_MSG - OK_MSG);
    else
        FZ_ASSERT(st == client_fail_model(r, n - HELLO_MSG, RDX_BS_MSG_AUTH_OK,
                                          RDX_BS_MSG_REJECT, RDX_BS_REASON_MAX, 0));
out:
    free(s);
    fz_bs_fini(&f);
}

/* ---- mode 4: the watchdog between collectives ------------------------------------------ */

static void fuzz_watch(uint8_t p1, uint8_t p2, const uint8_t *s, size_t n)
{
    int root = p1 & 1, size = 2 + (p1 >> 1) % 7;
    int peer = root ? 1 + (p1 >> 4) % (size - 1) : 0;
    int eof = p2 & 1;
    fz_bs_t f;
    fz_bs_init(&f, root ? 0 : 1 + (p1 >> 4) % (size - 1), size);
    f.bs.fds[peer] = f.sv[0];
    fz_feed(f.sv[1], s, n, eof);
    rdx_status_t st = rdx_bootstrap_watch(&f.bs);

    /* The model: a complete, valid ABORT at the front is the peer's verdict (a status
     * outside the enum means a lost peer); at the root, a complete STALL is taken and kept
     * (a close behind it is seen at the next poll); otherwise a close is a lost peer, and
     * anything else (partial data, another message) is left alone for the collective. */
    uint16_t type = 0;
    uint32_t len = 0;
    size_t have = n < RDX_BS_HDR_LEN ? n : RDX_BS_HDR_LEN;
    int abort_msg = hdr_model(s, have, &type, &len) == HM_OK && type == RDX_BS_MSG_ABORT &&
                    len >= 4 && len <= RDX_BS_ABORT_MAX && n >= RDX_BS_HDR_LEN + len;
    int stall_msg = root && hdr_model(s, have, &type, &len) == HM_OK &&
                    type == RDX_BS_MSG_STALL && len <= RDX_BS_STALL_MAX &&
                    n >= RDX_BS_HDR_LEN + len;
    if (stall_msg) {
        FZ_ASSERT(st == RDX_SUCCESS && f.bs.failed == RDX_SUCCESS);
        FZ_ASSERT(fz_unread(f.sv[0]) == n - RDX_BS_HDR_LEN - len); /* just the STALL */
        FZ_ASSERT(f.bs.stalls != NULL && strlen(f.bs.stalls[peer]) <= len);
    } else if (abort_msg) {
        uint32_t code = fz_be32(s + RDX_BS_HDR_LEN);
        rdx_status_t want = code >= 1 && code <= RDX_ERR_INTERNAL ? (rdx_status_t)code
                                                                  : RDX_ERR_PEER_LOST;
        FZ_ASSERT(st == want && f.bs.failed == want);
        FZ_ASSERT(fz_unread(f.sv[0]) == n - RDX_BS_HDR_LEN - len); /* just the ABORT */
    } else if (eof) {
        FZ_ASSERT(st == RDX_ERR_PEER_LOST && f.bs.failed == RDX_ERR_PEER_LOST);
    } else {
        FZ_ASSERT(st == RDX_SUCCESS && f.bs.failed == RDX_SUCCESS);
        FZ_ASSERT(fz_unread(f.sv[0]) == n); /* nothing consumed */
    }
    if (st != RDX_SUCCESS) { /* the failure is passed on: a well-formed ABORT to the peer */
        rdx_bs_hdr_t h;
        uint8_t body[RDX_BS_ABORT_MAX];
        fz_read_msg(f.sv[1], &h, body, sizeof(body));
        FZ_ASSERT(h.type == RDX_BS_MSG_ABORT && h.len >= 4 && fz_be32(body) == (uint32_t)st);
        FZ_ASSERT(rdx_bootstrap_watch(&f.bs) == st); /* and every later call says so */
    }
    free(f.bs.watch_pfd);
    fz_bs_fini(&f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rdx_log_set_level(RDX_LOG_ERROR); /* dropped strangers are warnings: keep stderr quiet */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > 4096)
        return 0;
    const uint8_t *s = data + 3;
    size_t n = size - 3;
    switch (data[0] % 5) {
    case 0: fuzz_pure(data[1], data[2], s, n); break;
    case 1: fuzz_root(data[1], data[2], s, n); break;
    case 2: fuzz_xfer(data[1], data[2], s, n); break;
    case 3: fuzz_client(data[1], data[2], s, n); break;
    case 4: fuzz_watch(data[1], data[2], s, n); break;
    }
    return 0;
}
