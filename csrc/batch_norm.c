/*
 * batch_norm.c - Keras BatchNormalization over the channel axis (NHWC),
 * on oneDNN batch normalization with separate scale (gamma) and shift (beta).
 *
 * Parameters, in Keras order: gamma (weight, 1), beta (weight, 0),
 * moving_mean (statistic, 0), moving_variance (statistic, 1); each (c,).
 *
 * Training mode (network training AND layer trainable):
 *   y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta with the batch mean
 *   and the BIASED batch variance (sum((x - mean)^2) / N over n*h*w), as
 *   Keras 3 computes them with ops.moments (tf.keras 2.x's fused kernel fed
 *   the moving variance with the unbiased one, N / (N - 1) larger).  Then,
 *   as Keras:  moving = moving * momentum + batch_stat * (1 - momentum)
 *   for the mean and the (biased) variance.  Backward is the full batch-norm
 *   backward (diff_src, diff_gamma, diff_beta) with the saved batch stats.
 * Inference mode (network not training, or layer frozen):
 *   y = gamma * (x - moving_mean) / sqrt(moving_variance + eps) + beta
 *   (oneDNN use_global_stats).  Backward: dx = dy * gamma / sqrt(mv + eps);
 *   a trainable layer also gets diff_gamma/diff_beta with the moving stats.
 * A frozen layer never writes gamma/beta gradients (oneDNN v3.2's
 * backward_data still demands diff_scale/diff_shift outputs when use_scale
 * is set, so they go to a private sink).  Without l->dx, diff_src goes to a
 * buffer allocated on first need and freed by release().
 *
 * Backward uses the mode of the last forward (the saved batch statistics
 * belong to it).
 */
#include <math.h>
#include <string.h>

#include "internal.h"

enum { BN_NONE = 0, BN_TRAIN, BN_INFER };

/* nhwc memories */
enum { M_X, M_Y, M_DX, M_DY, M_SCALE, M_SHIFT, M_MEAN, M_VAR, M_DSCALE,
       M_DSHIFT, M_COUNT };

typedef struct {
    asl_prim fwd_train;     /* forward_training, batch stats           */
    asl_prim fwd_infer;     /* forward_inference, global stats         */
    asl_prim bwd_train;     /* backward, batch stats                   */
    asl_prim bwd_infer;     /* backward, global stats                  */
    dnnl_memory_t m[M_COUNT];
    float *bmean, *bvar;    /* batch statistics of the last forward    */
    float *dsink;           /* [2c] diff_scale/shift of a frozen layer */
    float *dx_tmp;          /* diff_src sink when l->dx == NULL        */
    int mode;               /* BN_* of the last forward                */
} bn_priv;

static asl_status bn_init(asl_layer *l, asl_ctx *c)
{
    bn_priv *p;
    int ch = l->in[2];
    float *g, *v;

    if (l->in[0] <= 0 || l->in[1] <= 0 || ch <= 0)
        return asl_fail(c, ASL_ERR_SHAPE,
                        "batch_normalization: bad input shape (%d, %d, %d)",
                        l->in[0], l->in[1], l->in[2]);
    if (!(l->d.epsilon > 0.0f) || !isfinite(l->d.epsilon))
        return asl_fail(c, ASL_ERR_ARG,
                        "batch_normalization: epsilon must be a positive "
                        "finite number (got %g)", (double)l->d.epsilon);
    if (!isfinite(l->d.momentum))
        return asl_fail(c, ASL_ERR_ARG,
                        "batch_normalization: momentum must be finite (got %g)",
                        (double)l->d.momentum);
    memcpy(l->out, l->in, sizeof l->out);

    ASL_TRY(asl_param_declare(c, l, 0, "gamma", 1, 1, &ch));
    ASL_TRY(asl_param_declare(c, l, 1, "beta", 1, 1, &ch));
    ASL_TRY(asl_param_declare(c, l, 2, "moving_mean", 0, 1, &ch));
    ASL_TRY(asl_param_declare(c, l, 3, "moving_variance", 0, 1, &ch));
    g = l->p[0].data;
    v = l->p[3].data;
    for (int i = 0; i < ch; i++) {
        g[i] = 1.0f;
        v[i] = 1.0f;
    }

    p = asl_calloc(sizeof *p);
    if (!p)
        return asl_fail(c, ASL_ERR_NOMEM, "batch_normalization: out of memory");
    l->priv = p;
    p->bmean = asl_alloc((size_t)ch * sizeof(float));
    p->bvar = asl_alloc((size_t)ch * sizeof(float));
    p->dsink = asl_alloc(2 * (size_t)ch * sizeof(float));
    if (!p->bmean || !p->bvar || !p->dsink)
        return asl_fail(c, ASL_ERR_NOMEM,
                        "batch_normalization: out of memory (%d channels)", ch);
    return ASL_OK;
}

