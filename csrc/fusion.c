/*
 * fusion.c - a group [ZeroPadding2D ->] Conv2D/DepthwiseConv2D ->
 * BatchNormalization (inference mode) [-> ReLU/ReLU6] as ONE oneDNN
 * convolution (forward_inference), for inference and for frozen layers.
 *
 *   batch norm   folded into the weights and a bias (Keras layouts, then
 *                reordered to the primitive's layout through asl_wmem):
 *                  s[o]  = gamma[o] / sqrt(moving_variance[o] + eps)
 *                  w'[..., o] = w[..., o] * s[o]
 *                  b'[o] = (b[o] - moving_mean[o]) * s[o] + beta[o]
 *                (depthwise: output channel o = i * multiplier + m, which is
 *                also the innermost index of the Keras kernel, so both kinds
 *                scale kernel element k by s[k % out_channels]).  s and b'
 *                are computed in double and rounded once.
 *   activation   an eltwise post-op: relu, or clip_v2 to [0, 6].
 *   zero padding added to the convolution's own padding (padding_l/_r may
 *                be asymmetric), so the padded copy is never made.
 *
 * The executor (network.c) decides which groups run fused; this file only
 * runs one.  The folded parameters are recomputed when the conv's or the
 * batch norm's weights_version changed (the executor bumps the latter after
 * every training-mode forward that moved the moving statistics).  The
 * primitive is made lazily on first use and kept until release (the batch
 * size changes); one group variant (with/without the padding, which
 * activation) is cached, variants oneDNN refuses are remembered and run
 * unfused by the executor.
 *
 * bfloat16 (ctx->bf16, see asl_net_set_compute_dtype): the same
 * convolution with bfloat16 source and weights (the folded float32 weights
 * are rounded by the asl_wmem reorder), float32 bias and accumulation, and
 * a bfloat16 or float32 destination as the executor asks.  A float32 input
 * is rounded into a private buffer first.  oneDNN's reference kernels are
 * refused (a CPU without native bfloat16 runs the group in float32).
 *
 * NaN.  oneDNN's relu and clip post-ops map NaN to 0, where the unfused
 * activation layers propagate it (as TF).  A NaN can only appear inside a
 * group from a NaN/Inf in its input or in its folded parameters (barring
 * float overflow): the executor runs a forward whose input is not finite
 * unfused, and a group whose folded parameters are not finite runs
 * unfused here (*ran = 0).
 *
 * The state hangs off the conv layer (l->fusion) and is freed with it.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

typedef struct {
    /* folded parameters, Keras layout; kept across plans */
    float *w, *b;
    size_t wsize;
    int folded;
    int finite;                 /* no NaN/Inf among them               */
    uint64_t conv_ver, bn_ver;  /* the versions they were folded from  */
    uint64_t fold_ver;          /* bumped by each fold (asl_wmem key)  */
    uint64_t folds;             /* folds done, for tests (not reset)   */

    /* the primitive of one variant, for batch size n (made lazily) */
    int variant;                /* 6 * precision (0 float32, 1 bf16 -> */
                                /* f32, 2 bf16 -> bf16) + 3 * padding  */
                                /* + (0 linear, 1 relu, 2 relu6); -1:  */
                                /* none                                */
    unsigned refused;           /* bit v: oneDNN has no variant v      */
    uint16_t *xb;               /* bfloat16 copy of a float32 input    */
    size_t xb_cap;              /* (elements)                          */
    asl_prim prim;
    asl_wmem wm;
    int wm_ok;
    dnnl_memory_t x_m, y_m, b_m;
    void *int8;                 /* int8 state (quantize.c), or NULL    */
} fused_state;

static void mem_free(dnnl_memory_t *m)
{
    if (*m) dnnl_memory_destroy(*m);
    *m = NULL;
}

uint64_t asl_fused_folds(const asl_layer *conv)
{
    const fused_state *f = conv->fusion;
    return f ? f->folds : 0;
}

