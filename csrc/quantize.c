/*
 * quantize.c - int8 inference of a fused group [ZeroPadding2D ->]
 * Conv2D/DepthwiseConv2D -> BatchNormalization [-> ReLU/ReLU6] as ONE oneDNN
 * int8 convolution (forward_inference; the executor, network.c, chooses
 * which groups run it and the activation scales, from calibrated ranges).
 *
 *   weights   the folded float32 kernel (fusion.c's rule) quantized per
 *             output channel o, symmetric: sw[o] = max|w[., o]| / 127 (1
 *             for an all-zero channel), wq = round_half_even(w / sw[o])
 *             clamped to [-127, 127]; reordered to the primitive's layout
 *             (which adds oneDNN's s8-source compensation) once per fold.
 *   source    u8 or s8 with one scale sx (DNNL_ARG_SRC scales, mask 0);
 *             the executor keeps u8 values in [0, 127] on CPUs without
 *             VNNI (asl_int8_vnni), where oneDNN's u8 x s8 pair sums are
 *             16-bit and could saturate (for an s8 source oneDNN halves
 *             the weights instead: its reorder's scale_adjust).  A
 *             float32 input (the first convolution, or after a layer the
 *             int8 path does not cover) is quantized into a private buffer:
 *             q = saturate(round_half_even(x * (1 / sx))).
 *   compute   s32 accumulation; y = act(sx * sw[o] * acc + b[o]) with the
 *             float32 bias b and the activation as an eltwise post-op (relu,
 *             or clip_v2 to [0, 6]); then either float32 (dequantized
 *             output) or u8 / s8 with the destination scale sy:
 *             saturate(round(y / sy)) (oneDNN 3.x scale semantics).
 *
 * oneDNN's reference int8 kernels are refused (*ran = 0: the executor runs
 * the group in float32), as are groups whose folded parameters are not
 * finite.  The state hangs off the group's fusion state (fusion.c) and is
 * released and destroyed with it.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

typedef struct {
    int8_t *wq;              /* quantized kernel, Keras layout          */
    float *sw;               /* per output channel scales               */
    uint64_t wver;           /* fold version wq was made from (+1; 0:   */
                             /* none)                                   */
    int variant;             /* see key(); -1: no primitive             */
    uint64_t refused;        /* bit v: no jit int8 kernel for variant v */
    void *xq;                /* quantized copy of a float32 input       */
    size_t xq_cap;           /* (bytes)                                 */
    float sx, sy;            /* the scales bound to the scale memories  */
    asl_prim prim;
    asl_wmem wm;
    int wm_ok;
    dnnl_memory_t x_m, y_m, b_m, sx_m, sw_m, sy_m;
} q_state;

int asl_int8_vnni(void)
{
    /* ISA values are bit sets: later ISAs contain these bits */
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(),
                   a2 = (unsigned)dnnl_cpu_isa_avx2_vnni,
                   a512 = (unsigned)dnnl_cpu_isa_avx512_core_vnni;
    return (isa & a2) == a2 || (isa & a512) == a512;
}

static void mem_free(dnnl_memory_t *m)
{
    if (*m) dnnl_memory_destroy(*m);
    *m = NULL;
}

void asl_int8_release(void *state)
{
    q_state *q = state;
    if (!q) return;
    asl_prim_destroy(&q->prim);
    if (q->wm_ok) asl_wmem_destroy(&q->wm);
    q->wm_ok = 0;
    mem_free(&q->x_m);
    mem_free(&q->y_m);
    mem_free(&q->b_m);
    mem_free(&q->sx_m);
    mem_free(&q->sw_m);
    mem_free(&q->sy_m);
    q->variant = -1;
    q->refused = 0;   /* a new batch size may have other implementations */
}

void asl_int8_destroy(void *state)
{
    q_state *q = state;
    if (!q) return;
    asl_int8_release(q);
    asl_free(q->wq);
    asl_free(q->sw);
    asl_free(q->xq);
    asl_free(q);
}

static dnnl_data_type_t dnnl_type(asl_qtype t)
{
    return t == ASL_Q_U8 ? dnnl_u8 : t == ASL_Q_S8 ? dnnl_s8 : dnnl_f32;
}

/* Quantize the folded kernel per output channel (Keras layout: the output
 * channel is the innermost index, for both kinds).  The step of channel o is
 * sw[o] = max|w| / k with k = 127 (the finest grid that holds the channel),
 * unless a coarser k in [64, 126] fits its weights with less than half the
 * squared rounding error of the best k so far (k from 127 down; an exact fit,
 * error <= QW_EXACT max|w|^2 per weight, ends the search).  Weights spread
 * freely keep k = 127 (a coarser grid has ~(127/k)^2 times the error); weights
 * that already lie on a grid (a TFLite file's per-tensor uint8 weights, BN
 * folded) keep it exactly instead of being rounded a second time, which cost
 * MobileNetV2 twice LiteRT's error on its own file.  The margins keep the
 * choice the same under any summation order (tests/reference/int8.py twins
 * it).  w / step is rounded half to even as nearbyintf would, vectorizably. */
