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

int rdx_host_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