void asl_fused_release(asl_layer *conv)
{
    fused_state *f = conv->fusion;
    if (!f) return;
    asl_prim_destroy(&f->prim);
    if (f->wm_ok) asl_wmem_destroy(&f->wm);
    f->wm_ok = 0;
    mem_free(&f->x_m);
    mem_free(&f->y_m);
    mem_free(&f->b_m);
    asl_int8_release(f->int8);
    f->variant = -1;
    f->refused = 0;   /* a new batch size may have other implementations */
}

void asl_fused_destroy(asl_layer *conv)
{
    fused_state *f = conv->fusion;
    if (!f) return;
    asl_fused_release(conv);
    asl_int8_destroy(f->int8);
    asl_free(f->xb);
    asl_free(f->w);
    asl_free(f->b);
    asl_free(f);
    conv->fusion = NULL;
}

/* Fold bn into conv's kernel and bias, if either changed since last time. */
static void fold(fused_state *f, const asl_layer *conv, const asl_layer *bn)
{
    const int oc = conv->out[2];
    const float *k = conv->p[0].data;
    const float *bias = conv->d.use_bias ? conv->p[1].data : NULL;
    const float *gamma = bn->p[0].data, *beta = bn->p[1].data;
    const float *mean = bn->p[2].data, *var = bn->p[3].data;
    const double eps = bn->d.epsilon;
    const size_t rows = f->wsize / (size_t)oc;
    float *s = f->b;   /* the scales, then overwritten by the bias */
    float acc = 0.0f;  /* NaN/Inf if any folded value is          */

    if (f->folded && f->conv_ver == conv->weights_version &&
        f->bn_ver == bn->weights_version)
        return;
    for (int o = 0; o < oc; o++)
        s[o] = (float)(gamma[o] / sqrt((double)var[o] + eps));
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < oc; o++) {
            float v = k[r * oc + o] * s[o];
            f->w[r * oc + o] = v;
            acc += v * 0.0f;
        }
    for (int o = 0; o < oc; o++) {
        f->b[o] = (float)(((bias ? (double)bias[o] : 0.0) - mean[o]) *
                          (double)s[o] + beta[o]);
        acc += f->b[o] * 0.0f;
    }
    f->finite = acc == 0.0f;
    f->folded = 1;
    f->conv_ver = conv->weights_version;
    f->bn_ver = bn->weights_version;
    f->fold_ver++;
    f->folds++;
}

/* The group's state, made on first use. */
static asl_status state(asl_ctx *c, asl_layer *conv, fused_state **out)
{
    fused_state *f = conv->fusion;
    if (!f) {
        f = asl_calloc(sizeof *f);
        if (!f) return asl_fail(c, ASL_ERR_NOMEM, "out of memory (fusion state)");
        f->variant = -1;
        f->wsize = conv->p[0].size;
        f->w = asl_alloc(f->wsize * sizeof(float));
        f->b = asl_alloc((size_t)conv->out[2] * sizeof(float));
        conv->fusion = f;
        if (!f->w || !f->b) {
            asl_fused_destroy(conv);
            return asl_fail(c, ASL_ERR_NOMEM, "out of memory (folded weights "
                            "of %zu floats)", conv->p[0].size);
        }
    }
    *out = f;
    return ASL_OK;
}

asl_status asl_fused_params(asl_ctx *c, asl_layer *conv, const asl_layer *bn,
                            asl_folded *p)
{
    fused_state *f = NULL;
    ASL_TRY(state(c, conv, &f));
    fold(f, conv, bn);
    p->w = f->w;
    p->b = f->b;
    p->wsize = f->wsize;
    p->version = f->fold_ver;
    p->finite = f->finite;
    p->int8 = &f->int8;
    return ASL_OK;
}

