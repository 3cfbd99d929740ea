/*
 * conv2d.c - Keras Conv2D and DepthwiseConv2D on oneDNN convolutions.
 *
 * Both kinds share this file: DepthwiseConv2D is a grouped convolution with
 * groups = input channels and depth_multiplier outputs per group.
 *
 *   Conv2D           kernel            (kh, kw, cin, filters)  = dnnl_hwio
 *                    bias              (filters)
 *   DepthwiseConv2D  depthwise_kernel  (kh, kw, cin, dm)       = dnnl_hwigo
 *                                      (g = cin, o = dm, i = 1)
 *                    bias              (cin * dm)
 *
 * Output channel cin_index * dm + m of a depthwise convolution is oneDNN's
 * group-major output channel, as in Keras.  Padding follows TF: 'valid'
 * uses no padding (trailing rows/columns that do not fill a window are
 * dropped), 'same' gives ceil(in / s) outputs with the extra padding row or
 * column at the bottom/right.
 *
 * Activations are NHWC (explicit dnnl_nhwc); the primitive picks its own
 * weights layout (dnnl_format_tag_any), fed from the Keras-layout parameter
 * through asl_wmem (reordered only when l->weights_version changes).  The
 * weights gradient is computed in the layout the backward-weights primitive
 * wants and reordered into the Keras-layout l->p[0].grad -- but for a 1x1
 * Conv2D with stride 1, no padding and at least 128 input and output
 * channels in float32, whose Keras kernel (1, 1, cin, filters) is the
 * matrix dW = X^T dZ over all n*h*w pixels: that is one asl_sgemm straight
 * into l->p[0].grad.  Measured on an AVX2 EPYC, 2 threads, batch 10
 * (MobileNet's trainable tail): 1.3x oneDNN's backward-weights kernel and
 * its reorder at 512-1024 channels, level at 128, slower at 32 -> 64.
 *
 * The layer's own activation (Keras `activation=`) is applied in place on y
 * after the convolution, and differentiated into a scratch buffer `dz`
 * before the backward convolutions (unless the executor fused
 * softmax + cross-entropy, in which case dy already is d loss / d logits).
 *
 * Backward primitives are created lazily on the first backward pass, so an
 * inference-only network never builds them.
 *
 * bfloat16 (asl_net_set_compute_dtype(ASL_BF16)): the primitives of an
 * unfused convolution take bfloat16 source, weights and output
 * gradient, and give float32 output, input gradient and weights gradient
 * (Keras's mixed_bfloat16: float32 master weights and optimizer).  x is
 * rounded into xb by the forward (the backward-weights pass reads it
 * again), dz into dzb by the backward; the weights are rounded by their
 * asl_wmem reorder.  A layer whose bfloat16 primitives would be oneDNN's
 * reference kernels stays float32 (bf16_refused).
 *
 * In inference, the executor may run this layer together with the batch
 * norm after it (and a padding before, an activation after) as one fused
 * convolution (fusion.c); that state hangs off l->fusion and is released
 * and destroyed with this layer's primitives.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

typedef struct {
    int depthwise;
    int pad_t, pad_b, pad_l, pad_r;
    int bf16;               /* primitives planned in bfloat16           */
    int bf16_refused;       /* oneDNN has only reference kernels for it */

    /* ---- made by plan (forward) ---- */
    dnnl_primitive_desc_t fwd_pd;
    asl_prim fwd;
    dnnl_memory_t x_m;      /* src / bwd-weights src            (nhwc) */
    dnnl_memory_t y_m;      /* dst                              (nhwc) */
    dnnl_memory_t b_m;      /* bias, dnnl_a (NULL without bias)        */
    asl_wmem w_fwd;         /* weights for fwd (and bwd-data if same)  */
    int w_fwd_ok;
    float *dz;              /* d loss / d pre-activation [n, out]      */
    uint16_t *xb, *dzb;     /* bfloat16 x [n, in] and dz [n, out],     */
    size_t xb_cap, dzb_cap; /* made on first use (asl_round_bf16)      */

    /* ---- made by the first backward ---- */
    int bwd_ok;
    dnnl_primitive_desc_t bwdd_pd, bwdw_pd;
    asl_prim bwdd, bwdw;
    dnnl_memory_t dd_m;     /* diff_dst                          (nhwc) */
    dnnl_memory_t dx_m;     /* diff_src                          (nhwc) */
    dnnl_memory_t db_m;     /* diff_bias, dnnl_a                       */
    asl_wmem w_bwdd;        /* weights for bwd-data when its layout    */
    int w_bwdd_ok;          /* differs from the forward's             */
    dnnl_memory_t dw_m;     /* diff_weights in the primitive's layout  */
    dnnl_memory_t dw_user;  /* diff_weights in Keras layout (-> grad)  */
    asl_prim dw_reorder;    /* dw_m -> dw_user (NULL prim when same)   */
} conv_priv;