static void bn_release(asl_layer *l)
{
    bn_priv *p = l->priv;

    if (!p) return;
    asl_prim_destroy(&p->fwd_train);
    asl_prim_destroy(&p->fwd_infer);
    asl_prim_destroy(&p->bwd_train);
    asl_prim_destroy(&p->bwd_infer);
    for (int i = 0; i < M_COUNT; i++) {
        if (p->m[i]) dnnl_memory_destroy(p->m[i]);
        p->m[i] = NULL;
    }
    asl_free(p->dx_tmp);
    p->dx_tmp = NULL;
    p->mode = BN_NONE;
}

static void bn_destroy(asl_layer *l)
{
    bn_priv *p = l->priv;

    if (!p) return;
    bn_release(l);
    asl_free(p->bmean);
    asl_free(p->bvar);
    asl_free(p->dsink);
    asl_free(p);
    l->priv = NULL;
}

static asl_status bn_plan(asl_layer *l, asl_ctx *c)
{
    bn_priv *p = l->priv;
    dnnl_memory_desc_t md = NULL, cmd = NULL;
    dnnl_primitive_desc_t fwd_t = NULL, fwd_i = NULL, pd = NULL;
    dnnl_dims_t cdims = {l->in[2]};
    const unsigned ss = dnnl_use_scale | dnnl_use_shift;
    const unsigned gss = ss | dnnl_use_global_stats;
    const float eps = l->d.epsilon;
    asl_status st = ASL_OK;

    if (!p)
        return asl_fail(c, ASL_ERR_STATE, "batch_normalization: plan before init");
    bn_release(l);

    st = asl_md_nhwc(c, &md, l->n, l->in[0], l->in[1], l->in[2]);
    if (st != ASL_OK) goto done;
    ASL_DNNL_GOTO(c, st, dnnl_memory_desc_create_with_tag(&cmd, 1, cdims,
                                                          dnnl_f32, dnnl_a),
                  done);
    for (int i = 0; i < M_COUNT; i++) {
        st = asl_mem_create(c, &p->m[i], i <= M_DY ? md : cmd);
        if (st != ASL_OK) goto done;
    }

    ASL_DNNL_GOTO(c, st, dnnl_batch_normalization_forward_primitive_desc_create(
                      &fwd_t, c->engine, dnnl_forward_training, md, md, eps,
                      ss, c->attr), done);
    st = asl_prim_create(c, &p->fwd_train, fwd_t);
    if (st != ASL_OK) goto done;

    ASL_DNNL_GOTO(c, st, dnnl_batch_normalization_forward_primitive_desc_create(
                      &fwd_i, c->engine, dnnl_forward_inference, md, md, eps,
                      gss, c->attr), done);
    st = asl_prim_create(c, &p->fwd_infer, fwd_i);
    if (st != ASL_OK) goto done;

    ASL_DNNL_GOTO(c, st, dnnl_batch_normalization_backward_primitive_desc_create(
                      &pd, c->engine, dnnl_backward, md, md, md, eps, ss,
                      fwd_t, c->attr), done);
    st = asl_prim_create(c, &p->bwd_train, pd);
    dnnl_primitive_desc_destroy(pd);
    pd = NULL;
    if (st != ASL_OK) goto done;

    /* The global-stats backward needs a forward hint with the same flags;
     * a forward_training pd with use_global_stats serves (no workspace). */
    dnnl_primitive_desc_destroy(fwd_t);
    fwd_t = NULL;
    ASL_DNNL_GOTO(c, st, dnnl_batch_normalization_forward_primitive_desc_create(
                      &fwd_t, c->engine, dnnl_forward_training, md, md, eps,
                      gss, c->attr), done);
    ASL_DNNL_GOTO(c, st, dnnl_batch_normalization_backward_primitive_desc_create(
                      &pd, c->engine, dnnl_backward, md, md, md, eps, gss,
                      fwd_t, c->attr), done);
    st = asl_prim_create(c, &p->bwd_infer, pd);
    if (st != ASL_OK) goto done;

done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (fwd_t) dnnl_primitive_desc_destroy(fwd_t);
    if (fwd_i) dnnl_primitive_desc_destroy(fwd_i);
    if (cmd) dnnl_memory_desc_destroy(cmd);
    if (md) dnnl_memory_desc_destroy(md);
    if (st != ASL_OK) {
        /* keep the error message; free what was made */
        bn_release(l);
    }
    return st;
}

/* Bind the memories named in idx[] to data[] and build exec args. */
static asl_status bn_bind(asl_ctx *c, bn_priv *p, int nargs, const int *arg,
                          const int *idx, const void *const *data,
                          dnnl_exec_arg_t *args)
{
    for (int i = 0; i < nargs; i++) {
        ASL_TRY(asl_mem_bind(c, p->m[idx[i]], data[i]));
        args[i].arg = arg[i];
        args[i].memory = p->m[idx[i]];
    }
    return ASL_OK;
}

