/*
 * activation.c - element-wise activations (Keras Activation / ReLU layers)
 * and the shared helpers asl_act_forward / asl_act_backward used by conv,
 * depthwise conv and dense.
 *
 * linear : y = x
 * relu   : y = max(x, 0)           (NaN in, NaN out, as TF)
 * relu6  : y = min(max(x, 0), 6)
 * softmax: over the last axis, in rows of `classes` (the channels of an NHWC
 *          tensor), with max subtraction for numerical stability.
 *
 * Backward works from the output y:
 *   relu : dx = dy where y > 0
 *   relu6: dx = dy where 0 < y < 6   (TF's Relu6Grad: 0 < x < 6)
 *   softmax: dx = y * (dy - sum(dy * y)) per row
 * With l->fused_softmax_ce the executor already turned dy into the gradient
 * of the logits, so dx = dy.
 *
 * Plain C loops (vectorised with `omp simd`, threaded with OpenMP above
 * ASL_ACT_PAR elements); all loops tolerate dz == dy and y == x.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Below this many floats a loop runs on the calling thread. */
#define ASL_ACT_PAR ((size_t)1 << 15)

/* y = act(x); x may equal y. */
static void act_apply(asl_activation a, const float *x, float *y,
                      size_t count, int classes)
{
    const long long nn = (long long)count;

    switch (a) {
    case ASL_ACT_RELU:
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) {
            float v = x[i];
            y[i] = v < 0.0f ? 0.0f : v;   /* NaN propagates, as in TF */
        }
        break;
    case ASL_ACT_RELU6:
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) {
            float v = x[i];
            v = v < 0.0f ? 0.0f : v;       /* NaN propagates, as in TF */
            y[i] = v > 6.0f ? 6.0f : v;
        }
        break;
    case ASL_ACT_SOFTMAX: {
        const long long k = classes > 0 ? classes : 1;
        const long long rows = nn / k;
#pragma omp parallel for schedule(static) if (count >= ASL_ACT_PAR && rows > 1)
        for (long long r = 0; r < rows; r++) {
            const float *xr = x + r * k;
            float *yr = y + r * k;
            float m = xr[0], s = 0.0f;
            for (long long j = 1; j < k; j++)
                m = xr[j] > m ? xr[j] : m;
            for (long long j = 0; j < k; j++) {
                float e = expf(xr[j] - m);
                yr[j] = e;
                s += e;
            }
            s = 1.0f / s;
            for (long long j = 0; j < k; j++)
                yr[j] *= s;
        }
        break;
    }
    case ASL_ACT_LINEAR:
    default:
        if (x != y) memcpy(y, x, count * sizeof(float));
        break;
    }
}

void asl_act_forward(asl_activation a, float *y, size_t count, int classes)
{
    act_apply(a, y, y, count, classes);
}

void asl_act_backward(asl_activation a, const float *y, const float *dy,
                      float *dz, size_t count, int classes)
{
    const long long nn = (long long)count;

    switch (a) {
    case ASL_ACT_RELU:
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) {
            float g = dy[i];   /* unconditional loads: branch-free select */
            dz[i] = y[i] > 0.0f ? g : 0.0f;
        }
        break;
    case ASL_ACT_RELU6:
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) {
            float v = y[i], g = dy[i];
            dz[i] = ((v > 0.0f) & (v < 6.0f)) ? g : 0.0f;
        }
        break;
    case ASL_ACT_SOFTMAX: {
        const long long k = classes > 0 ? classes : 1;
        const long long rows = nn / k;
#pragma omp parallel for schedule(static) if (count >= ASL_ACT_PAR && rows > 1)
        for (long long r = 0; r < rows; r++) {
            const float *yr = y + r * k, *gr = dy + r * k;
            float *zr = dz + r * k;
            double s = 0.0;
            for (long long j = 0; j < k; j++)
                s += (double)gr[j] * yr[j];
            for (long long j = 0; j < k; j++)
                zr[j] = yr[j] * (gr[j] - (float)s);
        }
        break;
    }
    case ASL_ACT_LINEAR:
    default:
        if (dz != dy) memcpy(dz, dy, count * sizeof(float));
        break;
    }
}

/* ---- the Activation layer ------------------------------------------- */

static asl_status act_init(asl_layer *l, asl_ctx *c)
{
    switch (l->d.activation) {
    case ASL_ACT_LINEAR:
    case ASL_ACT_RELU:
    case ASL_ACT_RELU6:
    case ASL_ACT_SOFTMAX:
        break;
    default:
        return asl_fail(c, ASL_ERR_ARG, "activation: unknown activation %d",
                        (int)l->d.activation);
    }
    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "activation: bad input shape (%d, %d, %d)",
                        l->in[0], l->in[1], l->in[2]);
    memcpy(l->out, l->in, sizeof l->out);
    l->nparams = 0;
    return ASL_OK;
}

static asl_status act_plan(asl_layer *l, asl_ctx *c)
{
    (void)l;
    (void)c;
    return ASL_OK;
}

static size_t act_count(const asl_layer *l)
{
    return (size_t)l->n * (size_t)l->in[0] * (size_t)l->in[1] *
           (size_t)l->in[2];
}

static asl_status act_forward(asl_layer *l, asl_ctx *c, int training)
{
    (void)c;
    (void)training;
    act_apply(l->d.activation, l->x, l->y, act_count(l), l->in[2]);
    l->logits = l->d.activation == ASL_ACT_SOFTMAX ? l->x : NULL;
    return ASL_OK;
}

static asl_status act_backward(asl_layer *l, asl_ctx *c, int training)
{
    size_t count = act_count(l);

    (void)c;
    (void)training;
    if (!l->dx) return ASL_OK;
    if (l->fused_softmax_ce) {
        if (l->dx != l->dy) memcpy(l->dx, l->dy, count * sizeof(float));
        return ASL_OK;
    }
    asl_act_backward(l->d.activation, l->y, l->dy, l->dx, count, l->in[2]);
    return ASL_OK;
}

static void act_release(asl_layer *l) { (void)l; }
static void act_destroy(asl_layer *l) { (void)l; }

const asl_layer_ops asl_activation_ops = {
    .name = "activation",
    .alias = 0,
    .init = act_init,
    .plan = act_plan,
    .forward = act_forward,
    .backward = act_backward,
    .release = act_release,
    .destroy = act_destroy,
};