/* ------------------------------------------------------------------ */

/* The one home of the convolution geometry (Keras/TF), used by conv_init,
 * fusion.c and, through aslnet._core, by the Python layers: the effective
 * kernel is (k - 1) * dilation + 1; 'valid' gives floor((in - keff) / s) + 1
 * outputs (trailing rows that do not fill a window are dropped) and needs
 * in >= keff; 'same' gives ceil(in / s) outputs with total padding
 * max((out - 1) * s + keff - in, 0), the smaller half before. */
asl_status asl_conv_geometry(int in, int k, int s, int dilation,
                             asl_padding padding, int *out, int *before,
                             int *after)
{
    int64_t keff, o, total = 0;
    if (in < 1 || k < 1 || s < 1 || dilation < 1) return ASL_ERR_ARG;
    keff = (int64_t)(k - 1) * dilation + 1;
    if (padding == ASL_PAD_VALID) {
        if (in < keff) return ASL_ERR_SHAPE;
        o = (in - keff) / s + 1;
    } else if (padding == ASL_PAD_SAME) {
        o = ((int64_t)in + s - 1) / s;
        total = (o - 1) * s + keff - in;
        if (total < 0) total = 0;
        if (total > INT_MAX) return ASL_ERR_SHAPE;
    } else {
        return ASL_ERR_ARG;
    }
    if (out) *out = (int)o;
    if (before) *before = (int)(total / 2);
    if (after) *after = (int)(total - total / 2);
    return ASL_OK;
}

static const char *conv_kind(const asl_layer *l)
{
    return l->d.kind == ASL_LAYER_DEPTHWISE_CONV2D ? "depthwise_conv2d"
                                                   : "conv2d";
}

/* Output channels. */
static int conv_oc(const asl_layer *l)
{
    return l->out[2];
}

