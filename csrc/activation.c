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
 * The Activation layer only (conv and dense fuse the four above):
 * sigmoid: 1 / (1 + e^-x), computed from e^-|x| (no overflow)
 * tanh   : tanhf
 * swish  : x * sigmoid(x) (Keras swish / silu)
 * relu_args: Keras's relu(x, negative_slope, max_value, threshold), as
 *          keras.activations.relu computes it: pos = x > threshold ? x : 0
 *          (x > 0 when threshold is 0), clipped to [0, max_value] when
 *          max_value >= 0, minus negative_slope * max(threshold - x, 0).
 *          LeakyReLU(a) is relu_args with negative_slope a.
 *
 * Backward works from the output y:
 *   relu : dx = dy where y > 0
 *   relu6: dx = dy where 0 < y < 6   (TF's Relu6Grad: 0 < x < 6)
 *   softmax: dx = y * (dy - sum(dy * y)) per row
 *   sigmoid: dx = dy * y * (1 - y);  tanh: dx = dy * (1 - y^2)
 * and from the input x (kept by the executor for a backward):
 *   swish: dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)
 *   relu_args: dx = dy * (d pos/dx + negative_slope * [x < threshold]),
 *          d pos/dx = [x > threshold] where pos lies inside [0, max_value]
 * (the derivative at the kinks is that of TF's ops: 0 at x = threshold).
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

static inline float sigmoidf(float v)
{
    float e = expf(-fabsf(v));            /* in (0, 1]: never overflows */
    float s = 1.0f / (1.0f + e);
    return v >= 0.0f ? s : e * s;         /* NaN: NaN (e is NaN)        */
}

/* Keras's relu with arguments: the value and its derivative. */
static inline float relu_args(float v, float slope, float mx, float thr, float *grad)
{
    float pos = thr != 0.0f ? (v > thr ? v : 0.0f) : (v > 0.0f ? v : 0.0f);
    float g = thr != 0.0f ? (float)(v > thr) : (float)(v > 0.0f);
    float n;
    if (mx >= 0.0f) {
        if (pos < 0.0f || pos > mx) g = 0.0f;
        pos = pos < 0.0f ? 0.0f : (pos > mx ? mx : pos);
    }
    n = thr - v > 0.0f ? thr - v : 0.0f;
    if (slope != 0.0f) g += thr - v > 0.0f ? slope : 0.0f;
    if (grad) *grad = g;
    return v != v ? v : pos - slope * n;
}

/* y = act(x); x may equal y.  r: the relu_args parameters (NULL unless
 * a == ASL_ACT_RELU_ARGS). */
static void act_apply_r(asl_activation a, const float *x, float *y,
                        size_t count, int classes, const asl_layer_desc *r)
{
    const long long nn = (long long)count;

    switch (a) {
    case ASL_ACT_SIGMOID:
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) y[i] = sigmoidf(x[i]);
        break;
    case ASL_ACT_TANH:
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) y[i] = tanhf(x[i]);
        break;
    case ASL_ACT_SWISH:
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) y[i] = x[i] * sigmoidf(x[i]);
        break;
    case ASL_ACT_RELU_ARGS: {
        const float sl = r->relu.negative_slope, mx = r->relu.max_value,
                    th = r->relu.threshold;
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) y[i] = relu_args(x[i], sl, mx, th, NULL);
        break;
    }
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

static void act_apply(asl_activation a, const float *x, float *y,
                      size_t count, int classes)
{
    act_apply_r(a, x, y, count, classes, NULL);
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
    case ASL_ACT_SIGMOID:
    case ASL_ACT_TANH:
    case ASL_ACT_SWISH:
        break;
    case ASL_ACT_RELU_ARGS:
        if (!(l->d.relu.negative_slope >= 0.0f) || !(l->d.relu.threshold == l->d.relu.threshold) ||
            l->d.relu.max_value != l->d.relu.max_value)
            return asl_fail(c, ASL_ERR_ARG, "activation: relu needs negative_slope >= 0 and "
                            "numbers for max_value and threshold (got %g, %g, %g)",
                            (double)l->d.relu.negative_slope, (double)l->d.relu.max_value,
                            (double)l->d.relu.threshold);
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
    act_apply_r(l->d.activation, l->x, l->y, act_count(l), l->in[2], &l->d);
    l->logits = l->d.activation == ASL_ACT_SOFTMAX ? l->x : NULL;
    return ASL_OK;
}

static asl_status act_backward(asl_layer *l, asl_ctx *c, int training)
{
    size_t count = act_count(l);

    (void)training;
    if (!l->dx) return ASL_OK;
    if (l->fused_softmax_ce) {
        if (l->dx != l->dy) memcpy(l->dx, l->dy, count * sizeof(float));
        return ASL_OK;
    }
    switch (l->d.activation) {
    case ASL_ACT_SIGMOID: {
        const float *y = l->y, *g = l->dy;
        float *dx = l->dx;
        const long long nn = (long long)count;
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) dx[i] = g[i] * y[i] * (1.0f - y[i]);
        break;
    }
    case ASL_ACT_TANH: {
        const float *y = l->y, *g = l->dy;
        float *dx = l->dx;
        const long long nn = (long long)count;
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) dx[i] = g[i] * (1.0f - y[i] * y[i]);
        break;
    }
    case ASL_ACT_SWISH: {
        const float *x = l->x, *g = l->dy;
        float *dx = l->dx;
        const long long nn = (long long)count;
        if (!x) return asl_fail(c, ASL_ERR_STATE, "activation: backward without input");
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) {
            float s = sigmoidf(x[i]);
            dx[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    }
    case ASL_ACT_RELU_ARGS: {
        const float *x = l->x, *g = l->dy;
        float *dx = l->dx;
        const float sl = l->d.relu.negative_slope, mx = l->d.relu.max_value,
                    th = l->d.relu.threshold;
        const long long nn = (long long)count;
        if (!x) return asl_fail(c, ASL_ERR_STATE, "activation: backward without input");
#pragma omp parallel for simd schedule(static) if (count >= ASL_ACT_PAR)
        for (long long i = 0; i < nn; i++) {
            float d;
            (void)relu_args(x[i], sl, mx, th, &d);
            dx[i] = g[i] * d;
        }
        break;
    }
    default:
        asl_act_backward(l->d.activation, l->y, l->dy, l->dx, count, l->in[2]);
    }
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
