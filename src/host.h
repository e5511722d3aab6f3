/* What this process knows about the machine it runs on: which ranks share it, which CPUs
 * they may use. Used to decide whether waiting may spin (a core per rank) or must yield. */
#ifndef RDX_SRC_HOST_H
#define RDX_SRC_HOST_H

#include <stddef.h>

#define RDX_HOST_KEY_BYTES 128

/* boot id + hostname: equal for processes that compete for the same CPUs (network
 * namespaces included, which is how emulated hosts are built on one machine). */
void rdx_host_key(char out[RDX_HOST_KEY_BYTES]);

/* This process's affinity mask as RDX_HOST_CPUSET_BYTES bytes (bit c = CPU c), to be
 * OR-ed with the masks of the other ranks on the host; rdx_host_cpuset_count counts one. */
#define RDX_HOST_CPUSET_BYTES 128
void rdx_host_cpuset(unsigned char out[RDX_HOST_CPUSET_BYTES]);
int rdx_host_cpuset_count(const unsigned char set[RDX_HOST_CPUSET_BYTES]);

#endif
