/*
 * pool2d.c - Keras MaxPooling2D / AveragePooling2D (pool_size = d.kernel,
 * strides = d.strides, padding 'valid' / 'same'), oneDNN pooling over NHWC.
 *
 * Geometry: asl_conv_geometry (the one home of TF's rule: 'same' gives
 * ceil(in / s) with the smaller half of the padding before).  Padding never
 * counts: max pooling takes the max of the window's real values, average
 * pooling divides by their number (TF's rule; oneDNN's
 * pooling_avg_exclude_padding).  A 'same' window always holds a real value
 * (the total padding is at most k - 1).
 *
 * Max pooling runs forward_training (oneDNN keeps the argmax in a
 * workspace) so that a backward can route dy to the max (oneDNN: the first
 * maximum of the window).  The backward primitive is made on first use.
 */
#include <string.h>

#include "internal.h"

typedef struct {
    int pad_t, pad_b, pad_l, pad_r;
    dnnl_primitive_desc_t fwd_pd, bwd_pd;
    asl_prim fwd, bwd;
    dnnl_memory_t x_m, y_m, dx_m, dy_m, ws_m;
    void *ws;          /* workspace of the last forward (max), owned */
    int fwd_done;      /* ws holds the last forward's argmax         */
} pool_priv;

static int is_max(const asl_layer *l) { return l->d.kind == ASL_LAYER_MAX_POOL; }

static asl_status pool_init(asl_layer *l, asl_ctx *c)
{
    const char *kind = l->ops->name;
    pool_priv *p;
    int oh, ow, pt, pb, pl, pr;
    asl_status st;

    if (l->in[0] <= 0 || l->in[1] <= 0 || l->in[2] <= 0)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: bad input shape (%d, %d, %d)", kind,
                        l->in[0], l->in[1], l->in[2]);
    if (l->d.kernel[0] < 1 || l->d.kernel[1] < 1 || l->d.strides[0] < 1 ||
        l->d.strides[1] < 1)
        return asl_fail(c, ASL_ERR_ARG, "%s: pool_size (%d, %d) and strides (%d, %d) "
                        "must be >= 1", kind, l->d.kernel[0], l->d.kernel[1],
                        l->d.strides[0], l->d.strides[1]);
    if (l->d.padding != ASL_PAD_VALID && l->d.padding != ASL_PAD_SAME)
        return asl_fail(c, ASL_ERR_ARG, "%s: unknown padding %d", kind, (int)l->d.padding);
    st = asl_conv_geometry(l->in[0], l->d.kernel[0], l->d.strides[0], 1, l->d.padding,
                           &oh, &pt, &pb);
    if (st == ASL_OK)
        st = asl_conv_geometry(l->in[1], l->d.kernel[1], l->d.strides[1], 1,
                               l->d.padding, &ow, &pl, &pr);
    if (st != ASL_OK)
        return asl_fail(c, ASL_ERR_SHAPE, "%s: input (%d, %d, %d) is smaller than "
                        "pool_size (%d, %d) with padding 'valid' (use padding='same' or "
                        "a smaller pool_size)", kind, l->in[0], l->in[1], l->in[2],
                        l->d.kernel[0], l->d.kernel[1]);
    l->out[0] = oh;
    l->out[1] = ow;
    l->out[2] = l->in[2];
    l->nparams = 0;
    p = asl_calloc(sizeof *p);
    if (!p) return asl_fail(c, ASL_ERR_NOMEM, "%s: out of memory", kind);
    p->pad_t = pt;
    p->pad_b = pb;
    p->pad_l = pl;
    p->pad_r = pr;
    l->priv = p;
    return ASL_OK;
}

static void mem_free(dnnl_memory_t *m)
{
    if (*m) dnnl_memory_destroy(*m);
    *m = NULL;
}

static void pool_release(asl_layer *l)
{
    pool_priv *p = l->priv;
    if (!p) return;
    if (p->fwd.prim) asl_prim_destroy(&p->fwd);
    if (p->bwd.prim) asl_prim_destroy(&p->bwd);
    if (p->fwd_pd) dnnl_primitive_desc_destroy(p->fwd_pd);
    if (p->bwd_pd) dnnl_primitive_desc_destroy(p->bwd_pd);
    p->fwd_pd = p->bwd_pd = NULL;
    mem_free(&p->x_m);
    mem_free(&p->y_m);
    mem_free(&p->dx_m);
    mem_free(&p->dy_m);
    mem_free(&p->ws_m);
    asl_free(p->ws);
    p->ws = NULL;
    p->fwd_done = 0;
}

static void pool_destroy(asl_layer *l)
{
    pool_release(l);
    asl_free(l->priv);
    l->priv = NULL;
}

typedef struct {
    dnnl_memory_desc_t src, dst;
    dnnl_dims_t strides, kernel, dil, pad_l, pad_r;
} pool_mds;

static void pool_mds_free(pool_mds *m)
{
    if (m->src) dnnl_memory_desc_destroy(m->src);
    if (m->dst) dnnl_memory_desc_destroy(m->dst);
    m->src = m->dst = NULL;
}

static asl_status pool_mds_make(asl_layer *l, asl_ctx *c, pool_mds *m)
{
    const pool_priv *p = l->priv;
    asl_status st;

    memset(m, 0, sizeof *m);
    st = asl_md_nhwc(c, &m->src, l->n, l->in[0], l->in[1], l->in[2]);
    if (st == ASL_OK) st = asl_md_nhwc(c, &m->dst, l->n, l->out[0], l->out[1], l->out[2]);
    if (st != ASL_OK) {
        pool_mds_free(m);
        return st;
    }
    m->strides[0] = l->d.strides[0];
    m->strides[1] = l->d.strides[1];
    m->kernel[0] = l->d.kernel[0];
    m->kernel[1] = l->d.kernel[1];
    m->pad_l[0] = p->pad_t;
    m->pad_l[1] = p->pad_l;
    m->pad_r[0] = p->pad_b;
    m->pad_r[1] = p->pad_r;
    return ASL_OK;
}

