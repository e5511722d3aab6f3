/* A program written against the installed rdx: one rank, one allreduce. */
#include <rdx/rdx.h>
#include <stdio.h>

int main(void)
{
    rdx_comm_t *comm;
    rdx_status_t st = rdx_comm_init(&comm, NULL);
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rdx_comm_init: %s\n", rdx_strerror(st));
        return 1;
    }
    float x[3] = {1, 2, 3}, y[3];
    st = rdx_allreduce(comm, x, y, 3, RDX_FLOAT32, RDX_SUM);
    int ok = st == RDX_SUCCESS && y[0] == 1 && y[1] == 2 && y[2] == 3;
    rdx_comm_destroy(comm);
    printf("consumer: %s\n", ok ? "ok" : "wrong");
    return ok ? 0 : 1;
}
