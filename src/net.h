/*
 * Small socket helpers shared by the bootstrap, rdx-run and tests: address parsing and
 * formatting, socket options, a monotonic clock, free-port discovery. No policy here
 * (retries, deadlines and error messages belong to the callers).
 */
#ifndef RDX_NET_H
#define RDX_NET_H

#include <stddef.h>
#include <sys/socket.h>

/* Room for "[ipv6%scope]:65535". */
#define RDX_NET_ADDRSTR_MAX 80
#define RDX_NET_HOST_MAX 256

/* Milliseconds of CLOCK_MONOTONIC: what every deadline is measured in. */
long rdx_net_now_ms(void);

/* Splits "host:port" or "[v6addr]:port". 0 on success, -1 if malformed or the port is not
 * a number in 0..65535. */
int rdx_net_split_hostport(const char *addr, char host[RDX_NET_HOST_MAX], int *port);

/* "", "*", "0.0.0.0" and "::" mean "every interface". */
int rdx_net_host_is_wildcard(const char *host);
/* Literal loopback addresses and "localhost". */
int rdx_net_host_is_loopback_name(const char *host);
int rdx_net_sockaddr_is_loopback(const struct sockaddr *sa);

/* "a.b.c.d:port" or "[v6]:port"; "?" if the family is unknown. Always NUL-terminated. */
void rdx_net_sockaddr_str(const struct sockaddr *sa, char out[RDX_NET_ADDRSTR_MAX]);
/* The same for the remote end of a connected socket. */
void rdx_net_peer_str(int fd, char out[RDX_NET_ADDRSTR_MAX]);

/* 0 on success, -1 with errno set. */
int rdx_net_set_nonblock(int fd);
int rdx_net_set_nodelay(int fd);

/* First address of the given family (AF_INET or AF_INET6; AF_UNSPEC: IPv4 preferred)
 * on interface ifname, with port set. 0 on success, -1 with errno (ENODEV: no such
 * interface or no address of that family). */
int rdx_net_ifaddr(const char *ifname, int family, int port, struct sockaddr_storage *out,
                   socklen_t *out_len);

/* Asks the kernel for a free TCP port on the IPv4 address ip (bind port 0, read it back,
 * close). Racy by nature, like every launcher's: the caller must bind soon after.
 * Returns the port, or -1 with errno set. */
int rdx_net_free_port(const char *ip);

#endif
