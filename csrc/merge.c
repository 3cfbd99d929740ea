/*
 * merge.c - Keras Multiply and Concatenate of two tensors: the previous
 * layer's output x and the output x2 of an earlier layer d.source (merge
 * layers, as add.c; the executor binds x2, keeps it alive and carries the
 * gradient dx2 this file writes back to the source's output gradient).
 *
 *   multiply     y = x * x2 (same shape; one float32 product per element,
 *                exact up to one rounding, as TF's)
 *                dx = dy * x2, dx2 = dy * x
 *   concatenate  along channels (Keras axis=-1): y[p] = [a[p], b[p]] per
 *                pixel p, (a, b) = (x, x2), or (x2, x) when d.source_first
 *                (Keras's input order puts the source first); a copy
 *                dx, dx2 = the matching channel slices of dy
 */
#include <string.h>

#include "internal.h"

#define ASL_MERGE_PAR ((size_t)1 << 15)

static size_t count_of(const asl_layer *l, const int s[3])
{
    return (size_t)l->n * (size_t)s[0] * (size_t)s[1] * (size_t)s[2];
}

static asl_status check_in(const asl_layer *l, asl_ctx *c, const char *name)
{
    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0 || l->in2[0] <= 0 ||
        l->in2[1] <= 0 || l->in2[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: bad input shapes (%d, %d, %d) and (%d, %d, %d)",
                        name, l->in[0], l->in[1], l->in[2], l->in2[0], l->in2[1], l->in2[2]);
    return ASL_OK;
}

static asl_status multiply_init(asl_layer *l, asl_ctx *c)
{
    ASL_TRY(check_in(l, c, "multiply"));
    if (memcmp(l->in, l->in2, sizeof l->in) != 0)
        return asl_fail(c, ASL_ERR_SHAPE, "multiply: inputs (%d, %d, %d) and (%d, %d, %d) "
                        "differ; a multiply needs two tensors of one shape", l->in[0],
                        l->in[1], l->in[2], l->in2[0], l->in2[1], l->in2[2]);
    memcpy(l->out, l->in, sizeof l->out);
    l->nparams = 0;
    return ASL_OK;
}

static asl_status concatenate_init(asl_layer *l, asl_ctx *c)
{
    ASL_TRY(check_in(l, c, "concatenate"));
    if (l->in[0] != l->in2[0] || l->in[1] != l->in2[1])
        return asl_fail(c, ASL_ERR_SHAPE, "concatenate: inputs (%d, %d, %d) and (%d, %d, %d) "
                        "differ in height or width; a concatenation along channels needs "
                        "the same height and width", l->in[0], l->in[1], l->in[2],
                        l->in2[0], l->in2[1], l->in2[2]);
    if ((long long)l->in[2] + l->in2[2] > 0x7fffffffLL)
        return asl_fail(c, ASL_ERR_SHAPE, "concatenate: too many channels");
    l->out[0] = l->in[0];
    l->out[1] = l->in[1];
    l->out[2] = l->in[2] + l->in2[2];
    l->nparams = 0;
    return ASL_OK;
}

static asl_status merge_plan(asl_layer *l, asl_ctx *c)
{
    (void)l;
    (void)c;
    return ASL_OK;
}

static asl_status bound(const asl_layer *l, asl_ctx *c, const char *name)
{
    if (!l->x || !l->x2 || !l->y)
        return asl_fail(c, ASL_ERR_STATE, "%s: forward without its inputs bound", name);
    return ASL_OK;
}

static asl_status multiply_forward(asl_layer *l, asl_ctx *c, int training)
{
    const long long count = (long long)count_of(l, l->out);
    const float *a = l->x, *b = l->x2;
    float *y = l->y;

    (void)training;
    ASL_TRY(bound(l, c, "multiply"));
#pragma omp parallel for simd schedule(static) if ((size_t)count >= ASL_MERGE_PAR)
    for (long long i = 0; i < count; i++) y[i] = a[i] * b[i];
    return ASL_OK;
}