/* Build the primitive of the group; *ok = 0 when oneDNN refuses it. */
static asl_status build(asl_ctx *c, fused_state *f, const asl_layer *pad,
                        const asl_layer *conv, asl_activation act, int bf16,
                        int y_bf16, int *ok)
{
    const dnnl_data_type_t xt = bf16 ? dnnl_bf16 : dnnl_f32,
                           yt = y_bf16 ? dnnl_bf16 : dnnl_f32;
    const asl_layer_desc *d = &conv->d;
    const int dw = d->kind == ASL_LAYER_DEPTHWISE_CONV2D;
    const int kh = d->kernel[0], kw = d->kernel[1];
    const int ic = conv->in[2], oc = conv->out[2];
    const int *in = pad ? pad->in : conv->in;
    int pt = 0, pb = 0, pl = 0, pr = 0;
    dnnl_memory_desc_t src = NULL, dst = NULL, w_any = NULL, w_user = NULL,
                       bias = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_dims_t strides = {d->strides[0], d->strides[1]}, dilates = {
        asl_dilation(d, 0) - 1, asl_dilation(d, 1) - 1};   /* oneDNN: 0 = none */
    dnnl_dims_t bd = {oc};
    const_dnnl_memory_desc_t wmd;
    asl_status st = ASL_OK;

    *ok = 0;
    if (d->padding == ASL_PAD_SAME &&   /* as conv2d.c, on its own input */
        (asl_conv_geometry(conv->in[0], kh, d->strides[0], asl_dilation(d, 0),
                           ASL_PAD_SAME, NULL, &pt, &pb) != ASL_OK ||
         asl_conv_geometry(conv->in[1], kw, d->strides[1], asl_dilation(d, 1),
                           ASL_PAD_SAME, NULL, &pl, &pr) != ASL_OK))
        return asl_fail(c, ASL_ERR_SHAPE, "fused group: 'same' padding of "
                        "a (%d, %d) input refused", conv->in[0], conv->in[1]);
    if (pad) {
        pt += pad->d.pad[0];
        pb += pad->d.pad[1];
        pl += pad->d.pad[2];
        pr += pad->d.pad[3];
    }
    {
        dnnl_dims_t pad_l = {pt, pl}, pad_r = {pb, pr};

        dnnl_dims_t xd = {conv->n, in[2], in[0], in[1]},
                    yd = {conv->n, oc, conv->out[0], conv->out[1]};

        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &src, 4, xd, xt, dnnl_nhwc), done);
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &dst, 4, yd, yt, dnnl_nhwc), done);
        if (dw) {
            dnnl_dims_t wd = {ic, d->depth_multiplier, 1, kh, kw};
            ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                              &w_any, 5, wd, xt, dnnl_format_tag_any), done);
            ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                              &w_user, 5, wd, dnnl_f32, dnnl_hwigo), done);
        } else {
            dnnl_dims_t wd = {oc, ic, kh, kw};
            ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                              &w_any, 4, wd, xt, dnnl_format_tag_any), done);
            ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                              &w_user, 4, wd, dnnl_f32, dnnl_hwio), done);
        }
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &bias, 1, bd, dnnl_f32, dnnl_a), done);
        ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_create(&attr), done);
        ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_set_scratchpad_mode(
                          attr, dnnl_scratchpad_mode_user), done);
        if (act != ASL_ACT_LINEAR) {
            ASL_DNNL_GOTO(c, st, dnnl_post_ops_create(&po), done);
            ASL_DNNL_GOTO(c, st, dnnl_post_ops_append_eltwise(
                              po, act == ASL_ACT_RELU ? dnnl_eltwise_relu
                                                      : dnnl_eltwise_clip_v2,
                              0.0f, act == ASL_ACT_RELU ? 0.0f : 6.0f), done);
            ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_set_post_ops(attr, po), done);
        }
        /* the one call allowed to fail: then the group runs unfused */
        if (dnnl_convolution_forward_primitive_desc_create(
                &pd, c->engine, dnnl_forward_inference, dnnl_convolution_direct,
                src, w_any, bias, dst, strides, dilates, pad_l, pad_r,
                attr) != dnnl_success) {
            pd = NULL;
            goto done;
        }
        if (bf16 && asl_pd_is_ref(pd))   /* float32 is faster then */
            goto done;
    }
    st = asl_prim_create(c, &f->prim, pd);
    if (st == ASL_OK) st = asl_mem_create(c, &f->x_m, src);
    if (st == ASL_OK) st = asl_mem_create(c, &f->y_m, dst);
    if (st == ASL_OK) st = asl_mem_create(c, &f->b_m, bias);
    if (st != ASL_OK) goto done;
    wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!wmd) {
        st = asl_fail(c, ASL_ERR_DNNL, "fused %s: oneDNN: no weights md",
                      conv->ops->name);
        goto done;
    }
    st = asl_wmem_init(c, &f->wm, w_user, wmd, 0);
    if (st != ASL_OK) goto done;
    f->wm_ok = 1;
    *ok = 1;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (src) dnnl_memory_desc_destroy(src);
    if (dst) dnnl_memory_desc_destroy(dst);
    if (w_any) dnnl_memory_desc_destroy(w_any);
    if (w_user) dnnl_memory_desc_destroy(w_user);
    if (bias) dnnl_memory_desc_destroy(bias);
    return st;
}