static asl_status conv_init(asl_layer *l, asl_ctx *c)
{
    const asl_layer_desc *d = &l->d;
    const char *kind = conv_kind(l);
    int dw = d->kind == ASL_LAYER_DEPTHWISE_CONV2D;
    int kh = d->kernel[0], kw = d->kernel[1];
    int sh = d->strides[0], sw = d->strides[1];
    int ih = l->in[0], iw = l->in[1], ic = l->in[2];
    int oh, ow, oc, pt = 0, pb = 0, pl = 0, pr = 0;
    conv_priv *p;

    if (kh < 1 || kw < 1)
        return asl_fail(c, ASL_ERR_ARG, "%s: kernel_size must be >= 1, got "
                        "(%d, %d)", kind, kh, kw);
    if (sh < 1 || sw < 1)
        return asl_fail(c, ASL_ERR_ARG, "%s: strides must be >= 1, got "
                        "(%d, %d)", kind, sh, sw);
    if (ih < 1 || iw < 1 || ic < 1)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: invalid input shape "
                        "(%d, %d, %d)", kind, ih, iw, ic);
    if (dw) {
        if (d->depth_multiplier < 1)
            return asl_fail(c, ASL_ERR_ARG, "%s: depth_multiplier must be "
                            ">= 1, got %d", kind, d->depth_multiplier);
        if (ic > INT_MAX / d->depth_multiplier)
            return asl_fail(c, ASL_ERR_SHAPE, "%s: %d input channels * "
                            "depth_multiplier %d is too large", kind, ic,
                            d->depth_multiplier);
        oc = ic * d->depth_multiplier;
    } else {
        if (d->filters < 1)
            return asl_fail(c, ASL_ERR_ARG, "%s: filters must be >= 1, got "
                            "%d", kind, d->filters);
        oc = d->filters;
    }
    if (d->activation != ASL_ACT_LINEAR && d->activation != ASL_ACT_RELU &&
        d->activation != ASL_ACT_RELU6 && d->activation != ASL_ACT_SOFTMAX)
        return asl_fail(c, ASL_ERR_ARG, "%s: unknown activation %d", kind,
                        (int)d->activation);

    if (d->padding != ASL_PAD_VALID && d->padding != ASL_PAD_SAME)
        return asl_fail(c, ASL_ERR_ARG, "%s: unknown padding %d", kind,
                        (int)d->padding);
    if (d->dilation[0] < 0 || d->dilation[1] < 0)
        return asl_fail(c, ASL_ERR_ARG, "%s: dilation_rate must be >= 1, got "
                        "(%d, %d)", kind, d->dilation[0], d->dilation[1]);
    if (asl_conv_geometry(ih, kh, sh, asl_dilation(d, 0), d->padding, &oh, &pt,
                          &pb) != ASL_OK ||
        asl_conv_geometry(iw, kw, sw, asl_dilation(d, 1), d->padding, &ow, &pl,
                          &pr) != ASL_OK)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: input (%d, %d, %d) is "
                        "smaller than kernel (%d, %d)%s with padding 'valid'",
                        kind, ih, iw, ic, kh, kw,
                        asl_dilation(d, 0) > 1 || asl_dilation(d, 1) > 1
                            ? " (dilated)" : "");
    /* per-sample sizes must fit an int (the executor's shapes) and the
     * kernel must fit a size_t */
    if ((int64_t)oh * ow * oc > INT_MAX)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: output (%d, %d, %d) is too "
                        "large", kind, oh, ow, oc);
    if ((int64_t)kh * kw > INT_MAX ||
        (int64_t)kh * kw * ic > INT_MAX ||
        (int64_t)kh * kw * ic * (dw ? d->depth_multiplier : oc) > INT_MAX)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: kernel (%d, %d, %d, %d) is "
                        "too large", kind, kh, kw, ic,
                        dw ? d->depth_multiplier : oc);

    l->out[0] = oh;
    l->out[1] = ow;
    l->out[2] = oc;

    {
        int kdims[4] = {kh, kw, ic, dw ? d->depth_multiplier : oc};
        int bdims[1] = {oc};
        ASL_TRY(asl_param_declare(c, l, 0, dw ? "depthwise_kernel" : "kernel",
                                  1, 4, kdims));
        if (d->use_bias)
            ASL_TRY(asl_param_declare(c, l, 1, "bias", 1, 1, bdims));
    }

    p = asl_calloc(sizeof *p);
    if (!p)
        return asl_fail(c, ASL_ERR_NOMEM, "%s: out of memory (%zu bytes)",
                        kind, sizeof *p);
    p->depthwise = dw;
    p->pad_t = pt;
    p->pad_b = pb;
    p->pad_l = pl;
    p->pad_r = pr;
    l->priv = p;
    return ASL_OK;
}

/* ------------------------------------------------------------------ */

static void mem_free(dnnl_memory_t *m)
{
    if (*m) {
        dnnl_memory_destroy(*m);
        *m = NULL;
    }
}

static void pd_free(dnnl_primitive_desc_t *pd)
{
    if (*pd) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
    }
}

static void prim_free(asl_prim *p)
{
    if (p->prim || p->scratch)
        asl_prim_destroy(p);
    memset(p, 0, sizeof *p);
}

