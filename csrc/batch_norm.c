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
 *
 * Synchronized (Keras's synchronized=True) with a reducer set
 * (asl_net_set_allreduce: a data-parallel job whose ranks each hold a slice
 * of the global batch), training mode: the statistics are those of the
 * global batch, in double and in two passes (sums of x and the row counts,
 * reduced; then sums of (x - mean)^2, reduced), and y is oneDNN's
 * global-stats forward with them; the moving statistics move to them on
 * every rank alike.  Backward, with N the global row count, n this slice's
 * and w = n / N the weight the caller gives this slice's gradients:
 *     s1 = sum dy, s2 = sum dy * x_hat          (over this slice)
 *     A, B = the reduced sums of w * s1, w * s2 (the global batch's, in the
 *            units of the global loss)
 *     dx = gamma / sqrt(var + eps) * (dy - A / n - x_hat * B / n)
 *     d gamma = s2, d beta = s1                 (the caller weights and sums)
 * which is the batch-norm backward of the global batch expressed in this
 * slice's loss units (the one-process formula when there is one slice).
 * Each channel's sums run over the rows in order on one thread: the same
 * inputs give the same sums whatever the thread count.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

enum { BN_NONE = 0, BN_TRAIN, BN_INFER, BN_SYNC };

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
    double *acc;            /* [2c + 1] sums of the synchronized path  */
    double rows_global;     /* N of the last synchronized forward      */
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
    p->acc = asl_alloc((2 * (size_t)ch + 1) * sizeof(double));
    if (!p->bmean || !p->bvar || !p->dsink || !p->acc)
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
    asl_free(p->acc);
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

/* Keras 3: moving = moving * momentum + stat * (1 - momentum), with the
 * batch statistics of the last training forward.  weights_version is left
 * alone: it is the executor's, and nothing caches the statistics (bound
 * directly). */
static void bn_move(asl_layer *l, const bn_priv *p)
{
    const float mom = l->d.momentum, rest = 1.0f - l->d.momentum;
    float *mm = l->p[2].data, *mv = l->p[3].data;
    for (int i = 0; i < l->in[2]; i++) {
        mm[i] = mm[i] * mom + p->bmean[i] * rest;
        mv[i] = mv[i] * mom + p->bvar[i] * rest;
    }
}

/* ---- the synchronized path (see the top of the file) ---- */

#define BN_CBLK 16   /* channels per task: one 64-byte line of a row */

static size_t bn_rows(const asl_layer *l)
{
    return (size_t)l->n * (size_t)l->in[0] * (size_t)l->in[1];
}

static asl_status bn_reduce(asl_ctx *c, double *buf, size_t count)
{
    if (c->allreduce(buf, count, c->allreduce_user) != 0)
        return asl_fail(c, ASL_ERR_STATE, "batch_normalization: the allreduce of a "
                        "synchronized batch norm failed");
    return ASL_OK;
}

/* acc[ch] = sum over rows of x[r, ch] (mean == NULL) or of
 * (x[r, ch] - mean[ch])^2, in double, rows in order. */
static void bn_sums(const float *x, size_t rows, int ch, const double *mean, double *acc)
{
    const int blocks = (ch + BN_CBLK - 1) / BN_CBLK;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < blocks; b++) {
        const int c0 = b * BN_CBLK, c1 = c0 + BN_CBLK < ch ? c0 + BN_CBLK : ch;
        double s[BN_CBLK] = {0};
        for (size_t r = 0; r < rows; r++) {
            const float *row = x + r * (size_t)ch;
            for (int k = c0; k < c1; k++) {
                const double v = mean ? row[k] - mean[k] : row[k];
                s[k - c0] += mean ? v * v : v;
            }
        }
        for (int k = c0; k < c1; k++) acc[k] = s[k - c0];
    }
}

/* The global batch's mean and biased variance into p->bmean, p->bvar.
 * acc holds 2c + 1 doubles: the sums (c) and N, then the mean (c). */
static asl_status bn_sync_stats(asl_layer *l, asl_ctx *c, bn_priv *p, size_t rows)
{
    const int ch = l->in[2];
    double *sum = p->acc, *mean = p->acc + ch + 1;

    bn_sums(l->x, rows, ch, NULL, sum);
    sum[ch] = (double)rows;
    ASL_TRY(bn_reduce(c, sum, (size_t)ch + 1));
    if (!(sum[ch] >= 1.0))
        return asl_fail(c, ASL_ERR_STATE, "batch_normalization: the reduced batch has "
                        "%g rows", sum[ch]);
    p->rows_global = sum[ch];
    for (int k = 0; k < ch; k++) mean[k] = sum[k] / p->rows_global;
    bn_sums(l->x, rows, ch, mean, sum);
    ASL_TRY(bn_reduce(c, sum, (size_t)ch));
    for (int k = 0; k < ch; k++) {
        p->bmean[k] = (float)mean[k];
        p->bvar[k] = (float)(sum[k] / p->rows_global);
    }
    return ASL_OK;
}

