/*
 * separable.c - Keras SeparableConv2D: a depthwise convolution (kernel_size,
 * strides, padding, dilation, depth_multiplier; no bias, no activation)
 * then a 1x1 convolution to `filters` (bias, activation), computed by the
 * two conv2d.c layers, held in priv as sub-layers over this layer's
 * parameters (Keras's names, order and layout):
 *   depthwise_kernel (kh, kw, cin, depth_multiplier)
 *   pointwise_kernel (1, 1, cin * depth_multiplier, filters)
 *   bias             (filters)                     [use_bias]
 * Before each call the sub-layers get this layer's parameter and gradient
 * pointers, weights version, trainable flag and batch size, so the
 * executor and optimizer see one layer of three parameters.  The
 * intermediate (depthwise output) and its gradient live in priv.
 */
#include <string.h>

#include "internal.h"

typedef struct {
    asl_layer dw, pw;
    float *mid, *dmid;   /* [n, dw.out] */
} sep_priv;

static size_t numel3(const int *s)
{
    return (size_t)s[0] * (size_t)s[1] * (size_t)s[2];
}

static void sub_free_params(asl_layer *s)
{
    for (int j = 0; j < ASL_MAX_PARAMS; j++) {
        asl_free(s->p[j].own);
        s->p[j].own = s->p[j].data = NULL;
    }
}

static void sep_release(asl_layer *l)
{
    sep_priv *p = l->priv;
    if (!p) return;
    if (p->dw.ops) p->dw.ops->release(&p->dw);
    if (p->pw.ops) p->pw.ops->release(&p->pw);
    asl_free(p->mid);
    asl_free(p->dmid);
    p->mid = p->dmid = NULL;
}

static void sep_destroy(asl_layer *l)
{
    sep_priv *p = l->priv;
    if (!p) return;
    sep_release(l);
    if (p->dw.ops && p->dw.priv) p->dw.ops->destroy(&p->dw);
    if (p->pw.ops && p->pw.priv) p->pw.ops->destroy(&p->pw);
    sub_free_params(&p->dw);
    sub_free_params(&p->pw);
    asl_free(p);
    l->priv = NULL;
}

static asl_status sep_init(asl_layer *l, asl_ctx *c)
{
    sep_priv *p;
    asl_status st;

    if (l->d.filters < 1)
        return asl_fail(c, ASL_ERR_ARG, "separable_conv2d: filters must be >= 1, got %d",
                        l->d.filters);
    if (l->d.activation > ASL_ACT_SOFTMAX)
        return asl_fail(c, ASL_ERR_ARG, "separable_conv2d: activation %d is not one a "
                        "convolution computes", (int)l->d.activation);
    p = asl_calloc(sizeof *p);
    if (!p) return asl_fail(c, ASL_ERR_NOMEM, "separable_conv2d: out of memory");
    l->priv = p;

    p->dw.d = l->d;
    p->dw.d.kind = ASL_LAYER_DEPTHWISE_CONV2D;
    p->dw.d.use_bias = 0;
    p->dw.d.activation = ASL_ACT_LINEAR;
    p->dw.ops = &asl_depthwise_conv2d_ops;
    memcpy(p->dw.in, l->in, sizeof l->in);
    st = p->dw.ops->init(&p->dw, c);
    if (st != ASL_OK) goto fail;

    memset(&p->pw.d, 0, sizeof p->pw.d);
    p->pw.d.kind = ASL_LAYER_CONV2D;
    p->pw.d.filters = l->d.filters;
    p->pw.d.kernel[0] = p->pw.d.kernel[1] = 1;
    p->pw.d.strides[0] = p->pw.d.strides[1] = 1;
    p->pw.d.padding = ASL_PAD_VALID;
    p->pw.d.use_bias = l->d.use_bias;
    p->pw.d.activation = l->d.activation;
    p->pw.ops = &asl_conv2d_ops;
    memcpy(p->pw.in, p->dw.out, sizeof p->dw.out);
    st = p->pw.ops->init(&p->pw, c);
    if (st != ASL_OK) goto fail;
    sub_free_params(&p->dw);       /* they use this layer's parameters */
    sub_free_params(&p->pw);

    memcpy(l->out, p->pw.out, sizeof l->out);
    {
        int kd[4] = {l->d.kernel[0], l->d.kernel[1], l->in[2], p->dw.d.depth_multiplier};
        int pd[4] = {1, 1, p->dw.out[2], l->d.filters};
        int bd[1] = {l->d.filters};
        st = asl_param_declare(c, l, 0, "depthwise_kernel", 1, 4, kd);
        if (st == ASL_OK) st = asl_param_declare(c, l, 1, "pointwise_kernel", 1, 4, pd);
        if (st == ASL_OK && l->d.use_bias) st = asl_param_declare(c, l, 2, "bias", 1, 1, bd);
        if (st != ASL_OK) goto fail;
    }
    return ASL_OK;
fail:
    sep_destroy(l);
    return st;
}