static void conv_release_bwd(conv_priv *p)
{
    prim_free(&p->bwdd);
    prim_free(&p->bwdw);
    prim_free(&p->dw_reorder);
    pd_free(&p->bwdd_pd);
    pd_free(&p->bwdw_pd);
    mem_free(&p->dd_m);
    mem_free(&p->dx_m);
    mem_free(&p->db_m);
    mem_free(&p->dw_m);
    mem_free(&p->dw_user);
    if (p->w_bwdd_ok) {
        asl_wmem_destroy(&p->w_bwdd);
        memset(&p->w_bwdd, 0, sizeof p->w_bwdd);
        p->w_bwdd_ok = 0;
    }
    p->bwd_ok = 0;
}

static void conv_release(asl_layer *l)
{
    conv_priv *p = l->priv;
    asl_fused_release(l);
    if (!p) return;
    conv_release_bwd(p);
    prim_free(&p->fwd);
    pd_free(&p->fwd_pd);
    mem_free(&p->x_m);
    mem_free(&p->y_m);
    mem_free(&p->b_m);
    if (p->w_fwd_ok) {
        asl_wmem_destroy(&p->w_fwd);
        memset(&p->w_fwd, 0, sizeof p->w_fwd);
        p->w_fwd_ok = 0;
    }
    asl_free(p->dz);
    asl_free(p->xb);
    asl_free(p->dzb);
    p->dz = NULL;
    p->xb = p->dzb = NULL;
    p->xb_cap = p->dzb_cap = 0;
}

static void conv_destroy(asl_layer *l)
{
    asl_fused_destroy(l);
    if (!l->priv) return;
    conv_release(l);
    asl_free(l->priv);
    l->priv = NULL;
}

/* ------------------------------------------------------------------ */

/* Memory descriptors shared by plan and the lazy backward set-up.  src,
 * dst, w_any: float32 (output, input gradient, weights gradient); src_c,
 * dst_c, w_c: in the compute type (source, output gradient, weights). */
typedef struct {
    dnnl_memory_desc_t src, dst, w_any, w_user, bias, src_c, dst_c, w_c;
    dnnl_dims_t strides, dilates, pad_l, pad_r;
} conv_mds;

static void conv_mds_free(conv_mds *m)
{
    if (m->src) dnnl_memory_desc_destroy(m->src);
    if (m->dst) dnnl_memory_desc_destroy(m->dst);
    if (m->src_c) dnnl_memory_desc_destroy(m->src_c);
    if (m->dst_c) dnnl_memory_desc_destroy(m->dst_c);
    if (m->w_c) dnnl_memory_desc_destroy(m->w_c);
    if (m->w_any) dnnl_memory_desc_destroy(m->w_any);
    if (m->w_user) dnnl_memory_desc_destroy(m->w_user);
    if (m->bias) dnnl_memory_desc_destroy(m->bias);
    memset(m, 0, sizeof *m);
}

static asl_status conv_mds_make(asl_layer *l, asl_ctx *c, conv_mds *m)
{
    conv_priv *p = l->priv;
    asl_status st = ASL_OK;
    int kh = l->d.kernel[0], kw = l->d.kernel[1], ic = l->in[2];
    int oc = conv_oc(l);
    const dnnl_data_type_t ct = p->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t xd = {l->n, ic, l->in[0], l->in[1]},
                yd = {l->n, oc, l->out[0], l->out[1]};

    memset(m, 0, sizeof *m);
    ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                      &m->src, 4, xd, dnnl_f32, dnnl_nhwc), fail);
    ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                      &m->dst, 4, yd, dnnl_f32, dnnl_nhwc), fail);
    ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                      &m->src_c, 4, xd, ct, dnnl_nhwc), fail);
    ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                      &m->dst_c, 4, yd, ct, dnnl_nhwc), fail);
    if (p->depthwise) {
        int dm = l->d.depth_multiplier;
        dnnl_dims_t wd = {ic, dm, 1, kh, kw};
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &m->w_any, 5, wd, dnnl_f32, dnnl_format_tag_any),
                      fail);
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &m->w_c, 5, wd, ct, dnnl_format_tag_any),
                      fail);
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &m->w_user, 5, wd, dnnl_f32, dnnl_hwigo),
                      fail);
    } else {
        dnnl_dims_t wd = {oc, ic, kh, kw};
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &m->w_any, 4, wd, dnnl_f32, dnnl_format_tag_any),
                      fail);
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &m->w_c, 4, wd, ct, dnnl_format_tag_any),
                      fail);
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &m->w_user, 4, wd, dnnl_f32, dnnl_hwio),
                      fail);
    }
    if (l->d.use_bias) {
        dnnl_dims_t bd = {oc};
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &m->bias, 1, bd, dnnl_f32, dnnl_a),
                      fail);
    }
    m->strides[0] = l->d.strides[0];
    m->strides[1] = l->d.strides[1];
    m->dilates[0] = asl_dilation(&l->d, 0) - 1;   /* oneDNN: 0 = none */
    m->dilates[1] = asl_dilation(&l->d, 1) - 1;
    m->pad_l[0] = p->pad_t;
    m->pad_l[1] = p->pad_l;
    m->pad_r[0] = p->pad_b;
    m->pad_r[1] = p->pad_r;
    return ASL_OK;
