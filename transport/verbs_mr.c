/*
 * Registration cache behind mem_register. Registering is a syscall that pins pages (tens of
 * microseconds per MiB), so a buffer registered again, or a sub-range of one already
 * registered, reuses the existing memory region and only bumps its reference count. The
 * region is deregistered when its last reference goes. Few buffers are registered (model
 * parameters, gradients), so a list is enough; the most recent registration is found first.
 */
#include <stdlib.h>
#include "src/error.h"
#include "src/log.h"
#include "transport/verbs.h"

struct rdx_tp_mem {
    struct rdx_tp_mem *next;
    uintptr_t start;
    uintptr_t end;          /* one past the last byte */
    struct ibv_mr *mr;
    int refs;
};

void rdx_verbs_mr_cache_init(rdx_verbs_mr_cache_t *c, struct ibv_pd *pd, int rank,
                             size_t pinned_base)
{
    c->head = NULL;
    c->pd = pd;
    c->rank = rank;
    c->pinned = 0;
    c->pinned_base = pinned_base;
    c->entries = 0;
}

static rdx_tp_mem_t *cache_find(rdx_verbs_mr_cache_t *c, uintptr_t start, uintptr_t end)
{
    for (rdx_tp_mem_t *m = c->head; m; m = m->next)
        if (m->start <= start && end <= m->end)
            return m;
    return NULL;
}

const rdx_tp_mem_t *rdx_verbs_mr_cache_find(const rdx_verbs_mr_cache_t *c, const void *buf,
                                            size_t bytes)
{
    uintptr_t start = (uintptr_t)buf;
    if (!buf || start + bytes < start)
        return NULL;
    return cache_find((rdx_verbs_mr_cache_t *)c, start, start + bytes);
}

rdx_status_t rdx_verbs_mr_cache_get(rdx_verbs_mr_cache_t *c, void *buf, size_t bytes,
                                    rdx_tp_mem_t **mem)
{
    uintptr_t start = (uintptr_t)buf;
    if (!buf || bytes == 0 || start + bytes < start)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: verbs: mem_register(%p, %zu): empty or "
                       "wrapping range", c->rank, buf, bytes);
    rdx_tp_mem_t *m = cache_find(c, start, start + bytes);
    if (m) {
        m->refs++;
        *mem = m;
        return RDX_SUCCESS;
    }
    RDX_CHECK(rdx_verbs_memlock_check(c->rank, c->pinned_base + c->pinned + bytes));
    m = calloc(1, sizeof(*m));
    if (!m)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: verbs: mem_register: out of memory",
                       c->rank);
    int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
    rdx_status_t st = rdx_verbs_reg_mr(c->pd, buf, bytes, access, c->rank, "user buffer",
                                       &m->mr);
    if (st != RDX_SUCCESS) {
        free(m);
        return st;
    }
    m->start = start;
    m->end = start + bytes;
    m->refs = 1;
    m->next = c->head;
    c->head = m;
    c->pinned += bytes;
    c->entries++;
    rdx_log_debug("verbs: registered %p + %zu (lkey 0x%x), %d cached", buf, bytes, m->mr->lkey,
                  c->entries);
    *mem = m;
    return RDX_SUCCESS;
}

static void cache_unlink(rdx_verbs_mr_cache_t *c, rdx_tp_mem_t *mem)
{
    for (rdx_tp_mem_t **pp = &c->head; *pp; pp = &(*pp)->next)
        if (*pp == mem) {
            *pp = mem->next;
            return;
        }
}

static bool cache_contains(rdx_verbs_mr_cache_t *c, const rdx_tp_mem_t *mem)
{
    for (rdx_tp_mem_t *m = c->head; m; m = m->next)
        if (m == mem)
            return true;
    return false;
}

static void entry_free(rdx_verbs_mr_cache_t *c, rdx_tp_mem_t *m)
{
    int rc = ibv_dereg_mr(m->mr);
    if (rc != 0)
        rdx_log_warn("verbs: ibv_dereg_mr(%p + %zu): error %d", (void *)m->start,
                     (size_t)(m->end - m->start), rc);
    c->pinned -= (size_t)(m->end - m->start);
    c->entries--;
    free(m);
}

rdx_status_t rdx_verbs_mr_cache_put(rdx_verbs_mr_cache_t *c, rdx_tp_mem_t *mem)
{
    if (!mem || !cache_contains(c, mem))
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: verbs: mem_deregister(%p): not a "
                       "registration of this transport", c->rank, (void *)mem);
    if (--mem->refs > 0)
        return RDX_SUCCESS;
    cache_unlink(c, mem);
    entry_free(c, mem);
    return RDX_SUCCESS;
}

void rdx_verbs_mr_cache_cleanup(rdx_verbs_mr_cache_t *c)
{
    if (c->head)
        rdx_log_debug("verbs: %d registrations still cached at destroy", c->entries);
    while (c->head) {
        rdx_tp_mem_t *m = c->head;
        c->head = m->next;
        entry_free(c, m);
    }
}

uint32_t rdx_verbs_mem_lkey(const rdx_tp_mem_t *mem)
{
    return mem->mr->lkey;
}

uint32_t rdx_verbs_mem_rkey(const rdx_tp_mem_t *mem)
{
    return mem->mr->rkey;
}

int rdx_verbs_mem_refs(const rdx_tp_mem_t *mem)
{
    return mem->refs;
}
