/*
 * dense.c - Keras Dense on OpenBLAS.
 *
 * The layer takes all h*w*c features of a sample (row-major NHWC, i.e. the
 * order of Keras' Flatten) and produces (1, 1, units).  Keras Dense on a
 * 4-D input would act on the last axis only; aslnet's Python layer inserts
 * an explicit Flatten/Reshape in front of such a Dense, so here the input
 * is always treated as a flat vector of in = h*w*c features.
 *
 *   kernel (in, units)   row-major, Keras layout
 *   bias   (units)       if use_bias
 *
 *   forward   y = act(x @ W + b)                         x: [n, in]
 *   backward  dz = act'(y) * dy  (dy itself if linear or the executor fused
 *                                 softmax + cross-entropy)
 *             dW = x^T dz,  db = sum_n dz,  dx = dz W^T
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

typedef struct {
    float *dz;      /* d loss / d pre-activation [n, units] (non-linear) */
} dense_priv;

static int dense_in(const asl_layer *l)
{
    return l->in[0] * l->in[1] * l->in[2];
}

static asl_status dense_init(asl_layer *l, asl_ctx *c)
{
    const asl_layer_desc *d = &l->d;
    int64_t in64 = (int64_t)l->in[0] * l->in[1] * l->in[2];
    int units = d->filters;
    dense_priv *p;

    if (l->in[0] < 1 || l->in[1] < 1 || l->in[2] < 1)
        return asl_fail(c, ASL_ERR_SHAPE, "dense: invalid input shape "
                        "(%d, %d, %d)", l->in[0], l->in[1], l->in[2]);
    if (units < 1)
        return asl_fail(c, ASL_ERR_ARG, "dense: units must be >= 1, got %d",
                        units);
    if (d->activation != ASL_ACT_LINEAR && d->activation != ASL_ACT_RELU &&
        d->activation != ASL_ACT_RELU6 && d->activation != ASL_ACT_SOFTMAX)
        return asl_fail(c, ASL_ERR_ARG, "dense: unknown activation %d",
                        (int)d->activation);
    if (in64 > INT_MAX || in64 * units > INT_MAX)
        return asl_fail(c, ASL_ERR_SHAPE, "dense: kernel (%lld, %d) from "
                        "input (%d, %d, %d) is too large", (long long)in64,
                        units, l->in[0], l->in[1], l->in[2]);

    l->out[0] = 1;
    l->out[1] = 1;
    l->out[2] = units;
    {
        int kdims[2] = {(int)in64, units};
        int bdims[1] = {units};
        ASL_TRY(asl_param_declare(c, l, 0, "kernel", 1, 2, kdims));
        if (d->use_bias)
            ASL_TRY(asl_param_declare(c, l, 1, "bias", 1, 1, bdims));
    }
    p = asl_calloc(sizeof *p);
    if (!p)
        return asl_fail(c, ASL_ERR_NOMEM, "dense: out of memory (%zu bytes)",
                        sizeof *p);
    l->priv = p;
    return ASL_OK;
}

static void dense_release(asl_layer *l)
{
    dense_priv *p = l->priv;
    if (!p) return;
    asl_free(p->dz);
    p->dz = NULL;
}

static void dense_destroy(asl_layer *l)
{
    if (!l->priv) return;
    dense_release(l);
    asl_free(l->priv);
    l->priv = NULL;
}

static asl_status dense_plan(asl_layer *l, asl_ctx *c)
{
    dense_priv *p = l->priv;

    if (!p)
        return asl_fail(c, ASL_ERR_STATE, "dense: plan before init");
    dense_release(l);
    if (l->n < 1)
        return asl_fail(c, ASL_ERR_ARG, "dense: batch size %d", l->n);
    if (l->d.activation != ASL_ACT_LINEAR) {
        size_t cnt = (size_t)l->n * l->out[2];
        p->dz = asl_alloc(cnt * sizeof(float));
        if (!p->dz)
            return asl_fail(c, ASL_ERR_NOMEM, "dense: out of memory for the "
                            "activation gradient (%zu floats, batch %d)", cnt,
                            l->n);
    }
    return ASL_OK;
}

static asl_status dense_forward(asl_layer *l, asl_ctx *c, int training)
{
    int n = l->n, k = dense_in(l), u = l->out[2];
    const float *w = l->p[0].data;
    float beta = 0.0f;

    (void)training;
    if (!l->priv || !l->x || !l->y || !w)
        return asl_fail(c, ASL_ERR_STATE, "dense: forward before plan");
    if (l->d.use_bias) {
        const float *b = l->p[1].data;
        for (int i = 0; i < n; i++)
            memcpy(l->y + (size_t)i * u, b, (size_t)u * sizeof(float));
        beta = 1.0f;
    }
    asl_sgemm(0, 0, n, u, k, 1.0f, l->x, k, w, u, beta, l->y, u);
    if (l->d.activation == ASL_ACT_SOFTMAX) {
        /* keep the logits for the loss (dz is free until backward) */
        dense_priv *p = l->priv;
        memcpy(p->dz, l->y, (size_t)n * u * sizeof(float));
        l->logits = p->dz;
    }
    if (l->d.activation != ASL_ACT_LINEAR)
        asl_act_forward(l->d.activation, l->y, (size_t)n * u, u);
    return ASL_OK;
}

static asl_status dense_backward(asl_layer *l, asl_ctx *c, int training)
{
    dense_priv *p = l->priv;
    int n = l->n, k = dense_in(l), u = l->out[2];
    const float *dz = l->dy;

    (void)training;
    if (!p || !l->x)
        return asl_fail(c, ASL_ERR_STATE, "dense: backward before forward");
    if (!l->trainable && !l->dx) return ASL_OK; /* nothing asked */
    if (!l->dy)
        return asl_fail(c, ASL_ERR_STATE, "dense: backward without dy");
    if (l->trainable && (!l->p[0].grad || (l->d.use_bias && !l->p[1].grad)))
        return asl_fail(c, ASL_ERR_STATE, "dense: trainable layer without "
                        "gradient storage");
    if (l->d.activation != ASL_ACT_LINEAR && !l->fused_softmax_ce) {
        if (!p->dz)
            return asl_fail(c, ASL_ERR_STATE, "dense: backward before plan");
        asl_act_backward(l->d.activation, l->y, l->dy, p->dz, (size_t)n * u,
                         u);
        dz = p->dz;
    }
    if (l->trainable) {
        /* dW[k, u] = x^T[k, n] dz[n, u] */
        asl_sgemm(1, 0, k, u, n, 1.0f, l->x, k, dz, u, 0.0f, l->p[0].grad,
                  u);
        if (l->d.use_bias) asl_col_sums(dz, n, u, l->p[1].grad);
    }
    if (l->dx) {
        /* dx[n, k] = dz[n, u] W^T[u, k] */
        asl_sgemm(0, 1, n, k, u, 1.0f, dz, u, l->p[0].data, u, 0.0f, l->dx,
                  k);
    }
    return ASL_OK;
}

const asl_layer_ops asl_dense_ops = {
    .name = "dense",
    .alias = 0,
    .init = dense_init,
    .plan = dense_plan,
    .forward = dense_forward,
    .backward = dense_backward,
    .release = dense_release,
    .destroy = dense_destroy,
};
