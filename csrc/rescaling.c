/*
 * rescaling.c - Keras Rescaling: y = x * scale + offset (one scale and one
 * offset for every value, Keras's float arguments), dx = dy * scale.
 * Plain C loops, threaded with OpenMP above ASL_RESCALE_PAR values.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

#define ASL_RESCALE_PAR ((size_t)1 << 15)

static size_t count_of(const asl_layer *l)
{
    return (size_t)l->n * (size_t)l->in[0] * (size_t)l->in[1] * (size_t)l->in[2];
}

static asl_status rescale_init(asl_layer *l, asl_ctx *c)
{
    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "rescaling: bad input shape (%d, %d, %d)",
                        l->in[0], l->in[1], l->in[2]);
    if (!isfinite(l->d.scale) || !isfinite(l->d.offset))
        return asl_fail(c, ASL_ERR_ARG, "rescaling: scale and offset must be finite "
                        "(got %g, %g)", (double)l->d.scale, (double)l->d.offset);
    memcpy(l->out, l->in, sizeof l->out);
    l->nparams = 0;
    return ASL_OK;
}

static asl_status rescale_plan(asl_layer *l, asl_ctx *c)
{
    (void)l;
    (void)c;
    return ASL_OK;
}

static asl_status rescale_forward(asl_layer *l, asl_ctx *c, int training)
{
    const size_t count = count_of(l);
    const long long nn = (long long)count;
    const float a = l->d.scale, b = l->d.offset, *x = l->x;
    float *y = l->y;

    (void)c;
    (void)training;
#pragma omp parallel for simd schedule(static) if (count >= ASL_RESCALE_PAR)
    for (long long i = 0; i < nn; i++) y[i] = x[i] * a + b;
    return ASL_OK;
}

static asl_status rescale_backward(asl_layer *l, asl_ctx *c, int training)
{
    const size_t count = count_of(l);
    const long long nn = (long long)count;
    const float a = l->d.scale, *g = l->dy;
    float *dx = l->dx;

    (void)c;
    (void)training;
    if (!dx) return ASL_OK;
#pragma omp parallel for simd schedule(static) if (count >= ASL_RESCALE_PAR)
    for (long long i = 0; i < nn; i++) dx[i] = g[i] * a;
    return ASL_OK;
}

static void rescale_noop(asl_layer *l) { (void)l; }

const asl_layer_ops asl_rescaling_ops = {
    .name = "rescaling",
    .alias = 0,
    .init = rescale_init,
    .plan = rescale_plan,
    .forward = rescale_forward,
    .backward = rescale_backward,
    .release = rescale_noop,
    .destroy = rescale_noop,
};
