/*
 * pooling.c - Keras GlobalAveragePooling2D / GlobalMaxPooling2D:
 * (h, w, c) -> (1, 1, c), plain C over NHWC (channels innermost, so every
 * loop below runs contiguously over c and vectorises).
 *
 * Average: y[n,c] = sum_hw x[n,hw,c] / (h*w)  (a division, like TF's mean);
 *          dx[n,hw,c] = dy[n,c] / (h*w).
 * Max:     y[n,c] = max_hw x[n,hw,c]; forward records the argmax (the first
 *          maximum on ties; the first NaN, which then propagates), backward
 *          routes dy there and writes zeros elsewhere.
 */
#include <string.h>

#include "internal.h"

#define ASL_POOL_PAR ((size_t)1 << 15)

typedef struct {
    int *argmax;      /* [n, c] spatial index of the max of the last forward */
    int valid;        /* argmax belongs to the last forward                  */
} gmax_priv;

static asl_status gpool_init_common(asl_layer *l, asl_ctx *c)
{
    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: bad input shape (%d, %d, %d)",
                        l->ops->name, l->in[0], l->in[1], l->in[2]);
    if ((long long)l->in[0] * l->in[1] > 0x7fffffffLL)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: input %d x %d is too large",
                        l->ops->name, l->in[0], l->in[1]);
    l->out[0] = 1;
    l->out[1] = 1;
    l->out[2] = l->in[2];
    l->nparams = 0;
    return ASL_OK;
}

static size_t in_count(const asl_layer *l)
{
    return (size_t)l->n * (size_t)l->in[0] * (size_t)l->in[1] *
           (size_t)l->in[2];
}

static asl_status noop_plan(asl_layer *l, asl_ctx *c)
{
    (void)l;
    (void)c;
    return ASL_OK;
}

static void noop_layer(asl_layer *l) { (void)l; }

/* ---- average ------------------------------------------------------ */

static asl_status gavg_init(asl_layer *l, asl_ctx *c)
{
    return gpool_init_common(l, c);
}

static asl_status gavg_forward(asl_layer *l, asl_ctx *c, int training)
{
    const long long n = l->n, hw = (long long)l->in[0] * l->in[1];
    const long long ch = l->in[2];
    const float den = (float)hw;

    (void)c;
    (void)training;
#pragma omp parallel for schedule(static) if (in_count(l) >= ASL_POOL_PAR && n > 1)
    for (long long b = 0; b < n; b++) {
        const float *xb = l->x + b * hw * ch;
        float *yb = l->y + b * ch;
        for (long long k = 0; k < ch; k++) yb[k] = 0.0f;
        for (long long s = 0; s < hw; s++) {
            const float *xs = xb + s * ch;
#pragma omp simd
            for (long long k = 0; k < ch; k++) yb[k] += xs[k];
        }
        for (long long k = 0; k < ch; k++) yb[k] /= den;
    }
    return ASL_OK;
}

static asl_status gavg_backward(asl_layer *l, asl_ctx *c, int training)
{
    const long long n = l->n, hw = (long long)l->in[0] * l->in[1];
    const long long ch = l->in[2];
    const float den = (float)hw;

    (void)c;
    (void)training;
    if (!l->dx) return ASL_OK;
#pragma omp parallel for collapse(2) schedule(static) if (in_count(l) >= ASL_POOL_PAR)
    for (long long b = 0; b < n; b++) {
        for (long long s = 0; s < hw; s++) {
            const float *g = l->dy + b * ch;
            float *d = l->dx + (b * hw + s) * ch;
#pragma omp simd
            for (long long k = 0; k < ch; k++) d[k] = g[k] / den;
        }
    }
    return ASL_OK;
}

/* ---- max ---------------------------------------------------------- */

static asl_status gmax_init(asl_layer *l, asl_ctx *c)
{
    ASL_TRY(gpool_init_common(l, c));
    l->priv = asl_calloc(sizeof(gmax_priv));
    if (!l->priv)
        return asl_fail(c, ASL_ERR_NOMEM, "global_max_pooling2d: out of memory");
    return ASL_OK;
}