fail:
    conv_mds_free(m);
    return st;
}

/* Should l's primitives be bfloat16 ones (see the top of the file)? */
static int want_bf16(const asl_layer *l, const asl_ctx *c)
{
    const conv_priv *p = l->priv;
    return c->bf16 && !p->bf16_refused;
}

static asl_status conv_plan(asl_layer *l, asl_ctx *c)
{
    conv_priv *p = l->priv;
    asl_status st = ASL_OK;
    conv_mds m;
    const_dnnl_memory_desc_t wmd;
    dnnl_status_t s;

    if (!p)
        return asl_fail(c, ASL_ERR_STATE, "%s: plan before init",
                        conv_kind(l));
    conv_release(l);
    if (l->n < 1)
        return asl_fail(c, ASL_ERR_ARG, "%s: batch size %d", conv_kind(l),
                        l->n);
    p->bf16 = want_bf16(l, c);
    ASL_TRY(conv_mds_make(l, c, &m));

    /* forward_training serves inference too: for f32 convolutions the
     * implementations and their speed are the same, and the backward
     * primitives need a training forward pd as hint. */
    s = dnnl_convolution_forward_primitive_desc_create(
        &p->fwd_pd, c->engine, dnnl_forward_training, dnnl_convolution_direct,
        m.src_c, m.w_c, m.bias, m.dst, m.strides, m.dilates, m.pad_l, m.pad_r,
        c->attr);
    if (s != dnnl_success) p->fwd_pd = NULL;
    if (p->bf16 && (!p->fwd_pd || asl_pd_is_ref(p->fwd_pd))) {   /* float32 */
        conv_mds_free(&m);
        conv_release(l);
        p->bf16_refused = 1;
        return conv_plan(l, c);
    }
    if (s != dnnl_success) {
        st = asl_fail(c, ASL_ERR_DNNL, "%s: oneDNN: no forward convolution: %s",
                      conv_kind(l), asl_dnnl_str(s));
        goto done;
    }
    st = asl_prim_create(c, &p->fwd, p->fwd_pd);
    if (st != ASL_OK) goto done;
    st = asl_mem_create(c, &p->x_m, m.src_c);
    if (st != ASL_OK) goto done;
    st = asl_mem_create(c, &p->y_m, m.dst);
    if (st != ASL_OK) goto done;
    if (m.bias) {
        st = asl_mem_create(c, &p->b_m, m.bias);
        if (st != ASL_OK) goto done;
    }
    wmd = dnnl_primitive_desc_query_md(p->fwd_pd, dnnl_query_weights_md, 0);
    if (!wmd) {
        st = asl_fail(c, ASL_ERR_DNNL, "%s: oneDNN: no weights md",
                      conv_kind(l));
        goto done;
    }
    st = asl_wmem_init(c, &p->w_fwd, m.w_user, wmd, 0);
    if (st != ASL_OK) goto done;
    p->w_fwd_ok = 1;

    if (l->d.activation != ASL_ACT_LINEAR) {
        size_t cnt = (size_t)l->n * l->out[0] * l->out[1] * l->out[2];
        p->dz = asl_alloc(cnt * sizeof(float));
        if (!p->dz) {
            st = asl_fail(c, ASL_ERR_NOMEM, "%s: out of memory for the "
                          "activation gradient (%zu floats, batch %d)",
                          conv_kind(l), cnt, l->n);
            goto done;
        }
    }
done:
    conv_mds_free(&m);
    if (st != ASL_OK) conv_release(l);
    return st;
}