static dnnl_alg_kind_t pool_alg(const asl_layer *l)
{
    return is_max(l) ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding;
}

static asl_status pool_plan(asl_layer *l, asl_ctx *c)
{
    pool_priv *p = l->priv;
    pool_mds m;
    asl_status st = ASL_OK;

    if (!p) return asl_fail(c, ASL_ERR_STATE, "%s: plan before init", l->ops->name);
    pool_release(l);
    ASL_TRY(pool_mds_make(l, c, &m));
    ASL_DNNL_GOTO(c, st, dnnl_pooling_forward_primitive_desc_create(
                      &p->fwd_pd, c->engine, dnnl_forward_training, pool_alg(l), m.src,
                      m.dst, m.strides, m.kernel, m.dil, m.pad_l, m.pad_r, c->attr), done);
    st = asl_prim_create(c, &p->fwd, p->fwd_pd);
    if (st == ASL_OK) st = asl_mem_create(c, &p->x_m, m.src);
    if (st == ASL_OK) st = asl_mem_create(c, &p->y_m, m.dst);
    if (st == ASL_OK && is_max(l)) {
        const_dnnl_memory_desc_t wmd =
            dnnl_primitive_desc_query_md(p->fwd_pd, dnnl_query_workspace_md, 0);
        size_t bytes = wmd ? dnnl_memory_desc_get_size(wmd) : 0;
        if (bytes) {
            p->ws = asl_alloc(bytes);
            if (!p->ws) {
                st = asl_fail(c, ASL_ERR_NOMEM, "%s: out of memory (workspace of %zu "
                              "bytes)", l->ops->name, bytes);
                goto done;
            }
            ASL_DNNL_GOTO(c, st, dnnl_memory_create(&p->ws_m, wmd, c->engine, p->ws),
                          done);
        }
    }
done:
    pool_mds_free(&m);
    if (st != ASL_OK) pool_release(l);
    return st;
}

static asl_status pool_forward(asl_layer *l, asl_ctx *c, int training)
{
    pool_priv *p = l->priv;
    dnnl_exec_arg_t args[3];
    int nargs = 2;

    (void)training;
    if (!p || !p->fwd.prim)
        return asl_fail(c, ASL_ERR_STATE, "%s: forward before plan", l->ops->name);
    ASL_TRY(asl_mem_bind(c, p->x_m, l->x));
    ASL_TRY(asl_mem_bind(c, p->y_m, l->y));
    args[0].arg = DNNL_ARG_SRC;
    args[0].memory = p->x_m;
    args[1].arg = DNNL_ARG_DST;
    args[1].memory = p->y_m;
    if (p->ws_m) {
        args[2].arg = DNNL_ARG_WORKSPACE;
        args[2].memory = p->ws_m;
        nargs = 3;
    }
    ASL_TRY(asl_prim_exec(c, &p->fwd, nargs, args));
    p->fwd_done = 1;
    return ASL_OK;
}

static asl_status pool_plan_bwd(asl_layer *l, asl_ctx *c)
{
    pool_priv *p = l->priv;
    pool_mds m;
    asl_status st = ASL_OK;

    ASL_TRY(pool_mds_make(l, c, &m));
    ASL_DNNL_GOTO(c, st, dnnl_pooling_backward_primitive_desc_create(
                      &p->bwd_pd, c->engine, pool_alg(l), m.src, m.dst, m.strides,
                      m.kernel, m.dil, m.pad_l, m.pad_r, p->fwd_pd, c->attr), done);
    st = asl_prim_create(c, &p->bwd, p->bwd_pd);
    if (st == ASL_OK) st = asl_mem_create(c, &p->dx_m, m.src);
    if (st == ASL_OK) st = asl_mem_create(c, &p->dy_m, m.dst);
done:
    pool_mds_free(&m);
    return st;
}

static asl_status pool_backward(asl_layer *l, asl_ctx *c, int training)
{
    pool_priv *p = l->priv;
    dnnl_exec_arg_t args[3];
    int nargs = 2;

    (void)training;
    if (!l->dx) return ASL_OK;
    if (!p || !p->fwd_done)
        return asl_fail(c, ASL_ERR_STATE, "%s: backward without a forward", l->ops->name);
    if (!p->bwd.prim) ASL_TRY(pool_plan_bwd(l, c));
    ASL_TRY(asl_mem_bind(c, p->dx_m, l->dx));
    ASL_TRY(asl_mem_bind(c, p->dy_m, l->dy));
    args[0].arg = DNNL_ARG_DIFF_DST;
    args[0].memory = p->dy_m;
    args[1].arg = DNNL_ARG_DIFF_SRC;
    args[1].memory = p->dx_m;
    if (p->ws_m) {
        args[2].arg = DNNL_ARG_WORKSPACE;
        args[2].memory = p->ws_m;
        nargs = 3;
    }
    return asl_prim_exec(c, &p->bwd, nargs, args);
}

const asl_layer_ops asl_max_pool_ops = {
    .name = "max_pooling2d",
    .alias = 0,
    .init = pool_init,
    .plan = pool_plan,
    .forward = pool_forward,
    .backward = pool_backward,
    .release = pool_release,
    .destroy = pool_destroy,
};

const asl_layer_ops asl_avg_pool_ops = {
    .name = "average_pooling2d",
    .alias = 0,
    .init = pool_init,
    .plan = pool_plan,
    .forward = pool_forward,
    .backward = pool_backward,
    .release = pool_release,
    .destroy = pool_destroy,
};
