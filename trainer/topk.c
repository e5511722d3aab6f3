#include "topk.h"

#include <math.h>
#include <string.h>

#define TOPK_SAMPLE 4096

static float topk_median3(float a, float b, float c)
{
    return a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
}

/* Quickselect with a three-way partition: gradients hold many equal values (zeros of dead
 * ReLU units), which a two-way partition handles in quadratic time. Expected O(n). */
float topk_kth_largest(float *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n, want = k - 1;
    while (hi - lo > 1) {
        float pivot = topk_median3(v[lo], v[lo + (hi - lo) / 2], v[hi - 1]);
        /* [lo, gt) > pivot, [gt, i) == pivot, [lt, hi) < pivot */
        size_t gt = lo, i = lo, lt = hi;
        while (i < lt) {
            float x = v[i];
            if (x > pivot) {
                v[i++] = v[gt];
                v[gt++] = x;
            } else if (x < pivot) {
                v[i] = v[--lt];
                v[lt] = x;
            } else {
                i++;
            }
        }
        if (want < gt)
            hi = gt;
        else if (want < lt)
            return pivot;
        else
            lo = lt;
    }
    return v[lo];
}

/*
 * A threshold t_s that at least k magnitudes reach, cheaply: the magnitude at rank
 * 2 k s / n + 8 of an evenly strided sample of s elements (deterministic, no RNG), which
 * for any smooth distribution lets through about 2k elements. Returns 0 to say "no
 * shortcut" (small inputs, or k a large part of n).
 */
static float topk_sample_threshold(const float *acc, float *sample, size_t n, size_t k)
{
    size_t s = TOPK_SAMPLE, stride = n / s;
    if (stride < 4)
        return 0.0f;
    size_t want = 2 * k * s / n + 8;
    if (want >= s / 2)
        return 0.0f;
    for (size_t i = 0; i < s; i++)
        sample[i] = fabsf(acc[i * stride]);
    return topk_kth_largest(sample, s, want);
}

void topk_take(float *acc, float *scratch, size_t n, size_t k, uint32_t *idx, uint32_t *val)
{
    /* Candidates: every magnitude >= the sample threshold. If at least k pass, the k-th
     * largest overall is among them, and selecting there is exact; else use everything. */
    float ts = topk_sample_threshold(acc, scratch, n, k);
    size_t c = 0;
    if (ts > 0.0f) {
        for (size_t i = 0; i < n; i++) {
            float m = fabsf(acc[i]);
            if (m >= ts)
                scratch[c++] = m;
        }
    }
    if (c < k) {
        for (size_t i = 0; i < n; i++)
            scratch[i] = fabsf(acc[i]);
        c = n;
    }
    float t = topk_kth_largest(scratch, c, k);
    /* Everything above t, then ties at t in index order, up to k; one pass, so the
     * indices come out sorted. Zeros are never sent. */
    size_t above = 0;
    for (size_t i = 0; i < c; i++)
        above += scratch[i] > t;
    size_t ties = t > 0.0f ? k - above : 0, got = 0;
    for (size_t i = 0; i < n && got < k; i++) {
        float m = fabsf(acc[i]);
        if (m > t || (m == t && ties > 0 && m != 0.0f)) {
            ties -= m == t;
            idx[got] = (uint32_t)i;
            memcpy(&val[got], &acc[i], sizeof(float));
            acc[i] = 0.0f;
            got++;
        }
    }
    for (; got < k; got++) {
        idx[got] = 0;
        val[got] = 0;
    }
}