asl_status asl_fused_forward(asl_ctx *c, asl_layer *g, int count, int x_bf16,
                             int y_bf16, int *ran)
{
    const int with_pad = g[0].d.kind == ASL_LAYER_ZERO_PADDING2D;
    asl_layer *conv = &g[with_pad], *bn = &g[with_pad + 1];
    asl_activation act = count > with_pad + 2 ? g[count - 1].d.activation
                                              : ASL_ACT_LINEAR;
    const int bf16 = c->bf16 != 0;
    const int variant = 6 * (bf16 ? 1 + (y_bf16 != 0) : 0) + with_pad * 3 +
                        (act == ASL_ACT_RELU ? 1 : act == ASL_ACT_RELU6 ? 2 : 0);
    fused_state *f = NULL;
    const void *x = g[0].x;
    dnnl_memory_t wm;
    dnnl_exec_arg_t args[4];

    *ran = 0;
    if (count < with_pad + 2 || count > with_pad + 3 ||
        (act != ASL_ACT_LINEAR && act != ASL_ACT_RELU && act != ASL_ACT_RELU6))
        return asl_fail(c, ASL_ERR_ARG, "internal: not a fusable group");
    if (!bf16 && (x_bf16 || y_bf16))
        return asl_fail(c, ASL_ERR_ARG, "internal: bfloat16 data in a float32 group");
    ASL_TRY(state(c, conv, &f));
    if (f->refused & (1u << variant)) return ASL_OK;
    if (f->variant != variant) {
        unsigned refused = f->refused;
        int ok;
        asl_status st;
        asl_fused_release(conv);
        f->refused = refused;
        st = build(c, f, with_pad ? &g[0] : NULL, conv, act, bf16, y_bf16, &ok);
        if (st != ASL_OK || !ok) {
            asl_fused_release(conv);
            f->refused = refused | (ok ? 0u : 1u << variant);
            return st;
        }
        f->variant = variant;
    }
    fold(f, conv, bn);
    if (!f->finite) return ASL_OK;   /* see the NaN note at the top */
    ASL_TRY(asl_wmem_get(c, &f->wm, f->w, f->fold_ver, &wm));
    if (bf16 && !x_bf16) {   /* round a float32 input into our buffer */
        const int *in = g[0].in;
        ASL_TRY(asl_round_bf16(c, &f->xb, &f->xb_cap, g[0].x,
                               (size_t)g[0].n * in[0] * in[1] * in[2]));
        x = f->xb;
    }
    ASL_TRY(asl_mem_bind(c, f->x_m, x));
    ASL_TRY(asl_mem_bind(c, f->y_m, g[count - 1].y));
    ASL_TRY(asl_mem_bind(c, f->b_m, f->b));
    args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, f->x_m};
    args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
    args[2] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, f->b_m};
    args[3] = (dnnl_exec_arg_t){DNNL_ARG_DST, f->y_m};
    ASL_TRY(asl_prim_exec(c, &f->prim, 4, args));
    *ran = 1;
    return ASL_OK;
}
