/* rdx-info: what this build of rdx can do on this machine, and the effective configuration. */
#include <stdio.h>
#include <string.h>

#include "rdx/rdx.h"
#include "src/config.h"
#include "src/error.h"
#include "src/reduce.h"
#include "transport/transport.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: rdx-info [-h]\n"
                 "Prints the transports and devices found, the reduction kernels chosen and\n"
                 "every RDX_* setting with its effective value, default and meaning.\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    printf("rdx %d.%d.%d\n", RDX_VERSION_MAJOR, RDX_VERSION_MINOR, RDX_VERSION_PATCH);
    printf("reduction kernels: %s\n", rdx_reduce_isa());
    for (int kind = RDX_TRANSPORT_UCX; kind <= RDX_TRANSPORT_VERBS; kind++) {
        const rdx_tp_ops_t *ops = rdx_tp_lookup(kind);
        printf("transport %s: %s\n", rdx_transport_name(kind), ops ? "built" : "not built");
        if (ops && ops->print_devices)
            ops->print_devices(stdout);
    }
    rdx_settings_t s;
    rdx_status_t st = rdx_settings_from_env(&s);
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rdx-info: %s: %s\n", rdx_strerror(st), rdx_err_last());
        return 1;
    }
    printf("configuration (RDX_* environment):\n");
    rdx_settings_print(&s, stdout, 1);
    return 0;
}