static asl_status multiply_backward(asl_layer *l, asl_ctx *c, int training)
{
    const long long count = (long long)count_of(l, l->out);
    const float *a = l->x, *b = l->x2, *dy = l->dy;
    float *dx = l->dx, *dx2 = l->dx2;

    (void)training;
    if ((dx || dx2) && (!a || !b || !dy))
        return asl_fail(c, ASL_ERR_STATE, "multiply: backward without its forward state");
    if (dx) {
#pragma omp parallel for simd schedule(static) if ((size_t)count >= ASL_MERGE_PAR)
        for (long long i = 0; i < count; i++) dx[i] = dy[i] * b[i];
    }
    if (dx2) {
#pragma omp parallel for simd schedule(static) if ((size_t)count >= ASL_MERGE_PAR)
        for (long long i = 0; i < count; i++) dx2[i] = dy[i] * a[i];
    }
    return ASL_OK;
}

/* Interleave per pixel: y[p] = [a[p] (ca values), b[p] (cb values)]. */
static void interleave(float *y, const float *a, int ca, const float *b, int cb,
                       long long pixels)
{
    const int cy = ca + cb;
#pragma omp parallel for schedule(static) if ((size_t)(pixels * cy) >= ASL_MERGE_PAR)
    for (long long p = 0; p < pixels; p++) {
        memcpy(y + p * cy, a + p * ca, (size_t)ca * sizeof(float));
        memcpy(y + p * cy + ca, b + p * cb, (size_t)cb * sizeof(float));
    }
}

/* The reverse: da[p], db[p] = the two slices of y[p] (either may be NULL). */
static void split(const float *y, float *a, int ca, float *b, int cb, long long pixels)
{
    const int cy = ca + cb;
#pragma omp parallel for schedule(static) if ((size_t)(pixels * cy) >= ASL_MERGE_PAR)
    for (long long p = 0; p < pixels; p++) {
        if (a) memcpy(a + p * ca, y + p * cy, (size_t)ca * sizeof(float));
        if (b) memcpy(b + p * cb, y + p * cy + ca, (size_t)cb * sizeof(float));
    }
}

static long long pixels_of(const asl_layer *l)
{
    return (long long)l->n * l->out[0] * l->out[1];
}

static asl_status concatenate_forward(asl_layer *l, asl_ctx *c, int training)
{
    (void)training;
    ASL_TRY(bound(l, c, "concatenate"));
    if (l->d.source_first)
        interleave(l->y, l->x2, l->in2[2], l->x, l->in[2], pixels_of(l));
    else
        interleave(l->y, l->x, l->in[2], l->x2, l->in2[2], pixels_of(l));
    return ASL_OK;
}

static asl_status concatenate_backward(asl_layer *l, asl_ctx *c, int training)
{
    (void)training;
    if ((l->dx || l->dx2) && !l->dy)
        return asl_fail(c, ASL_ERR_STATE, "concatenate: backward without dy");
    if (l->d.source_first)
        split(l->dy, l->dx2, l->in2[2], l->dx, l->in[2], pixels_of(l));
    else
        split(l->dy, l->dx, l->in[2], l->dx2, l->in2[2], pixels_of(l));
    return ASL_OK;
}

static void merge_release(asl_layer *l) { (void)l; }

const asl_layer_ops asl_multiply_ops = {
    .name = "multiply",
    .merge = 1,
    .grad2 = 1,
    .init = multiply_init,
    .plan = merge_plan,
    .forward = multiply_forward,
    .backward = multiply_backward,
    .release = merge_release,
    .destroy = merge_release,
};

const asl_layer_ops asl_concatenate_ops = {
    .name = "concatenate",
    .merge = 1,
    .grad2 = 1,
    .init = concatenate_init,
    .plan = merge_plan,
    .forward = concatenate_forward,
    .backward = concatenate_backward,
    .release = merge_release,
    .destroy = merge_release,
};
