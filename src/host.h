/* What this process knows about the machine it runs on: which ranks share it, how many CPUs
 * it may use. Used to decide whether waiting may spin (a core per rank) or must yield. */
#ifndef RDX_SRC_HOST_H
#define RDX_SRC_HOST_H

#include <stddef.h>

#define RDX_HOST_KEY_BYTES 128

/* boot id + hostname: equal for processes that compete for the same CPUs (network
 * namespaces included, which is how emulated hosts are built on one machine). */
void rdx_host_key(char out[RDX_HOST_KEY_BYTES]);

/* CPUs in this process's affinity mask (at least 1). */
int rdx_host_cpus(void);

#endif