#define QW_EXACT 1e-9

static double channel_error(const float *w, size_t rows, int oc, int o, float st)
{
    double e = 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float v = w[r * (size_t)oc + o];
        float t = v / st;
        t = t > -127.0f ? t : -127.0f;
        t = t < 127.0f ? t : 127.0f;
        t = (t + 12582912.0f) - 12582912.0f;
        const double d = (double)v - (double)t * (double)st;
        e += d * d;
    }
    return e;
}

static void quantize_weights(q_state *q, const asl_folded *p, int oc)
{
    const size_t rows = p->wsize / (size_t)oc;
#pragma omp parallel for schedule(dynamic, 4) if (p->wsize >= (1 << 16))
    for (int o = 0; o < oc; o++) {
        float m = 0.0f;
        for (size_t r = 0; r < rows; r++) m = fmaxf(m, fabsf(p->w[r * oc + o]));
        if (!(m > 0.0f)) {
            q->sw[o] = 1.0f;
            continue;
        }
        const double exact = QW_EXACT * (double)m * (double)m * (double)rows;
        float best = m / 127.0f;
        double best_e = channel_error(p->w, rows, oc, o, best);
        for (int k = 126; k >= 64 && best_e > exact; k--) {
            const float st = m / (float)k;
            const double e = channel_error(p->w, rows, oc, o, st);
            if (e < 0.5 * best_e) {
                best = st;
                best_e = e;
            }
        }
        q->sw[o] = best;
    }
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < oc; o++) {
            float v = nearbyintf(p->w[r * oc + o] / q->sw[o]);
            q->wq[r * oc + o] = (int8_t)fminf(127.0f, fmaxf(-127.0f, v));
        }
}

/* x (float32, count values) -> q->xq as u8 or s8 with scale sx. */
static asl_status quantize_input(asl_ctx *c, q_state *q, const float *x,
                                 size_t count, asl_qtype t, float sx)
{
    const float inv = 1.0f / sx, lo = t == ASL_Q_U8 ? 0.0f : -128.0f,
                hi = t == ASL_Q_U8 ? 255.0f : 127.0f;
    const long long nn = (long long)count;
    if (q->xq_cap < count) {
        asl_free(q->xq);
        q->xq = asl_alloc(count);
        q->xq_cap = q->xq ? count : 0;
        if (!q->xq)
            return asl_fail(c, ASL_ERR_NOMEM, "out of memory (int8 input of %zu "
                            "values)", count);
    }
    /* q = saturate(round_half_even(x / sx)), written so that it vectorizes
     * (libm's nearbyintf/fmaxf/fminf are calls: they were a quarter of an
     * int8 MobileNetV2 pass).  Clamping to the integer bounds first and then
     * rounding gives what rounding then clamping gives; a NaN becomes lo, as
     * fmaxf(lo, NaN) did; adding and subtracting 1.5 * 2^23 rounds |v| <
     * 2^22 to the nearest integer, ties to even, in the default rounding mode
     * (as nearbyintf does; -O3 without -ffast-math keeps the two additions). */
    if (t == ASL_Q_U8) {
        uint8_t *y = q->xq;
#pragma omp parallel for simd schedule(static) if (nn >= (1 << 16))
        for (long long i = 0; i < nn; i++) {
            float v = x[i] * inv;
            v = v > lo ? v : lo;
            v = v < hi ? v : hi;
            y[i] = (uint8_t)(int)((v + 12582912.0f) - 12582912.0f);
        }
    } else {
        int8_t *y = q->xq;
#pragma omp parallel for simd schedule(static) if (nn >= (1 << 16))
        for (long long i = 0; i < nn; i++) {
            float v = x[i] * inv;
            v = v > lo ? v : lo;
            v = v < hi ? v : hi;
            y[i] = (int8_t)(int)((v + 12582912.0f) - 12582912.0f);
        }
    }
    return ASL_OK;
}