/* Hand this layer's state to the sub-layers. */
static void sync(asl_layer *l)
{
    sep_priv *p = l->priv;
    asl_layer *s[2] = {&p->dw, &p->pw};

    p->dw.p[0].data = l->p[0].data;
    p->dw.p[0].grad = l->p[0].grad;
    p->pw.p[0].data = l->p[1].data;
    p->pw.p[0].grad = l->p[1].grad;
    if (l->d.use_bias) {
        p->pw.p[1].data = l->p[2].data;
        p->pw.p[1].grad = l->p[2].grad;
    }
    for (int k = 0; k < 2; k++) {
        s[k]->n = l->n;
        s[k]->trainable = l->trainable;
        s[k]->weights_version = l->weights_version;
    }
    p->pw.fused_softmax_ce = l->fused_softmax_ce;
}

static asl_status sep_plan(asl_layer *l, asl_ctx *c)
{
    sep_priv *p = l->priv;
    size_t mid = (size_t)l->n * numel3(p->dw.out);

    if (!p) return asl_fail(c, ASL_ERR_STATE, "separable_conv2d: plan before init");
    sep_release(l);
    sync(l);
    ASL_TRY(p->dw.ops->plan(&p->dw, c));
    ASL_TRY(p->pw.ops->plan(&p->pw, c));
    p->mid = asl_alloc(mid * sizeof(float));
    p->dmid = asl_alloc(mid * sizeof(float));
    if (!p->mid || !p->dmid)
        return asl_fail(c, ASL_ERR_NOMEM, "separable_conv2d: out of memory (%zu floats)",
                        mid);
    return ASL_OK;
}

static asl_status sep_forward(asl_layer *l, asl_ctx *c, int training)
{
    sep_priv *p = l->priv;

    if (!p || !p->mid)
        return asl_fail(c, ASL_ERR_STATE, "separable_conv2d: forward before plan");
    sync(l);
    p->dw.x = l->x;
    p->dw.y = p->mid;
    ASL_TRY(p->dw.ops->forward(&p->dw, c, training));
    p->pw.x = p->mid;
    p->pw.y = l->y;
    ASL_TRY(p->pw.ops->forward(&p->pw, c, training));
    l->logits = p->pw.logits;
    return ASL_OK;
}

static asl_status sep_backward(asl_layer *l, asl_ctx *c, int training)
{
    sep_priv *p = l->priv;

    if (!p || !p->mid)
        return asl_fail(c, ASL_ERR_STATE, "separable_conv2d: backward before plan");
    sync(l);
    p->pw.dy = l->dy;
    p->pw.dx = (l->trainable || l->dx) ? p->dmid : NULL;
    ASL_TRY(p->pw.ops->backward(&p->pw, c, training));
    p->dw.dy = p->dmid;
    p->dw.dx = l->dx;
    return p->dw.ops->backward(&p->dw, c, training);
}

const asl_layer_ops asl_separable_conv2d_ops = {
    .name = "separable_conv2d",
    .alias = 0,
    .init = sep_init,
    .plan = sep_plan,
    .forward = sep_forward,
    .backward = sep_backward,
    .release = sep_release,
    .destroy = sep_destroy,
};