/* Is the weights gradient one matrix product (see the top)? */
#define ASL_DW_SGEMM_MIN 128   /* channels in and out */
static int dw_is_sgemm(const asl_layer *l, const conv_priv *p)
{
    return !p->depthwise && !p->bf16 && l->d.kernel[0] == 1 && l->d.kernel[1] == 1 &&
           l->d.strides[0] == 1 && l->d.strides[1] == 1 &&
           !(p->pad_t | p->pad_b | p->pad_l | p->pad_r) &&
           l->in[2] >= ASL_DW_SGEMM_MIN && l->out[2] >= ASL_DW_SGEMM_MIN;
}

/* Backward-data and backward-weights primitives, hinted by the forward (no
 * backward-weights primitive where one sgemm computes that gradient). */
static asl_status conv_plan_bwd(asl_layer *l, asl_ctx *c)
{
    conv_priv *p = l->priv;
    const int dw_sgemm_only = dw_is_sgemm(l, p);
    asl_status st = ASL_OK;
    conv_mds m;
    const_dnnl_memory_desc_t md, fwd_wmd;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_status_t sd, sw;

    conv_release_bwd(p);
    ASL_TRY(conv_mds_make(l, c, &m));

    sd = dnnl_convolution_backward_data_primitive_desc_create(
        &p->bwdd_pd, c->engine, dnnl_convolution_direct, m.src, m.w_c, m.dst_c,
        m.strides, m.dilates, m.pad_l, m.pad_r, p->fwd_pd, c->attr);
    sw = dw_sgemm_only ? dnnl_success :
         dnnl_convolution_backward_weights_primitive_desc_create(
             &p->bwdw_pd, c->engine, dnnl_convolution_direct, m.src_c, m.w_any,
             m.bias, m.dst_c, m.strides, m.dilates, m.pad_l, m.pad_r, p->fwd_pd,
             c->attr);
    if (sd != dnnl_success) p->bwdd_pd = NULL;
    if (sw != dnnl_success || dw_sgemm_only) p->bwdw_pd = NULL;
    if (p->bf16 && (!p->bwdd_pd || !p->bwdw_pd || asl_pd_is_ref(p->bwdd_pd) ||
                    asl_pd_is_ref(p->bwdw_pd))) {
        /* float32 from now on (this step's forward was bfloat16) */
        conv_mds_free(&m);
        p->bf16_refused = 1;
        ASL_TRY(conv_plan(l, c));
        return conv_plan_bwd(l, c);
    }
    if (sd != dnnl_success || sw != dnnl_success) {
        st = asl_fail(c, ASL_ERR_DNNL, "%s: oneDNN: no backward-%s convolution: %s",
                      conv_kind(l), sd != dnnl_success ? "data" : "weights",
                      asl_dnnl_str(sd != dnnl_success ? sd : sw));
        goto done;
    }

    /* backward data */
    st = asl_prim_create(c, &p->bwdd, p->bwdd_pd);
    if (st != ASL_OK) goto done;
    st = asl_mem_create(c, &p->dd_m, m.dst_c);
    if (st != ASL_OK) goto done;
    st = asl_mem_create(c, &p->dx_m, m.src);
    if (st != ASL_OK) goto done;
    md = dnnl_primitive_desc_query_md(p->bwdd_pd, dnnl_query_weights_md, 0);
    fwd_wmd = dnnl_primitive_desc_query_md(p->fwd_pd, dnnl_query_weights_md,
                                           0);
    if (!md || !fwd_wmd) {
        st = asl_fail(c, ASL_ERR_DNNL, "%s: oneDNN: no weights md",
                      conv_kind(l));
        goto done;
    }
    if (!dnnl_memory_desc_equal(md, fwd_wmd)) {
        st = asl_wmem_init(c, &p->w_bwdd, m.w_user, md, 0);
        if (st != ASL_OK) goto done;
        p->w_bwdd_ok = 1;
    }

    if (dw_sgemm_only) {
        p->bwd_ok = 1;
        goto done;
    }

    /* backward weights (+ bias) */
    st = asl_prim_create(c, &p->bwdw, p->bwdw_pd);
    if (st != ASL_OK) goto done;
    if (m.bias) {
        st = asl_mem_create(c, &p->db_m, m.bias);
        if (st != ASL_OK) goto done;
    }
    md = dnnl_primitive_desc_query_md(p->bwdw_pd, dnnl_query_diff_weights_md,
                                      0);
    if (!md) {
        st = asl_fail(c, ASL_ERR_DNNL, "%s: oneDNN: no diff weights md",
                      conv_kind(l));
        goto done;
    }
    st = asl_mem_create(c, &p->dw_user, m.w_user);
    if (st != ASL_OK) goto done;
    if (!dnnl_memory_desc_equal(md, m.w_user)) {
        /* gradient in the primitive's layout, then reordered to Keras' */
        ASL_DNNL_GOTO(c, st, dnnl_memory_create(&p->dw_m, md, c->engine,
                                                DNNL_MEMORY_ALLOCATE),
                      done);
        ASL_DNNL_GOTO(c, st, dnnl_reorder_primitive_desc_create(
                          &rpd, md, c->engine, m.w_user, c->engine, c->attr),
                      done);
        st = asl_prim_create(c, &p->dw_reorder, rpd);
        if (st != ASL_OK) goto done;
    }
    p->bwd_ok = 1;
done:
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    conv_mds_free(&m);
    if (st != ASL_OK) conv_release_bwd(p);
    return st;
}

