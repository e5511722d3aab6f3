/* Socket helpers; see net.h. */
#include "src/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

long rdx_net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int net_parse_port(const char *s, int *port)
{
    char *end;
    if (*s == '\0')
        return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

int rdx_net_split_hostport(const char *addr, char host[RDX_NET_HOST_MAX], int *port)
{
    const char *colon;
    size_t hlen;

    if (addr == NULL)
        return -1;
    if (addr[0] == '[') {
        /* "[v6]:port": the brackets keep the address's own colons apart from the port's. */
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hlen = (size_t)(close - addr - 1);
        if (hlen == 0 || hlen >= RDX_NET_HOST_MAX)
            return -1;
        memcpy(host, addr + 1, hlen);
        host[hlen] = '\0';
        return net_parse_port(close + 2, port);
    }
    colon = strrchr(addr, ':');
    if (colon == NULL || strchr(addr, ':') != colon)
        return -1; /* no port, or an unbracketed IPv6 address: ambiguous */
    hlen = (size_t)(colon - addr);
    if (hlen >= RDX_NET_HOST_MAX)
        return -1;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    return net_parse_port(colon + 1, port);
}

int rdx_net_host_is_wildcard(const char *host)
{
    return host[0] == '\0' || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0 ||
           strcmp(host, "::") == 0;
}

int rdx_net_host_is_loopback_name(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

int rdx_net_sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

void rdx_net_sockaddr_str(const struct sockaddr *sa, char out[RDX_NET_ADDRSTR_MAX])
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, RDX_NET_ADDRSTR_MAX, "%s:%u", ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, RDX_NET_ADDRSTR_MAX, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        snprintf(out, RDX_NET_ADDRSTR_MAX, "?");
    }
}

void rdx_net_peer_str(int fd, char out[RDX_NET_ADDRSTR_MAX])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(out, RDX_NET_ADDRSTR_MAX, "?");
        return;
    }
    rdx_net_sockaddr_str((struct sockaddr *)&ss, out);
}

int rdx_net_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int rdx_net_set_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int net_ifaddr_family(const struct ifaddrs *list, const char *ifname, int family,
                             int port, struct sockaddr_storage *out, socklen_t *out_len)
{
    for (const struct ifaddrs *it = list; it != NULL; it = it->ifa_next) {
        if (it->ifa_addr == NULL || it->ifa_addr->sa_family != family ||
            strcmp(it->ifa_name, ifname) != 0)
            continue;
        memset(out, 0, sizeof(*out));
        if (family == AF_INET) {
            memcpy(out, it->ifa_addr, sizeof(struct sockaddr_in));
            ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
            *out_len = sizeof(struct sockaddr_in);
        } else {
            memcpy(out, it->ifa_addr, sizeof(struct sockaddr_in6));
            ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
            *out_len = sizeof(struct sockaddr_in6);
        }
        return 0;
    }
    return -1;
}

int rdx_net_ifaddr(const char *ifname, int family, int port, struct sockaddr_storage *out,
                   socklen_t *out_len)
{
    struct ifaddrs *list;
    int rc = -1;
    if (getifaddrs(&list) != 0)
        return -1;
    if (family == AF_INET || family == AF_UNSPEC)
        rc = net_ifaddr_family(list, ifname, AF_INET, port, out, out_len);
    if (rc != 0 && (family == AF_INET6 || family == AF_UNSPEC))
        rc = net_ifaddr_family(list, ifname, AF_INET6, port, out, out_len);
    freeifaddrs(list);
    if (rc != 0)
        errno = ENODEV;
    return rc;
}

int rdx_net_free_port(const char *ip)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    int port = -1;

    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    int saved = errno;
    close(fd);
    errno = saved;
    return port;
}
