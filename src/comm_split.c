/*
 * rdx_comm_split: sub-communicators (data-parallel x tensor-parallel groups) that reuse the
 * parent's transport connections: no new endpoints, no new registered memory, no rendezvous.
 *
 * The ranks exchange (color, key) with an allgather on the parent; each color's members are
 * ranked by (key, parent rank). The child's collectives run over the parent's transport
 * through ctx.peer_map (child rank -> transport peer, composed through nested splits), and
 * its ctx.comm_id (a hash of the parent's id, the color and the parent's collective count at
 * the split, equal on all members and different for every split) enters every message
 * fingerprint, so a message of one communicator is never taken for one of another.
 *
 * Shared FIFOs: between two ranks there is one FIFO per direction, shared by the parent and
 * all its descendants. Collectives issued one after another on parent and child are fine
 * (a collective completes only after its last send, and each message is consumed by its own
 * collective, so FIFO order keeps them apart). Outstanding at the same time they are not:
 * rdx_comm_split_busy() lets the request layer refuse that for the ancestors it can see, and
 * any mixing that still happens is caught as RDX_ERR_MISMATCH by the fingerprints.
 *
 * Lifetime: a child holds a reference on its parent (parent->children); the parent must
 * outlive its children (rdx_comm_split_check_destroy).
 */
#include "src/comm_split.h"

#include <stdlib.h>
#include <string.h>

#include "src/log.h"

typedef struct split_member {
    int32_t key;
    int rank;   /* in the parent */
} split_member_t;

static int member_cmp(const void *a, const void *b)
{
    const split_member_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static uint32_t split_comm_id(const rdx_comm_t *parent, int color)
{
    uint32_t words[3] = {parent->ctx.comm_id, (uint32_t)color, parent->seq};
    uint32_t h = 2166136261u;
    const unsigned char *p = (const unsigned char *)words;
    for (size_t i = 0; i < sizeof(words); i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h ? h : 1; /* 0 is the world's id */
}

/* The members of my color, sorted; returns their number and my position in *me. */
static int split_members(const int32_t *all, int size, int color, int self,
                         split_member_t *members, int *me)
{
    int m = 0;
    for (int r = 0; r < size; r++)
        if (all[2 * r] == color)
            members[m++] = (split_member_t){all[2 * r + 1], r};
    qsort(members, (size_t)m, sizeof(*members), member_cmp);
    for (int i = 0; i < m; i++)
        if (members[i].rank == self)
            *me = i;
    return m;
}

static rdx_status_t split_child_create(rdx_comm_t *parent, int color,
                                       const split_member_t *members, int m, int me,
                                       rdx_comm_t **out)
{
    rdx_comm_t *c = calloc(1, sizeof(*c));
    int *map = malloc((size_t)m * sizeof(*map));
    if (!c || !map) {
        free(c);
        free(map);
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: rdx_comm_split: out of memory for a "
                       "communicator of %d ranks", parent->rank, m);
    }
    for (int i = 0; i < m; i++)
        map[i] = rdx_coll_peer(&parent->ctx, members[i].rank);
    c->settings = parent->settings;
    c->settings.rank = me;
    c->settings.size = m;
    c->rank = me;
    c->size = m;
    c->props = parent->props;
    c->ctx = parent->ctx;
    c->ctx.rank = me;
    c->ctx.size = m;
    c->ctx.peer_map = map;
    c->ctx.comm_id = split_comm_id(parent, color);
    rdx_coll_cache_build(&c->ctx, parent->settings.algo); /* the choices for m ranks */
    c->peer_map = map;
    c->parent = parent;
    c->magic = RDX_COMM_LIVE;
    c->sibling = parent->first_child;
    parent->first_child = c;
    parent->children++;
    *out = c;
    return RDX_SUCCESS;
}

rdx_status_t rdx_comm_split(rdx_comm_t *comm, int color, int key, rdx_comm_t **newcomm)
{
    if (!comm || !newcomm)
        return RDX_ERR_INVALID_ARG;
    *newcomm = NULL;
    rdx_err_clear();
    if (comm->magic != RDX_COMM_LIVE)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: rdx_comm_split: the communicator was "
                       "destroyed (rdx_comm_destroy): no call may use it", comm->rank);
    if (comm->head)
        return rdx_comm_fail(comm, "rdx_comm_split",
                             rdx_err(RDX_ERR_INVALID_ARG, "collective #%u still outstanding: "
                                     "wait for it first", comm->head->op.seq));
    int32_t mine[2] = {color < 0 ? -1 : color, key};
    int32_t *all = malloc((size_t)comm->size * sizeof(mine));
    split_member_t *members = malloc((size_t)comm->size * sizeof(*members));
    rdx_status_t st = RDX_ERR_NO_MEMORY;
    if (!all || !members)
        goto free_tables;
    st = rdx_allgather(comm, mine, all, 2, RDX_INT32);
    if (st != RDX_SUCCESS || color < 0)
        goto free_tables;
    int me = -1, m = split_members(all, comm->size, color, comm->rank, members, &me);
    st = split_child_create(comm, color, members, m, me, newcomm);
    if (st != RDX_SUCCESS)
        rdx_comm_fail(comm, "rdx_comm_split", st);
    else
        rdx_log_debug("rdx_comm_split: color %d key %d: rank %d of %d (id %08x)", color, key,
                      me, m, (*newcomm)->ctx.comm_id);
free_tables:
    free(members);
    free(all);
    return st;
}

rdx_status_t rdx_comm_split_check_destroy(const rdx_comm_t *comm)
{
    if (comm->children == 0)
        return RDX_SUCCESS;
    return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: %d communicator%s split from this one %s "
                   "still alive and use%s its transport: destroy them first", comm->rank,
                   comm->children, comm->children == 1 ? "" : "s",
                   comm->children == 1 ? "is" : "are", comm->children == 1 ? "s" : "");
}

rdx_status_t rdx_comm_split_destroy(rdx_comm_t *child)
{
    rdx_status_t st = rdx_comm_split_check_destroy(child);
    if (st != RDX_SUCCESS)
        return st;
    if (child->head) {
        rdx_log_warn("rdx_comm_destroy: collective #%u still running on a split communicator: "
                     "abandoned", child->head->op.seq);
        st = RDX_ERR_INVALID_ARG;
    }
    child->parent->children--;
    for (rdx_comm_t **l = &child->parent->first_child; *l; l = &(*l)->sibling)
        if (*l == child) {
            *l = child->sibling;
            break;
        }
    while (child->free_reqs) {
        rdx_request_t *r = child->free_reqs;
        child->free_reqs = r->next;
        free(r);
    }
    rdx_p2p_state_free(&child->ctx);
    free(child->peer_map);
    rdx_comm_bury(child);
    return st;
}

bool rdx_comm_split_busy(const rdx_comm_t *comm)
{
    for (const rdx_comm_t *c = comm->parent; c; c = c->parent)
        if (c->head)
            return true;
    return false;
}
