/*
 * reshape.c - Keras Reshape of the per-sample shape.  NHWC data is
 * contiguous per sample, so a reshape moves no data: the layer is an alias
 * (the executor makes y == x and dx == dy) and forward/backward do nothing.
 */
#include <string.h>

#include "internal.h"

static asl_status reshape_init(asl_layer *l, asl_ctx *c)
{
    const int *t = l->d.target;
    long long in, known = 1;
    int infer = -1, out[3];

    /* Keras: one target dimension may be -1, inferred from the rest. */
    for (int i = 0; i < 3; i++) {
        if (t[i] == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (t[i] <= 0)
            return asl_fail(c, ASL_ERR_ARG,
                            "reshape: target shape (%d, %d, %d) must be "
                            "positive (one dimension may be -1)",
                            t[0], t[1], t[2]);
        known *= t[i];
        if (known > 0x7fffffffLL)
            return asl_fail(c, ASL_ERR_SHAPE, "reshape: target shape (%d, %d, %d) is too "
                            "large", t[0], t[1], t[2]);
    }
    in = (long long)l->in[0] * l->in[1] * l->in[2];
    for (int i = 0; i < 3; i++) out[i] = t[i];
    if (infer >= 0) {
        if (in % known != 0 || in / known > 0x7fffffffLL)
            return asl_fail(c, ASL_ERR_SHAPE,
                            "reshape: cannot reshape (%d, %d, %d) (%lld "
                            "values) to (%d, %d, %d)",
                            l->in[0], l->in[1], l->in[2], in, t[0], t[1],
                            t[2]);
        out[infer] = (int)(in / known);
        known = in;
    }
    if (in != known)
        return asl_fail(c, ASL_ERR_SHAPE,
                        "reshape: cannot reshape (%d, %d, %d) (%lld values) "
                        "to (%d, %d, %d) (%lld values)",
                        l->in[0], l->in[1], l->in[2], in, t[0], t[1], t[2],
                        known);
    for (int i = 0; i < 3; i++) l->out[i] = out[i];
    l->nparams = 0;
    return ASL_OK;
}

static asl_status reshape_plan(asl_layer *l, asl_ctx *c)
{
    (void)l;
    (void)c;
    return ASL_OK;
}

static size_t reshape_bytes(const asl_layer *l)
{
    return (size_t)l->n * (size_t)l->in[0] * (size_t)l->in[1] *
           (size_t)l->in[2] * sizeof(float);
}

/* Nothing to do when the executor aliases the buffers (it does); a copy
 * otherwise, so the layer stays correct either way. */
static asl_status reshape_forward(asl_layer *l, asl_ctx *c, int training)
{
    (void)c;
    (void)training;
    if (l->y && l->x && l->y != l->x) memcpy(l->y, l->x, reshape_bytes(l));
    return ASL_OK;
}

static asl_status reshape_backward(asl_layer *l, asl_ctx *c, int training)
{
    (void)c;
    (void)training;
    if (l->dx && l->dy && l->dx != l->dy)
        memcpy(l->dx, l->dy, reshape_bytes(l));
    return ASL_OK;
}

static void reshape_release(asl_layer *l) { (void)l; }

const asl_layer_ops asl_reshape_ops = {
    .name = "reshape",
    .alias = 1,
    .init = reshape_init,
    .plan = reshape_plan,
    .forward = reshape_forward,
    .backward = reshape_backward,
    .release = reshape_release,
    .destroy = reshape_release,
};