static void gmax_release(asl_layer *l)
{
    gmax_priv *p = l->priv;

    if (!p) return;
    asl_free(p->argmax);
    p->argmax = NULL;
    p->valid = 0;
}

static void gmax_destroy(asl_layer *l)
{
    gmax_release(l);
    asl_free(l->priv);
    l->priv = NULL;
}

static asl_status gmax_plan(asl_layer *l, asl_ctx *c)
{
    gmax_priv *p = l->priv;
    size_t count = (size_t)l->n * (size_t)l->in[2];

    if (!p)
        return asl_fail(c, ASL_ERR_STATE, "global_max_pooling2d: plan before init");
    gmax_release(l);
    p->argmax = asl_alloc(count * sizeof(int));
    if (!p->argmax)
        return asl_fail(c, ASL_ERR_NOMEM,
                        "global_max_pooling2d: out of memory (argmax of %d x %d)",
                        l->n, l->in[2]);
    return ASL_OK;
}

static asl_status gmax_forward(asl_layer *l, asl_ctx *c, int training)
{
    gmax_priv *p = l->priv;
    const long long n = l->n, hw = (long long)l->in[0] * l->in[1];
    const long long ch = l->in[2];

    (void)training;
    if (!p || !p->argmax)
        return asl_fail(c, ASL_ERR_STATE, "global_max_pooling2d: forward before plan");
#pragma omp parallel for schedule(static) if (in_count(l) >= ASL_POOL_PAR && n > 1)
    for (long long b = 0; b < n; b++) {
        const float *xb = l->x + b * hw * ch;
        float *yb = l->y + b * ch;
        int *ab = p->argmax + b * ch;
        for (long long k = 0; k < ch; k++) {
            yb[k] = xb[k];
            ab[k] = 0;
        }
        for (long long s = 1; s < hw; s++) {
            const float *xs = xb + s * ch;
            for (long long k = 0; k < ch; k++) {
                /* first max wins; a NaN max stays (Keras/TF propagate it) */
                if (xs[k] > yb[k] || (xs[k] != xs[k] && yb[k] == yb[k])) {
                    yb[k] = xs[k];
                    ab[k] = (int)s;
                }
            }
        }
    }
    p->valid = 1;
    return ASL_OK;
}

static asl_status gmax_backward(asl_layer *l, asl_ctx *c, int training)
{
    gmax_priv *p = l->priv;
    const long long n = l->n, hw = (long long)l->in[0] * l->in[1];
    const long long ch = l->in[2];

    (void)training;
    if (!l->dx) return ASL_OK;
    if (!p || !p->valid)
        return asl_fail(c, ASL_ERR_STATE,
                        "global_max_pooling2d: backward without a forward");
    memset(l->dx, 0, in_count(l) * sizeof(float));
#pragma omp parallel for schedule(static) if (in_count(l) >= ASL_POOL_PAR && n > 1)
    for (long long b = 0; b < n; b++) {
        const float *g = l->dy + b * ch;
        const int *ab = p->argmax + b * ch;
        float *db = l->dx + b * hw * ch;
        for (long long k = 0; k < ch; k++) db[(long long)ab[k] * ch + k] = g[k];
    }
    return ASL_OK;
}

const asl_layer_ops asl_global_avg_pool_ops = {
    .name = "global_average_pooling2d",
    .alias = 0,
    .init = gavg_init,
    .plan = noop_plan,
    .forward = gavg_forward,
    .backward = gavg_backward,
    .release = noop_layer,
    .destroy = noop_layer,
};

const asl_layer_ops asl_global_max_pool_ops = {
    .name = "global_max_pooling2d",
    .alias = 0,
    .init = gmax_init,
    .plan = gmax_plan,
    .forward = gmax_forward,
    .backward = gmax_backward,
    .release = gmax_release,
    .destroy = gmax_destroy,
};
