/*
 * bootstrap_stranger: a misbehaving client for multi-process bootstrap tests.
 *
 *   bootstrap_stranger HOST:PORT MODE [HOLD_MS]
 *
 * Connects to a bootstrap root (retrying for up to 5 s), misbehaves as MODE says, then
 * waits up to HOLD_MS (default 5000) for the root to close the connection.
 *   garbage     sends an HTTP request
 *   hugelen     sends a valid header announcing a 4 GiB payload
 *   silent      sends nothing
 *   half        sends half a header, then nothing
 *   badversion  sends a header of protocol version 9
 *   badmac      answers the hello correctly but without the job key
 *   close       disconnects at once
 * Exit status: 0 if the root dropped us (or MODE is close), 1 if the connection was still
 * open after HOLD_MS, 2 on usage errors, 3 if it could not connect.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/bootstrap_wire.h"
#include "src/net.h"

static int stranger_connect(const char *addr, long limit_ms)
{
    char host[RDX_NET_HOST_MAX], portstr[16];
    int port;
    if (rdx_net_split_hostport(addr, host, &port) != 0)
        return -2;
    snprintf(portstr, sizeof(portstr), "%d", port);
    long deadline = rdx_net_now_ms() + limit_ms;
    while (rdx_net_now_ms() < deadline) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
        if (getaddrinfo(host, portstr, &hints, &res) == 0) {
            for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
                int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                    freeaddrinfo(res);
                    return fd;
                }
                if (fd >= 0)
                    close(fd);
            }
            freeaddrinfo(res);
        }
        usleep(20000);
    }
    return -1;
}

static void send_all(int fd, const void *buf, size_t len)
{
    if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
        fprintf(stderr, "bootstrap_stranger: send: %s\n", errno ? strerror(errno) : "short");
}

static int misbehave(int fd, const char *mode)
{
    uint8_t b[RDX_BS_HDR_LEN + RDX_BS_AUTH_LEN] = {0};
    if (strcmp(mode, "garbage") == 0) {
        send_all(fd, "GET / HTTP/1.0\r\nHost: rdx\r\n\r\n", 29);
    } else if (strcmp(mode, "hugelen") == 0) {
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, 0xfffffff0u, b);
        send_all(fd, b, RDX_BS_HDR_LEN);
    } else if (strcmp(mode, "half") == 0) {
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, RDX_BS_AUTH_LEN, b);
        send_all(fd, b, RDX_BS_HDR_LEN / 2);
    } else if (strcmp(mode, "badversion") == 0) {
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, RDX_BS_AUTH_LEN, b);
        b[5] = 9;
        send_all(fd, b, RDX_BS_HDR_LEN);
    } else if (strcmp(mode, "badmac") == 0) {
        uint8_t hello[RDX_BS_HDR_LEN + RDX_BS_NONCE_LEN];
        if (recv(fd, hello, sizeof(hello), MSG_WAITALL) != (ssize_t)sizeof(hello))
            fprintf(stderr, "bootstrap_stranger: no hello from the root\n");
        rdx_bs_auth_t auth = {.rank = 1, .size = 2}; /* MAC of zeros: no key */
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, RDX_BS_AUTH_LEN, b);
        rdx_bs_auth_encode(&auth, b + RDX_BS_HDR_LEN);
        send_all(fd, b, sizeof(b));
    } else if (strcmp(mode, "silent") != 0 && strcmp(mode, "close") != 0) {
        return -1;
    }
    return 0;
}

/* Milliseconds until the root closed the connection, or -1 if it stayed open. */
static long hold(int fd, long limit_ms)
{
    long start = rdx_net_now_ms();
    uint8_t buf[512];
    for (long left; (left = start + limit_ms - rdx_net_now_ms()) > 0;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        if (recv(fd, buf, sizeof(buf), 0) <= 0)
            return rdx_net_now_ms() - start;
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bootstrap_stranger HOST:PORT "
                        "garbage|hugelen|silent|half|badversion|badmac|close [HOLD_MS]\n");
        return 2;
    }
    long hold_ms = argc == 4 ? atol(argv[3]) : 5000;
    int fd = stranger_connect(argv[1], 5000);
    if (fd == -2) {
        fprintf(stderr, "bootstrap_stranger: bad address '%s'\n", argv[1]);
        return 2;
    }
    if (fd < 0) {
        fprintf(stderr, "bootstrap_stranger: cannot connect to %s\n", argv[1]);
        return 3;
    }
    if (misbehave(fd, argv[2]) != 0) {
        fprintf(stderr, "bootstrap_stranger: unknown mode '%s'\n", argv[2]);
        return 2;
    }
    if (strcmp(argv[2], "close") == 0) {
        close(fd);
        printf("bootstrap_stranger close: disconnected\n");
        return 0;
    }
    long closed = hold(fd, hold_ms);
    close(fd);
    if (closed < 0) {
        printf("bootstrap_stranger %s: connection still open after %ld ms\n", argv[2], hold_ms);
        return 1;
    }
    printf("bootstrap_stranger %s: rank 0 closed the connection after %ld ms\n", argv[2], closed);
    return 0;
}