/* Build the primitive; *ok = 0 when oneDNN has no jit kernel for it. */
static asl_status build(asl_ctx *c, q_state *q, const asl_layer *pad,
                        const asl_layer *conv, asl_activation act,
                        asl_qtype xt, asl_qtype yt, int *ok)
{
    const asl_layer_desc *d = &conv->d;
    const int dw = d->kind == ASL_LAYER_DEPTHWISE_CONV2D;
    const int kh = d->kernel[0], kw = d->kernel[1];
    const int ic = conv->in[2], oc = conv->out[2];
    const int *in = pad ? pad->in : conv->in;
    int pt = 0, pb = 0, pl = 0, pr = 0;
    dnnl_memory_desc_t src = NULL, dst = NULL, w_any = NULL, w_user = NULL,
                       bias = NULL, s1 = NULL, soc = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_dims_t strides = {d->strides[0], d->strides[1]}, dilates = {
        asl_dilation(d, 0) - 1, asl_dilation(d, 1) - 1};
    dnnl_dims_t bd = {oc}, one = {1};
    const_dnnl_memory_desc_t wmd;
    asl_status st = ASL_OK;

    *ok = 0;
    if (d->padding == ASL_PAD_SAME &&
        (asl_conv_geometry(conv->in[0], kh, d->strides[0], asl_dilation(d, 0),
                           ASL_PAD_SAME, NULL, &pt, &pb) != ASL_OK ||
         asl_conv_geometry(conv->in[1], kw, d->strides[1], asl_dilation(d, 1),
                           ASL_PAD_SAME, NULL, &pl, &pr) != ASL_OK))
        return asl_fail(c, ASL_ERR_SHAPE, "int8 group: 'same' padding of "
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
                          &src, 4, xd, dnnl_type(xt), dnnl_nhwc), done);
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &dst, 4, yd, dnnl_type(yt), dnnl_nhwc), done);
        if (dw) {
            dnnl_dims_t wd = {ic, d->depth_multiplier, 1, kh, kw};
            ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                              &w_any, 5, wd, dnnl_s8, dnnl_format_tag_any), done);
            ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                              &w_user, 5, wd, dnnl_s8, dnnl_hwigo), done);
        } else {
            dnnl_dims_t wd = {oc, ic, kh, kw};
            ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                              &w_any, 4, wd, dnnl_s8, dnnl_format_tag_any), done);
            ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                              &w_user, 4, wd, dnnl_s8, dnnl_hwio), done);
        }
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &bias, 1, bd, dnnl_f32, dnnl_a), done);
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &soc, 1, bd, dnnl_f32, dnnl_a), done);
        ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(
                          &s1, 1, one, dnnl_f32, dnnl_a), done);
        ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_create(&attr), done);
        ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_set_scratchpad_mode(
                          attr, dnnl_scratchpad_mode_user), done);
        ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_set_scales_mask(
                          attr, DNNL_ARG_SRC, 0), done);
        /* per output channel: dimension 0 (oc), or 0 and 1 (groups and the
         * multiplier) of a depthwise kernel */
        ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_set_scales_mask(
                          attr, DNNL_ARG_WEIGHTS, dw ? 3 : 1), done);
        if (yt != ASL_Q_F32)
            ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_set_scales_mask(
                              attr, DNNL_ARG_DST, 0), done);
        if (act != ASL_ACT_LINEAR) {
            ASL_DNNL_GOTO(c, st, dnnl_post_ops_create(&po), done);
            ASL_DNNL_GOTO(c, st, dnnl_post_ops_append_eltwise(
                              po, act == ASL_ACT_RELU ? dnnl_eltwise_relu
                                                      : dnnl_eltwise_clip_v2,
                              0.0f, act == ASL_ACT_RELU ? 0.0f : 6.0f), done);
            ASL_DNNL_GOTO(c, st, dnnl_primitive_attr_set_post_ops(attr, po), done);
        }
        /* the one call allowed to fail: then the group runs in float32 */
        if (dnnl_convolution_forward_primitive_desc_create(
                &pd, c->engine, dnnl_forward_inference, dnnl_convolution_direct,
                src, w_any, bias, dst, strides, dilates, pad_l, pad_r,
                attr) != dnnl_success) {
            pd = NULL;
            goto done;
        }
        if (asl_pd_is_ref(pd)) goto done;
    }
    st = asl_prim_create(c, &q->prim, pd);
    if (st == ASL_OK) st = asl_mem_create(c, &q->x_m, src);
    if (st == ASL_OK) st = asl_mem_create(c, &q->y_m, dst);
    if (st == ASL_OK) st = asl_mem_create(c, &q->b_m, bias);
    if (st == ASL_OK) st = asl_mem_create(c, &q->sx_m, s1);
    if (st == ASL_OK) st = asl_mem_create(c, &q->sy_m, s1);
    if (st == ASL_OK) st = asl_mem_create(c, &q->sw_m, soc);
    if (st != ASL_OK) goto done;
    wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!wmd) {
        st = asl_fail(c, ASL_ERR_DNNL, "int8 %s: oneDNN: no weights md",
                      conv->ops->name);
        goto done;
    }
    st = asl_wmem_init(c, &q->wm, w_user, wmd, 0);
    if (st != ASL_OK) goto done;
    q->wm_ok = 1;
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
    if (soc) dnnl_memory_desc_destroy(soc);
    if (s1) dnnl_memory_desc_destroy(s1);
    return st;
}