static asl_status bn_forward(asl_layer *l, asl_ctx *c, int training)
{
    bn_priv *p = l->priv;
    dnnl_exec_arg_t args[8];
    const int ch = l->in[2];
    const int train = training && l->trainable;

    if (!p || !p->fwd_train.prim)
        return asl_fail(c, ASL_ERR_STATE,
                        "batch_normalization: forward before plan");
    p->mode = BN_NONE;
    {
        const int arg[6] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_SCALE,
                            DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
        const int idx[6] = {M_X, M_Y, M_SCALE, M_SHIFT, M_MEAN, M_VAR};
        const void *data[6] = {l->x, l->y, l->p[0].data, l->p[1].data,
                               train ? (const void *)p->bmean : l->p[2].data,
                               train ? (const void *)p->bvar : l->p[3].data};
        ASL_TRY(bn_bind(c, p, 6, arg, idx, data, args));
        ASL_TRY(asl_prim_exec(c, train ? &p->fwd_train : &p->fwd_infer, 6,
                              args));
    }
    if (train) {
        /* Keras 3: moving = moving * momentum + stat * (1 - momentum). */
        const float mom = l->d.momentum, rest = 1.0f - l->d.momentum;
        float *mm = l->p[2].data, *mv = l->p[3].data;
        for (int i = 0; i < ch; i++) {
            mm[i] = mm[i] * mom + p->bmean[i] * rest;
            mv[i] = mv[i] * mom + p->bvar[i] * rest;
        }
        /* weights_version is left alone: it is the executor's (optimizer
         * steps), and nothing caches the statistics (bound directly). */
    }
    p->mode = train ? BN_TRAIN : BN_INFER;
    return ASL_OK;
}

static asl_status bn_backward(asl_layer *l, asl_ctx *c, int training)
{
    bn_priv *p = l->priv;
    dnnl_exec_arg_t args[8];
    const int want_grads = l->trainable;
    const int ch = l->in[2];
    float *dsrc = l->dx;
    asl_prim *prim;

    (void)training;   /* the mode of the last forward decides */
    if (!p || p->mode == BN_NONE)
        return asl_fail(c, ASL_ERR_STATE,
                        "batch_normalization: backward without a forward");
    if (!want_grads && !l->dx) return ASL_OK;
    if (want_grads && (!l->p[0].grad || !l->p[1].grad))
        return asl_fail(c, ASL_ERR_STATE,
                        "batch_normalization: trainable layer without "
                        "gradient storage for gamma/beta");
    if (!dsrc) {
        /* oneDNN always writes diff_src; give it a sink. */
        if (!p->dx_tmp) {
            size_t count = (size_t)l->n * (size_t)l->in[0] *
                           (size_t)l->in[1] * (size_t)l->in[2];
            p->dx_tmp = asl_alloc(count * sizeof(float));
            if (!p->dx_tmp)
                return asl_fail(c, ASL_ERR_NOMEM,
                                "batch_normalization: out of memory (diff_src "
                                "of %d x %d x %d x %d)",
                                l->n, l->in[0], l->in[1], l->in[2]);
        }
        dsrc = p->dx_tmp;
    }

    /* oneDNN v3.2's backward_data still counts diff_scale/diff_shift as
     * outputs when use_scale is set, so a frozen layer runs the full
     * backward with its gamma/beta gradients going to a private sink. */
    prim = p->mode == BN_TRAIN ? &p->bwd_train : &p->bwd_infer;

    {
        const int arg[8] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC,
                            DNNL_ARG_SCALE, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE,
                            DNNL_ARG_DIFF_SCALE, DNNL_ARG_DIFF_SHIFT};
        const int idx[8] = {M_X, M_DY, M_DX, M_SCALE, M_MEAN, M_VAR,
                            M_DSCALE, M_DSHIFT};
        const int train = p->mode == BN_TRAIN;
        const void *data[8] = {l->x, l->dy, dsrc, l->p[0].data,
                               train ? (const void *)p->bmean : l->p[2].data,
                               train ? (const void *)p->bvar : l->p[3].data,
                               want_grads ? l->p[0].grad : p->dsink,
                               want_grads ? l->p[1].grad : p->dsink + ch};
        ASL_TRY(bn_bind(c, p, 8, arg, idx, data, args));
        ASL_TRY(asl_prim_exec(c, prim, 8, args));
    }
    return ASL_OK;
}

const asl_layer_ops asl_batch_norm_ops = {
    .name = "batch_normalization",
    .alias = 0,
    .init = bn_init,
    .plan = bn_plan,
    .forward = bn_forward,
    .backward = bn_backward,
    .release = bn_release,
    .destroy = bn_destroy,
};