/* dx (or only the gradients when dx is NULL) of a synchronized forward. */
static asl_status bn_sync_backward(asl_layer *l, asl_ctx *c, bn_priv *p, float *dx,
                                   float *dgamma, float *dbeta)
{
    const int ch = l->in[2], blocks = (ch + BN_CBLK - 1) / BN_CBLK;
    const size_t rows = bn_rows(l);
    const double w = (double)rows / p->rows_global;
    const float *x = l->x, *dy = l->dy, *gamma = l->p[0].data;
    double *s = p->acc;   /* s1 (c) | s2 (c) */

#pragma omp parallel for schedule(static)
    for (int b = 0; b < blocks; b++) {
        const int c0 = b * BN_CBLK, c1 = c0 + BN_CBLK < ch ? c0 + BN_CBLK : ch;
        double s1[BN_CBLK] = {0}, s2[BN_CBLK] = {0}, inv[BN_CBLK];
        for (int k = c0; k < c1; k++) inv[k - c0] = 1.0 / sqrt((double)p->bvar[k] + l->d.epsilon);
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * (size_t)ch, *dr = dy + r * (size_t)ch;
            for (int k = c0; k < c1; k++) {
                const double xh = (xr[k] - (double)p->bmean[k]) * inv[k - c0];
                s1[k - c0] += dr[k];
                s2[k - c0] += dr[k] * xh;
            }
        }
        for (int k = c0; k < c1; k++) {
            dbeta[k] = (float)s1[k - c0];
            dgamma[k] = (float)s2[k - c0];
            s[k] = w * s1[k - c0];
            s[ch + k] = w * s2[k - c0];
        }
    }
    ASL_TRY(bn_reduce(c, s, 2 * (size_t)ch));
    if (!dx) return ASL_OK;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < blocks; b++) {
        const int c0 = b * BN_CBLK, c1 = c0 + BN_CBLK < ch ? c0 + BN_CBLK : ch;
        double inv[BN_CBLK], g[BN_CBLK], a[BN_CBLK], bb[BN_CBLK];
        for (int k = c0; k < c1; k++) {
            inv[k - c0] = 1.0 / sqrt((double)p->bvar[k] + l->d.epsilon);
            g[k - c0] = gamma[k] * inv[k - c0];
            a[k - c0] = s[k] / (double)rows;
            bb[k - c0] = s[ch + k] / (double)rows;
        }
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * (size_t)ch, *dr = dy + r * (size_t)ch;
            float *o = dx + r * (size_t)ch;
            for (int k = c0; k < c1; k++) {
                const double xh = (xr[k] - (double)p->bmean[k]) * inv[k - c0];
                o[k] = (float)(g[k - c0] * (dr[k] - a[k - c0] - xh * bb[k - c0]));
            }
        }
    }
    return ASL_OK;
}

static asl_status bn_forward(asl_layer *l, asl_ctx *c, int training)
{
    bn_priv *p = l->priv;
    dnnl_exec_arg_t args[8];
    const int train = training && l->trainable;
    const int sync = train && l->d.synchronized && c->allreduce;

    if (!p || !p->fwd_train.prim)
        return asl_fail(c, ASL_ERR_STATE,
                        "batch_normalization: forward before plan");
    p->mode = BN_NONE;
    if (sync) ASL_TRY(bn_sync_stats(l, c, p, bn_rows(l)));   /* the global batch's */
    {
        const int arg[6] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_SCALE,
                            DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
        const int idx[6] = {M_X, M_Y, M_SCALE, M_SHIFT, M_MEAN, M_VAR};
        const void *data[6] = {l->x, l->y, l->p[0].data, l->p[1].data,
                               train ? (const void *)p->bmean : l->p[2].data,
                               train ? (const void *)p->bvar : l->p[3].data};
        ASL_TRY(bn_bind(c, p, 6, arg, idx, data, args));
        ASL_TRY(asl_prim_exec(c, train && !sync ? &p->fwd_train : &p->fwd_infer, 6,
                              args));
    }
    if (train) bn_move(l, p);
    p->mode = sync ? BN_SYNC : train ? BN_TRAIN : BN_INFER;
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
    if (p->mode == BN_SYNC)
        return bn_sync_backward(l, c, p, l->dx, want_grads ? l->p[0].grad : p->dsink,
                                want_grads ? l->p[1].grad : p->dsink + ch);
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

/* A data-parallel rank with no rows in this step, where the other ranks
 * train this synchronized layer: its part of the sums (zeros) in the
 * forward pass (backward = 0: then the moving statistics move to the global
 * batch's, as on the other ranks) or in the backward pass (backward = 1). */
asl_status asl_bn_sync_idle(asl_layer *l, asl_ctx *c, int backward)
{
    bn_priv *p = l->priv;
    if (!p || !c->allreduce)
        return asl_fail(c, ASL_ERR_STATE, "batch_normalization: idle step without a reducer");
    if (backward) {
        memset(p->acc, 0, 2 * (size_t)l->in[2] * sizeof(double));
        return bn_reduce(c, p->acc, 2 * (size_t)l->in[2]);
    }
    ASL_TRY(bn_sync_stats(l, c, p, 0));
    bn_move(l, p);
    p->mode = BN_NONE;   /* no forward to go back through */
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