static asl_status new_state(asl_ctx *c, void **slot, int oc, size_t wsize)
{
    q_state *q = asl_calloc(sizeof *q);
    if (!q) return asl_fail(c, ASL_ERR_NOMEM, "out of memory (int8 state)");
    q->variant = -1;
    q->wq = asl_alloc(wsize);
    q->sw = asl_alloc((size_t)oc * sizeof(float));
    *slot = q;
    if (!q->wq || !q->sw) {
        asl_int8_destroy(q);
        *slot = NULL;
        return asl_fail(c, ASL_ERR_NOMEM, "out of memory (int8 kernel of %zu "
                        "values)", wsize);
    }
    return ASL_OK;
}

asl_status asl_int8_forward(asl_ctx *c, asl_layer *g, int count, int x_f32,
                            asl_qtype xt, float sx, asl_qtype yt, float sy,
                            int *ran)
{
    const int with_pad = g[0].d.kind == ASL_LAYER_ZERO_PADDING2D;
    asl_layer *conv = &g[with_pad];
    const asl_layer *bn = &g[with_pad + 1];
    asl_activation act = count > with_pad + 2 ? g[count - 1].d.activation
                                              : ASL_ACT_LINEAR;
    const int oc = conv->out[2];
    /* 2 source x 3 destination types, padding, 3 activations: < 64 */
    const int variant = ((((int)xt - 1) * 3 + (int)yt) * 2 + with_pad) * 3 +
                        (act == ASL_ACT_RELU ? 1 : act == ASL_ACT_RELU6 ? 2 : 0);
    const void *x = g[0].x;
    asl_folded p;
    q_state *q;
    dnnl_memory_t wm;
    dnnl_exec_arg_t args[8];
    int nargs = 0;

    *ran = 0;
    if ((xt != ASL_Q_U8 && xt != ASL_Q_S8) || count < with_pad + 2 || count > with_pad + 3 ||
        (act != ASL_ACT_LINEAR && act != ASL_ACT_RELU && act != ASL_ACT_RELU6))
        return asl_fail(c, ASL_ERR_ARG, "internal: not a fusable group");
    if (!(sx > 0.0f) || !isfinite(sx) || (yt != ASL_Q_F32 &&
                                          (!(sy > 0.0f) || !isfinite(sy))))
        return asl_fail(c, ASL_ERR_ARG, "internal: int8 scales must be positive "
                        "and finite (%g, %g)", sx, sy);
    ASL_TRY(asl_fused_params(c, conv, bn, &p));
    if (!p.finite) return ASL_OK;
    if (!*p.int8) ASL_TRY(new_state(c, p.int8, oc, p.wsize));
    q = *p.int8;
    if (q->refused & (UINT64_C(1) << variant)) return ASL_OK;
    if (q->variant != variant) {
        uint64_t refused = q->refused;
        int ok;
        asl_status s;
        asl_int8_release(q);
        q->refused = refused;
        s = build(c, q, with_pad ? &g[0] : NULL, conv, act, xt, yt, &ok);
        if (s != ASL_OK || !ok) {
            asl_int8_release(q);
            q->refused = refused | (ok ? 0 : UINT64_C(1) << variant);
            return s;
        }
        q->variant = variant;
    }
    if (q->wver != p.version + 1) {
        quantize_weights(q, &p, oc);
        q->wver = p.version + 1;
    }
    ASL_TRY(asl_wmem_get(c, &q->wm, (const float *)(const void *)q->wq,
                         q->wver, &wm));
    if (x_f32) {
        const int *in = g[0].in;
        ASL_TRY(quantize_input(c, q, g[0].x,
                               (size_t)g[0].n * in[0] * in[1] * in[2], xt, sx));
        x = q->xq;
    }
    q->sx = sx;
    q->sy = sy;
    ASL_TRY(asl_mem_bind(c, q->x_m, x));
    ASL_TRY(asl_mem_bind(c, q->y_m, g[count - 1].y));
    ASL_TRY(asl_mem_bind(c, q->b_m, p.b));
    ASL_TRY(asl_mem_bind(c, q->sx_m, &q->sx));
    ASL_TRY(asl_mem_bind(c, q->sw_m, q->sw));
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, q->x_m};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, q->b_m};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, q->y_m};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, q->sx_m};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS, q->sw_m};
    if (yt != ASL_Q_F32) {
        ASL_TRY(asl_mem_bind(c, q->sy_m, &q->sy));
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_SCALES | DNNL_ARG_DST, q->sy_m};
    }
    ASL_TRY(asl_prim_exec(c, &q->prim, nargs, args));
    *ran = 1;
    return ASL_OK;
}