/* ------------------------------------------------------------------ */

static asl_status conv_forward(asl_layer *l, asl_ctx *c, int training)
{
    conv_priv *p = l->priv;
    dnnl_memory_t wm;
    dnnl_exec_arg_t args[4];
    int na = 0;

    (void)training;
    if (!p || !p->fwd.prim)
        return asl_fail(c, ASL_ERR_STATE, "%s: forward before plan",
                        conv_kind(l));
    if (p->bf16 != want_bf16(l, c)) ASL_TRY(conv_plan(l, c));
    ASL_TRY(asl_wmem_get(c, &p->w_fwd, l->p[0].data, l->weights_version,
                         &wm));
    if (p->bf16) {
        ASL_TRY(asl_round_bf16(c, &p->xb, &p->xb_cap, l->x,
                               (size_t)l->n * l->in[0] * l->in[1] * l->in[2]));
        ASL_TRY(asl_mem_bind(c, p->x_m, p->xb));
    } else {
        ASL_TRY(asl_mem_bind(c, p->x_m, l->x));
    }
    ASL_TRY(asl_mem_bind(c, p->y_m, l->y));
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->x_m};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->y_m};
    if (p->b_m) {
        ASL_TRY(asl_mem_bind(c, p->b_m, l->p[1].data));
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->b_m};
    }
    ASL_TRY(asl_prim_exec(c, &p->fwd, na, args));
    if (l->d.activation != ASL_ACT_LINEAR)
        asl_act_forward(l->d.activation, l->y,
                        (size_t)l->n * l->out[0] * l->out[1] * l->out[2],
                        l->out[2]);
    return ASL_OK;
}

/* dW = X^T dZ (cin x filters, Keras layout) and db = the column sums of dZ,
 * over the m = n*h*w pixels of a 1x1 stride-1 convolution. */
static void dw_sgemm(asl_layer *l, const float *dz)
{
    const int m = l->n * l->in[0] * l->in[1], ic = l->in[2], oc = l->out[2];
    asl_sgemm(1, 0, ic, oc, m, 1.0f, l->x, ic, dz, oc, 0.0f, l->p[0].grad, oc);
    if (l->d.use_bias) asl_col_sums(dz, m, oc, l->p[1].grad);
}

