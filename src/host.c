/* Machine facts for the wait policy (see host.h). */
#include "src/host.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void rdx_host_key(char out[RDX_HOST_KEY_BYTES])
{
    char boot[64] = "?", host[64] = "?";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (fgets(boot, sizeof(boot), f))
            boot[strcspn(boot, "\n")] = '\0';
        fclose(f);
    }
    if (gethostname(host, sizeof(host) - 1) != 0)
        strcpy(host, "?");
    host[sizeof(host) - 1] = '\0';
    memset(out, 0, RDX_HOST_KEY_BYTES); /* sent whole over the bootstrap: no stray bytes */
    snprintf(out, RDX_HOST_KEY_BYTES, "%s|%s", boot, host);
}

void rdx_host_cpuset(unsigned char out[RDX_HOST_CPUSET_BYTES])
{
    memset(out, 0, RDX_HOST_CPUSET_BYTES);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN); /* unknown: every online CPU */
        CPU_ZERO(&set);
        for (long c = 0; c < (n > 0 ? n : 1) && c < CPU_SETSIZE; c++)
            CPU_SET((int)c, &set);
    }
    for (int c = 0; c < RDX_HOST_CPUSET_BYTES * 8 && c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            out[c / 8] |= (unsigned char)(1u << (c % 8));
}

int rdx_host_cpuset_count(const unsigned char set[RDX_HOST_CPUSET_BYTES])
{
    int n = 0;
    for (int i = 0; i < RDX_HOST_CPUSET_BYTES; i++)
        n += __builtin_popcount(set[i]);
    return n;
}
