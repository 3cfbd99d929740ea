/*
 * add.c - Keras Add of two tensors: the previous layer's output x and the
 * output x2 of an earlier layer d.source (a residual connection).  The
 * executor (network.c) checks that both shapes are equal, keeps the
 * source's output alive until the add has read it, binds it to l->x2, and
 * carries the gradient back to the source: the add's backward writes only
 * dx = dy (the chain's input), and the executor adds dy into the source's
 * output gradient once the chain above the source has written it.
 *
 *   forward   y = x + x2          (one float32 addition per element: exact
 *                                  up to one rounding, as TF's)
 *   backward  dx = dy, d x2 = dy  (the second by the executor)
 */
#include <string.h>

#include "internal.h"

#define ASL_ADD_PAR ((size_t)1 << 15)

static asl_status add_init(asl_layer *l, asl_ctx *c)
{
    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "add: bad input shape (%d, %d, %d)",
                        l->in[0], l->in[1], l->in[2]);
    memcpy(l->out, l->in, sizeof l->out);
    l->nparams = 0;
    return ASL_OK;
}

static asl_status add_plan(asl_layer *l, asl_ctx *c)
{
    (void)l;
    (void)c;
    return ASL_OK;
}

static size_t add_count(const asl_layer *l)
{
    return (size_t)l->n * (size_t)l->in[0] * (size_t)l->in[1] * (size_t)l->in[2];
}

static asl_status add_forward(asl_layer *l, asl_ctx *c, int training)
{
    const long long count = (long long)add_count(l);
    const float *a = l->x, *b = l->x2;
    float *y = l->y;

    (void)training;
    if (!a || !b || !y)
        return asl_fail(c, ASL_ERR_STATE, "add: forward without its inputs bound");
#pragma omp parallel for simd schedule(static) if ((size_t)count >= ASL_ADD_PAR)
    for (long long i = 0; i < count; i++) y[i] = a[i] + b[i];
    return ASL_OK;
}

static asl_status add_backward(asl_layer *l, asl_ctx *c, int training)
{
    (void)c;
    (void)training;
    if (l->dx && l->dx != l->dy) memcpy(l->dx, l->dy, add_count(l) * sizeof(float));
    return ASL_OK;
}

static void add_release(asl_layer *l) { (void)l; }

const asl_layer_ops asl_add_ops = {
    .name = "add",
    .alias = 0,
    .merge = 1,
    .init = add_init,
    .plan = add_plan,
    .forward = add_forward,
    .backward = add_backward,
    .release = add_release,
    .destroy = add_release,
};