static asl_status conv_backward(asl_layer *l, asl_ctx *c, int training)
{
    conv_priv *p = l->priv;
    const float *dz = l->dy;
    dnnl_exec_arg_t args[4];
    int na;

    (void)training;
    if (!p || !p->fwd.prim)
        return asl_fail(c, ASL_ERR_STATE, "%s: backward before plan",
                        conv_kind(l));
    if (!l->trainable && !l->dx) return ASL_OK; /* nothing asked */
    if (!l->dy)
        return asl_fail(c, ASL_ERR_STATE, "%s: backward without dy",
                        conv_kind(l));
    if (l->trainable) {
        if (!l->p[0].grad || (l->d.use_bias && !l->p[1].grad))
            return asl_fail(c, ASL_ERR_STATE, "%s: trainable layer without "
                            "gradient storage", conv_kind(l));
    }
    if (!p->bwd_ok) ASL_TRY(conv_plan_bwd(l, c));

    if (l->d.activation != ASL_ACT_LINEAR && !l->fused_softmax_ce) {
        asl_act_backward(l->d.activation, l->y, l->dy, p->dz,
                         (size_t)l->n * l->out[0] * l->out[1] * l->out[2],
                         l->out[2]);
        dz = p->dz;
    }
    if (p->bf16) {
        ASL_TRY(asl_round_bf16(c, &p->dzb, &p->dzb_cap, dz,
                               (size_t)l->n * l->out[0] * l->out[1] * l->out[2]));
        ASL_TRY(asl_mem_bind(c, p->dd_m, p->dzb));
    } else {
        ASL_TRY(asl_mem_bind(c, p->dd_m, dz));
    }

    if (l->trainable && dw_is_sgemm(l, p)) {
        dw_sgemm(l, dz);
    } else if (l->trainable) {
        dnnl_memory_t dw = p->dw_m ? p->dw_m : p->dw_user;
        if (p->bf16 && !p->xb)
            return asl_fail(c, ASL_ERR_STATE, "%s: backward without a bfloat16 "
                            "forward", conv_kind(l));
        ASL_TRY(asl_mem_bind(c, p->x_m, p->bf16 ? (const void *)p->xb
                                                : (const void *)l->x));
        ASL_TRY(asl_mem_bind(c, p->dw_user, l->p[0].grad));
        na = 0;
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->x_m};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, p->dd_m};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_WEIGHTS, dw};
        if (p->db_m) {
            ASL_TRY(asl_mem_bind(c, p->db_m, l->p[1].grad));
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, p->db_m};
        }
        ASL_TRY(asl_prim_exec(c, &p->bwdw, na, args));
        if (p->dw_m) {
            na = 0;
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_FROM, p->dw_m};
            args[na++] = (dnnl_exec_arg_t){DNNL_ARG_TO, p->dw_user};
            ASL_TRY(asl_prim_exec(c, &p->dw_reorder, na, args));
        }
    }

    if (l->dx) {
        dnnl_memory_t wm;
        if (p->w_bwdd_ok)
            ASL_TRY(asl_wmem_get(c, &p->w_bwdd, l->p[0].data,
                                 l->weights_version, &wm));
        else
            ASL_TRY(asl_wmem_get(c, &p->w_fwd, l->p[0].data,
                                 l->weights_version, &wm));
        ASL_TRY(asl_mem_bind(c, p->dx_m, l->dx));
        na = 0;
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, p->dd_m};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, p->dx_m};
        ASL_TRY(asl_prim_exec(c, &p->bwdd, na, args));
    }
    return ASL_OK;
}

const asl_layer_ops asl_conv2d_ops = {
    .name = "conv2d",
    .alias = 0,
    .init = conv_init,
    .plan = conv_plan,
    .forward = conv_forward,
    .backward = conv_backward,
    .release = conv_release,
    .destroy = conv_destroy,
};

const asl_layer_ops asl_depthwise_conv2d_ops = {
    .name = "depthwise_conv2d",
    .alias = 0,
    .init = conv_init,
    .plan = conv_plan,
    .forward = conv_forward,
    .backward = conv_backward,
    .release = conv_release,
    .destroy = conv_destroy,
};
