/* network.c - the executor: a chain of layers (with residual adds: an add
 * layer also reads the output of an earlier layer), its buffers, forward,
 * backward (stopping at the earliest trainable layer), loss and optimizer
 * steps.  A call computes the batch it is given, over the layer range it
 * is given; the caller decides the split (aslnet's batched inference runs
 * the early layers one image at a time, then the rest on the batch).
 *
 * Residual adds and other merges (add.c, merge.c: ops.merge).  The output
 * of a merge's source layer (is_source) is kept in the layer's own buffer
 * (never a transient one, never skipped inside a fused group) until the
 * merge reads it.  Backward: the merge writes the previous layer's
 * gradient (and, with ops.grad2, the source's part into its own dx2);
 * once the chain above the source has written the source's output
 * gradient, the executor adds the merge's dy (an add) or dx2 to it (the
 * two paths' contributions, summed).
 *
 * Any input size.  A net created with h and/or w = ASL_ANY_SIZE keeps its
 * layers' shapes with -1 where they follow the input size (any_in,
 * any_out), found at asl_net_add by running the layer's init at two probe
 * input sizes (a layer whose parameters differ between them is refused).
 * Per input size it keeps a size state: each layer's concrete in/out, its
 * priv (made by running init on a copy of the layer at that size), its
 * fused-group state and planned batch size.  asl_net_set_input_size swaps a
 * state into the layers (making it the first time); primitives are then
 * planned lazily by the forwards, as for a fixed net, and stay in the
 * state, so alternating sizes plans each size once.  Parameters, gradients,
 * optimizer slots, trainable flags, versions and RNG state live in the
 * layers and are shared by every size.  A fixed-size net has no size
 * states: its layers hold their own priv, as always. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

#ifdef ASL_SCIPY_OPENBLAS
void scipy_openblas_set_num_threads(int num_threads);
#define ASL_BLAS_THREADS scipy_openblas_set_num_threads
#else
void openblas_set_num_threads(int num_threads);
#define ASL_BLAS_THREADS openblas_set_num_threads
#endif

/* Shapes, priv and plans of every layer at one input size (see above). */
typedef struct {
    int h, w;                /* input size; 0: slot unused              */
    uint64_t used;           /* last activation (LRU clock)             */
    int (*io)[6];            /* per layer: in[3], out[3]                */
    void **priv, **fusion;   /* per layer                               */
    int *n;                  /* per layer: planned batch size           */
} size_state;

/* Probe input sizes of a net of any size (see asl_net_add): two sizes
 * every MobileNet-like chain takes, different modulo 2, 4, ..., 32. */
static const int probe_size[2][2] = {{224, 224}, {257, 263}};

struct asl_net {
    asl_ctx ctx;
    int in[3];               /* -1 (ASL_ANY_SIZE): any size             */
    int dynamic;             /* in[0] or in[1] is ASL_ANY_SIZE          */
    int probe[2][3];         /* dynamic: last layer's output at the two */
                             /* probe sizes (the net input if empty)    */
    int min_in[2];           /* smallest input size accepted            */
    size_state sizes[ASL_MAX_SIZES];
    int cur;                 /* size state swapped into the layers, -1  */
    uint64_t clock;
    int64_t plans;           /* forwards that built primitives          */
    int nlayers, cap;
    asl_layer *layers;
    int n;                   /* planned batch size, 0 = none            */
    int forward_done;        /* a forward ran since the last plan        */
    int forward_start;       /* first layer that forward ran             */
    int last_training;       /* mode of that forward                     */
    int input_finite;        /* that forward's input holds no NaN/Inf    */
    int fused_hi;            /* highest layer whose output that forward  */
                             /* left unavailable (fused or transient)    */
    float *tmp[2];           /* transient outputs: ping-pong buffers for */
    size_t tmp_cap;          /* outputs no backward will read (floats)   */
    float *input;            /* copy of the forward's input (backward    */
    size_t input_size;       /* reads it after the caller's is gone)     */
    uint64_t version;        /* parameter version (see weights_changed)  */
    asl_optimizer_desc opt;
    int has_opt;
    int64_t iterations;
    float *range;            /* int8: (min, max) of the input of layer i */
    int nrange;              /* at 2i, 2i+1 (i = nlayers: the output);   */
                             /* nlayers + 1 when set, else 0             */
    int calibrating;         /* a forward records them (float32, unfused) */
    asl_grad_flat flat;      /* gradients in one buffer, once asked for  */
};

static const asl_layer_ops *ops_for(asl_layer_kind k)
{
    switch (k) {
    case ASL_LAYER_CONV2D: return &asl_conv2d_ops;
    case ASL_LAYER_DEPTHWISE_CONV2D: return &asl_depthwise_conv2d_ops;
    case ASL_LAYER_ZERO_PADDING2D: return &asl_zero_padding2d_ops;
    case ASL_LAYER_BATCH_NORM: return &asl_batch_norm_ops;
    case ASL_LAYER_ACTIVATION: return &asl_activation_ops;
    case ASL_LAYER_GLOBAL_AVG_POOL: return &asl_global_avg_pool_ops;
    case ASL_LAYER_GLOBAL_MAX_POOL: return &asl_global_max_pool_ops;
    case ASL_LAYER_DROPOUT: return &asl_dropout_ops;
    case ASL_LAYER_RESHAPE: return &asl_reshape_ops;
    case ASL_LAYER_DENSE: return &asl_dense_ops;
    case ASL_LAYER_ADD: return &asl_add_ops;
    case ASL_LAYER_MAX_POOL: return &asl_max_pool_ops;
    case ASL_LAYER_AVG_POOL: return &asl_avg_pool_ops;
    case ASL_LAYER_RESCALING: return &asl_rescaling_ops;
    case ASL_LAYER_RESIZING: return &asl_resizing_ops;
    case ASL_LAYER_CENTER_CROP: return &asl_center_crop_ops;
    case ASL_LAYER_RANDOM_FLIP: return &asl_random_flip_ops;
    case ASL_LAYER_RANDOM_AFFINE: return &asl_random_affine_ops;
    case ASL_LAYER_RANDOM_CONTRAST: return &asl_random_contrast_ops;
    case ASL_LAYER_SEPARABLE_CONV2D: return &asl_separable_conv2d_ops;
    case ASL_LAYER_MULTIPLY: return &asl_multiply_ops;
    case ASL_LAYER_CONCATENATE: return &asl_concatenate_ops;
    }
    return NULL;
}

static size_t numel(const int s[3]) { return (size_t)s[0] * s[1] * s[2]; }

/* Floats of a batch of `s`, rounded up to 64 bytes: every buffer starts
 * aligned, so results never depend on where a tensor lives. */
static size_t padded(int n, const int s[3]) { return ((size_t)n * numel(s) + 15) & ~(size_t)15; }

static const int *net_out(const asl_net *net)
{
    return net->nlayers ? net->layers[net->nlayers - 1].out : net->in;
}

asl_status asl_net_create(asl_net **out, int h, int w, int c)
{
    asl_net *net;
    dnnl_status_t s;

    *out = NULL;
    if ((h < 1 && h != ASL_ANY_SIZE) || (w < 1 && w != ASL_ANY_SIZE) || c < 1)
        return ASL_ERR_ARG;
    net = calloc(1, sizeof *net);
    if (!net) return ASL_ERR_NOMEM;
    net->in[0] = h;
    net->in[1] = w;
    net->in[2] = c;
    net->dynamic = h == ASL_ANY_SIZE || w == ASL_ANY_SIZE;
    for (int k = 0; k < 2; k++) {
        net->probe[k][0] = h == ASL_ANY_SIZE ? probe_size[k][0] : h;
        net->probe[k][1] = w == ASL_ANY_SIZE ? probe_size[k][1] : w;
        net->probe[k][2] = c;
    }
    net->min_in[0] = net->min_in[1] = 1;
    net->cur = -1;
    net->ctx.num_threads = 0;
    s = dnnl_engine_create(&net->ctx.engine, dnnl_cpu, 0);
    if (s == dnnl_success)
        s = dnnl_stream_create(&net->ctx.stream, net->ctx.engine,
                               dnnl_stream_default_flags);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&net->ctx.attr);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_set_scratchpad_mode(net->ctx.attr,
                                                    dnnl_scratchpad_mode_user);
    if (s != dnnl_success) {
        asl_net_destroy(net);
        return ASL_ERR_DNNL;
    }
    *out = net;
    return ASL_OK;
}

/* ---- size states (nets of any input size) ---------------------------- */

/* Free the state's layer privs (not active: they are not in the layers). */
static void drop_size(asl_net *net, int k)
{
    size_state *s = &net->sizes[k];
    for (int i = 0; s->priv && i < net->nlayers; i++) {
        asl_layer t = net->layers[i];
        if (!s->priv[i] && !s->fusion[i]) continue;
        t.priv = s->priv[i];
        t.fusion = s->fusion[i];
        t.n = s->n[i];
        memcpy(t.in, s->io[i], sizeof t.in);
        memcpy(t.out, s->io[i] + 3, sizeof t.out);
        if (t.ops->release) t.ops->release(&t);
        if (t.ops->destroy) t.ops->destroy(&t);
    }
    free(s->io);
    free(s->priv);
    free(s->fusion);
    free(s->n);
    memset(s, 0, sizeof *s);
}

/* Put the active state's layer state back into it; the layers get their
 * any-size shapes and no priv. */
static void deactivate(asl_net *net)
{
    size_state *s;
    if (net->cur < 0) return;
    s = &net->sizes[net->cur];
    for (int i = 0; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        s->priv[i] = l->priv;
        s->fusion[i] = l->fusion;
        s->n[i] = l->n;
        l->priv = l->fusion = NULL;
        l->n = 0;
        l->y = NULL;
        l->dy = NULL;
        l->x2 = NULL;
        memcpy(l->in, l->any_in, sizeof l->in);
        memcpy(l->out, l->any_out, sizeof l->out);
        if (l->ops->merge) memcpy(l->in2, net->layers[l->d.source].any_out, sizeof l->in2);
    }
    net->cur = -1;
    net->forward_done = 0;
}

static void activate(asl_net *net, int k)
{
    size_state *s = &net->sizes[k];
    s->used = ++net->clock;
    if (net->cur == k) return;
    deactivate(net);
    for (int i = 0; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        l->priv = s->priv[i];
        l->fusion = s->fusion[i];
        l->n = s->n[i];
        s->priv[i] = s->fusion[i] = NULL;   /* the layer owns them now */
        memcpy(l->in, s->io[i], sizeof l->in);
        memcpy(l->out, s->io[i] + 3, sizeof l->out);
        if (l->ops->merge) memcpy(l->in2, s->io[l->d.source] + 3, sizeof l->in2);
    }
    net->cur = k;
    net->forward_done = 0;
}

static int same_params(const asl_layer *a, const asl_layer *b)
{
    if (a->nparams != b->nparams) return 0;
    for (int j = 0; j < a->nparams; j++) {
        if (a->p[j].ndim != b->p[j].ndim) return 0;
        for (int k = 0; k < a->p[j].ndim; k++)
            if (a->p[j].dims[k] != b->p[j].dims[k]) return 0;
    }
    return 1;
}

/* Run layer l's init on a copy t with input shape `in` (and a merge's
 * second input shape `in2`; NULL for other layers) (t gets out and priv);
 * the copy's own parameters are freed, and must have the shapes of l's.
 * On failure nothing is left allocated. */
static asl_status init_copy(asl_net *net, const asl_layer *l, int index, const int in[3],
                            const int *in2, asl_layer *t)
{
    asl_ctx *c = &net->ctx;
    asl_status st;
    int params_ok;

    *t = *l;
    memcpy(t->in, in, sizeof t->in);
    if (in2) memcpy(t->in2, in2, sizeof t->in2);
    memset(t->p, 0, sizeof t->p);
    t->nparams = 0;
    t->priv = t->fusion = NULL;
    t->n = 0;
    st = l->ops->init(t, c);
    if (st != ASL_OK) {   /* name the layer */
        char why[ASL_ERRLEN];
        snprintf(why, sizeof why, "%s", c->err);
        asl_fail(c, st, "layer %d: %s", index, why);
    }
    params_ok = same_params(l, t);
    for (int j = 0; j < ASL_MAX_PARAMS; j++) asl_free(t->p[j].own);
    memset(t->p, 0, sizeof t->p);
    if (st == ASL_OK && !params_ok)
        st = asl_fail(c, ASL_ERR_SHAPE,
                      "layer %d (%s): its parameters depend on the input size, so it "
                      "needs a fixed-size input (e.g. global pooling before a dense "
                      "layer, or a network of fixed input size)", index, l->ops->name);
    if (st == ASL_OK && (t->out[0] < 1 || t->out[1] < 1 || t->out[2] < 1))
        st = asl_fail(c, ASL_ERR_SHAPE, "layer %d (%s): empty output", index, l->ops->name);
    if (st == ASL_OK && (int64_t)t->out[0] * t->out[1] * t->out[2] > INT_MAX)
        st = asl_fail(c, ASL_ERR_SHAPE, "layer %d (%s): output (%d, %d, %d) is too large",
                      index, l->ops->name, t->out[0], t->out[1], t->out[2]);
    if (st != ASL_OK && l->ops->destroy) l->ops->destroy(t);
    return st;
}

/* A merge's input (the previous layer's output) and its source's output
 * must have one shape (a concatenation: one height and width). */
static asl_status check_merge_shapes(asl_net *net, int index, const int in[3],
                                     const int src[3], const int *probe)
{
    char at[64] = "";
    const asl_layer *l = &net->layers[index];
    int concat = l->d.kind == ASL_LAYER_CONCATENATE;
    if (memcmp(in, src, (concat ? 2 : 3) * sizeof(int)) == 0) return ASL_OK;
    if (probe) snprintf(at, sizeof at, " at input size %dx%d", probe[0], probe[1]);
    return asl_fail(&net->ctx, ASL_ERR_SHAPE,
                    "%s (layer %d): the previous layer's output (%d, %d, %d) and the "
                    "output of its source, layer %d, (%d, %d, %d) differ%s; %s",
                    l->ops->name, index, in[0], in[1], in[2], l->d.source, src[0], src[1],
                    src[2], at, concat ? "a concatenation along channels needs two tensors "
                    "of one height and width" : "it needs two tensors of one shape");
}

/* The size state of input size h x w, made if new (every layer's init at
 * that size; the least recently used state is dropped when all are in
 * use).  *k: its index. */
static asl_status make_size(asl_net *net, int h, int w, int *k)
{
    asl_ctx *c = &net->ctx;
    size_state *s;
    int in[3] = {h, w, net->in[2]}, slot = -1;
    char why[ASL_ERRLEN];

    for (int j = 0; j < ASL_MAX_SIZES; j++)
        if (net->sizes[j].h == h && net->sizes[j].w == w) {
            *k = j;
            return ASL_OK;
        }
    if (h < net->min_in[0] || w < net->min_in[1])
        return asl_fail(c, ASL_ERR_SHAPE,
                        "input size %dx%d is below this network's minimum %dx%d",
                        h, w, net->min_in[0], net->min_in[1]);
    for (int j = 0; j < ASL_MAX_SIZES && slot < 0; j++)
        if (!net->sizes[j].h) slot = j;
    if (slot < 0) {   /* evict the least recently used, never the active one */
        for (int j = 0; j < ASL_MAX_SIZES; j++)
            if (j != net->cur && (slot < 0 || net->sizes[j].used < net->sizes[slot].used))
                slot = j;
        drop_size(net, slot);
    }
    s = &net->sizes[slot];
    s->io = calloc((size_t)net->nlayers + 1, sizeof *s->io);
    s->priv = calloc((size_t)net->nlayers + 1, sizeof *s->priv);
    s->fusion = calloc((size_t)net->nlayers + 1, sizeof *s->fusion);
    s->n = calloc((size_t)net->nlayers + 1, sizeof *s->n);
    if (!s->io || !s->priv || !s->fusion || !s->n) {
        drop_size(net, slot);
        return asl_fail(c, ASL_ERR_NOMEM, "out of memory (state of input size %dx%d)", h, w);
    }
    for (int i = 0; i < net->nlayers; i++) {
        const asl_layer *l = &net->layers[i];
        asl_layer t;
        const int *in2 = l->ops->merge ? s->io[l->d.source] + 3 : NULL;
        asl_status st = init_copy(net, l, i, in, in2, &t);
        if (st == ASL_OK && l->ops->merge) {
            st = check_merge_shapes(net, i, t.in, s->io[l->d.source] + 3, NULL);
            if (st != ASL_OK && t.ops->destroy) t.ops->destroy(&t);
        }
        if (st != ASL_OK) {
            snprintf(why, sizeof why, "%s", c->err);
            drop_size(net, slot);
            return asl_fail(c, st, "input size %dx%d does not fit this network: %s", h, w,
                            why);
        }
        memcpy(s->io[i], t.in, sizeof t.in);
        memcpy(s->io[i] + 3, t.out, sizeof t.out);
        s->priv[i] = t.priv;
        memcpy(in, t.out, sizeof in);
    }
    s->h = h;
    s->w = w;
    s->used = ++net->clock;
    *k = slot;
    return ASL_OK;
}

asl_status asl_net_set_min_input_size(asl_net *net, int h, int w)
{
    if (h < 1 || w < 1)
        return asl_fail(&net->ctx, ASL_ERR_ARG, "minimum input size must be positive, "
                        "got %dx%d", h, w);
    for (int k = 0; k < ASL_MAX_SIZES; k++)   /* kept sizes now below it */
        if (net->sizes[k].h && (net->sizes[k].h < h || net->sizes[k].w < w)) {
            if (k == net->cur) deactivate(net);
            drop_size(net, k);
        }
    net->min_in[0] = h;
    net->min_in[1] = w;
    return ASL_OK;
}

/* Is h x w an input size of this net (a fixed net: its own)? */
static asl_status check_size(asl_net *net, int h, int w)
{
    if ((net->in[0] != ASL_ANY_SIZE && h != net->in[0]) ||
        (net->in[1] != ASL_ANY_SIZE && w != net->in[1]) || h < 1 || w < 1)
        return asl_fail(&net->ctx, ASL_ERR_SHAPE,
                        "input size %dx%d: this network takes %d x %d (-1: any)", h, w,
                        net->in[0], net->in[1]);
    if (!net->dynamic && (h < net->min_in[0] || w < net->min_in[1]))
        return asl_fail(&net->ctx, ASL_ERR_SHAPE,
                        "input size %dx%d is below this network's minimum %dx%d",
                        h, w, net->min_in[0], net->min_in[1]);
    return ASL_OK;
}

asl_status asl_net_set_input_size(asl_net *net, int h, int w)
{
    int k;
    ASL_TRY(check_size(net, h, w));
    if (!net->dynamic) return ASL_OK;
    if (net->cur >= 0 && net->sizes[net->cur].h == h && net->sizes[net->cur].w == w) {
        net->sizes[net->cur].used = ++net->clock;
        return ASL_OK;
    }
    ASL_TRY(make_size(net, h, w, &k));
    activate(net, k);
    return ASL_OK;
}

void asl_net_input_size(const asl_net *net, int *h, int *w)
{
    if (!net->dynamic) {
        *h = net->in[0];
        *w = net->in[1];
    } else if (net->cur >= 0) {
        *h = net->sizes[net->cur].h;
        *w = net->sizes[net->cur].w;
    } else {
        *h = *w = 0;
    }
}

int asl_net_num_sizes(const asl_net *net)
{
    int count = 0;
    for (int k = 0; k < ASL_MAX_SIZES; k++) count += net->sizes[k].h > 0;
    return count;
}

asl_status asl_net_size(const asl_net *net, int j, int *h, int *w)
{
    int count = 0;
    for (int k = 0; k < ASL_MAX_SIZES; k++) {
        if (!net->sizes[k].h) continue;
        if (count++ == j) {
            *h = net->sizes[k].h;
            *w = net->sizes[k].w;
            return ASL_OK;
        }
    }
    return asl_fail((asl_ctx *)&net->ctx, ASL_ERR_ARG, "size index %d out of range", j);
}

int64_t asl_net_num_plans(const asl_net *net) { return net->plans; }

/* Free every layer's primitives and buffers (on a change of layers or
 * thread count, and at the end). */
static void unplan(asl_net *net)
{
    deactivate(net);
    for (int k = 0; k < ASL_MAX_SIZES; k++)
        if (net->sizes[k].h) drop_size(net, k);
    for (int i = 0; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        if (l->ops->release) l->ops->release(l);
        l->n = 0;
        asl_free(l->ybuf);
        asl_free(l->dybuf);
        asl_free(l->dx2buf);
        l->ybuf = l->dybuf = l->dx2buf = NULL;
        l->ybuf_cap = l->dybuf_cap = l->dx2buf_cap = 0;
        l->dx2 = NULL;
        l->y = NULL;
        l->dy = NULL;
    }
    for (int k = 0; k < 2; k++) {
        asl_free(net->tmp[k]);
        net->tmp[k] = NULL;
    }
    net->tmp_cap = 0;
    asl_free(net->input);
    net->input = NULL;
    net->input_size = 0;
    net->n = 0;
    net->forward_done = 0;
}

void asl_net_destroy(asl_net *net)
{
    if (!net) return;
    unplan(net);
    for (int i = 0; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        if (l->ops->destroy) l->ops->destroy(l);
        for (int j = 0; j < l->nparams; j++) {
            asl_free(l->p[j].own);
            if (!asl_grad_flat_owns(&net->flat, l->p[j].grad)) asl_free(l->p[j].grad);
            for (int k = 0; k < ASL_OPT_MAX_SLOTS; k++) asl_free(l->p[j].slot[k]);
        }
    }
    asl_grad_flat_release(&net->flat);
    free(net->layers);
    free(net->range);
    asl_free(net->ctx.scratch);
    if (net->ctx.attr) dnnl_primitive_attr_destroy(net->ctx.attr);
    if (net->ctx.stream) dnnl_stream_destroy(net->ctx.stream);
    if (net->ctx.engine) dnnl_engine_destroy(net->ctx.engine);
    free(net);
}

const char *asl_net_last_error(const asl_net *net)
{
    return net ? net->ctx.err : "no network";
}

static void free_layer_params(asl_layer *l)
{
    for (int j = 0; j < ASL_MAX_PARAMS; j++) {
        asl_free(l->p[j].own);
        l->p[j].own = NULL;
    }
}

/* Layer l (being added to a net of any size, initialised at the first
 * probe size) at the second probe size: its any-size shapes are -1 where
 * the two differ.  Leaves l without priv (size states hold them). */
static asl_status add_any_size(asl_net *net, asl_layer *l)
{
    const int i = net->nlayers;
    asl_layer t;
    const int *in2 = l->ops->merge ? net->layers[l->d.source].probe_out[1] : NULL;
    asl_status st = init_copy(net, l, i, net->probe[1], in2, &t);
    if (st != ASL_OK) return st;
    if (t.ops->destroy) t.ops->destroy(&t);
    if (l->ops->merge) {   /* matching shapes at both probe sizes */
        const asl_layer *src = &net->layers[l->d.source];
        for (int k = 0; k < 2; k++) {
            int at[2] = {net->in[0] < 0 ? probe_size[k][0] : net->in[0],
                         net->in[1] < 0 ? probe_size[k][1] : net->in[1]};
            ASL_TRY(check_merge_shapes(net, i, k ? t.in : l->in, src->probe_out[k], at));
        }
    }
    for (int k = 0; k < 3; k++) l->any_out[k] = l->out[k] == t.out[k] ? l->out[k] : -1;
    memcpy(l->probe_out[0], l->out, sizeof l->out);
    memcpy(l->probe_out[1], t.out, sizeof t.out);
    memcpy(net->probe[0], l->out, sizeof l->out);
    memcpy(net->probe[1], t.out, sizeof t.out);
    if (l->ops->destroy) l->ops->destroy(l);   /* its priv was the probe's */
    l->priv = l->fusion = NULL;
    memcpy(l->in, l->any_in, sizeof l->in);
    memcpy(l->out, l->any_out, sizeof l->out);
    if (l->ops->merge) memcpy(l->in2, net->layers[l->d.source].any_out, sizeof l->in2);
    return ASL_OK;
}

asl_status asl_net_add(asl_net *net, const asl_layer_desc *desc)
{
    asl_ctx *c = &net->ctx;
    asl_layer *l;
    const asl_layer_ops *ops = ops_for(desc->kind);
    asl_status st;

    if (!ops) return asl_fail(c, ASL_ERR_ARG, "unknown layer kind %d", (int)desc->kind);
    if (net->nlayers == net->cap) {
        int cap = net->cap ? 2 * net->cap : 16;
        asl_layer *nl = realloc(net->layers, sizeof *nl * (size_t)cap);
        if (!nl) return asl_fail(c, ASL_ERR_NOMEM, "out of memory (layer list)");
        net->layers = nl;
        net->cap = cap;
    }
    unplan(net);   /* buffers depend on the layer list */
    if (ops->merge && (desc->source < 0 || desc->source >= net->nlayers))
        return asl_fail(c, ASL_ERR_ARG,
                        "%s (layer %d): source must be the index of an earlier layer, "
                        "in [0, %d), got %d", ops->name, net->nlayers, net->nlayers,
                        desc->source);
    l = &net->layers[net->nlayers];
    memset(l, 0, sizeof *l);
    l->d = *desc;
    l->ops = ops;
    l->trainable = 1;
    if (net->dynamic) {   /* init at the first probe size, then the second */
        memcpy(l->any_in, net->nlayers ? l[-1].any_out : net->in, sizeof l->any_in);
        memcpy(l->in, net->probe[0], sizeof l->in);
    } else {
        memcpy(l->in, net_out(net), sizeof l->in);
    }
    if (ops->merge)   /* the source's output (a net of any size: at the first probe) */
        memcpy(l->in2, net->dynamic ? net->layers[desc->source].probe_out[0]
                                    : net->layers[desc->source].out, sizeof l->in2);
    l->rng = desc->seed;
    /* a merge's shapes first (a clearer message than its init's) */
    st = ops->merge && !net->dynamic
             ? check_merge_shapes(net, net->nlayers, l->in, l->in2, NULL) : ASL_OK;
    if (st != ASL_OK) return st;
    if (ops->merge && net->dynamic) {
        int at[2] = {net->in[0] < 0 ? probe_size[0][0] : net->in[0],
                     net->in[1] < 0 ? probe_size[0][1] : net->in[1]};
        ASL_TRY(check_merge_shapes(net, net->nlayers, l->in, l->in2, at));
    }
    st = ops->init(l, c);
    if (st != ASL_OK) {
        if (ops->destroy) ops->destroy(l);
        free_layer_params(l);
        return st;
    }
    if (l->out[0] < 1 || l->out[1] < 1 || l->out[2] < 1) {
        if (ops->destroy) ops->destroy(l);
        free_layer_params(l);
        return asl_fail(c, ASL_ERR_SHAPE, "%s: empty output", ops->name);
    }
    /* the executor sizes per-sample buffers in int: every layer's output too */
    if ((int64_t)l->out[0] * l->out[1] * l->out[2] > INT_MAX) {
        if (ops->destroy) ops->destroy(l);
        free_layer_params(l);
        return asl_fail(c, ASL_ERR_SHAPE, "%s: output (%d, %d, %d) is too large", ops->name,
                        l->out[0], l->out[1], l->out[2]);
    }
    if (net->dynamic) st = add_any_size(net, l);
    if (st != ASL_OK) {
        if (ops->destroy) ops->destroy(l);
        free_layer_params(l);
        return st;
    }
    /* a merge keeps its source's output alive; a reshape's output is its
     * input, so the layer below it is kept too */
    for (int s = ops->merge ? desc->source : -1; s >= 0; s--) {
        net->layers[s].is_source = 1;
        if (!net->layers[s].ops->alias) break;
    }
    net->nlayers++;
    return ASL_OK;
}

int asl_net_num_layers(const asl_net *net) { return net->nlayers; }

static asl_status check_layer(const asl_net *net, int i)
{
    if (i < 0 || i >= net->nlayers) {
        asl_fail((asl_ctx *)&net->ctx, ASL_ERR_ARG,
                 "layer index %d out of range [0, %d)", i, net->nlayers);
        return ASL_ERR_ARG;
    }
    return ASL_OK;
}

static asl_status check_param(const asl_net *net, int i, int j)
{
    ASL_TRY(check_layer(net, i));
    if (j < 0 || j >= net->layers[i].nparams) {
        asl_fail((asl_ctx *)&net->ctx, ASL_ERR_ARG,
                 "parameter index %d out of range for layer %d (%d params)",
                 j, i, net->layers[i].nparams);
        return ASL_ERR_ARG;
    }
    return ASL_OK;
}

asl_status asl_net_output_shape(const asl_net *net, int i, int shape[3])
{
    ASL_TRY(check_layer(net, i));
    memcpy(shape, net->dynamic ? net->layers[i].any_out : net->layers[i].out,
           3 * sizeof(int));
    return ASL_OK;
}

asl_status asl_net_output_shape_at(asl_net *net, int i, int h, int w, int shape[3])
{
    int k;
    ASL_TRY(check_layer(net, i));
    ASL_TRY(check_size(net, h, w));
    if (!net->dynamic) {
        memcpy(shape, net->layers[i].out, 3 * sizeof(int));
        return ASL_OK;
    }
    ASL_TRY(make_size(net, h, w, &k));
    memcpy(shape, k == net->cur ? net->layers[i].out : net->sizes[k].io[i] + 3,
           3 * sizeof(int));
    return ASL_OK;
}

int asl_net_num_params(const asl_net *net, int i)
{
    return (i >= 0 && i < net->nlayers) ? net->layers[i].nparams : 0;
}

asl_status asl_net_param_info(const asl_net *net, int i, int j,
                              asl_param_info *info)
{
    const asl_param *p;
    ASL_TRY(check_param(net, i, j));
    p = &net->layers[i].p[j];
    info->name = p->name;
    info->ndim = p->ndim;
    memcpy(info->dims, p->dims, sizeof info->dims);
    info->size = p->size;
    info->is_weight = p->is_weight;
    return ASL_OK;
}

asl_status asl_net_param_data(asl_net *net, int i, int j, float **data)
{
    ASL_TRY(check_param(net, i, j));
    *data = net->layers[i].p[j].data;
    return ASL_OK;
}

asl_status asl_net_bind_param(asl_net *net, int i, int j, float *data)
{
    asl_param *p;
    ASL_TRY(check_param(net, i, j));
    if (!data) return asl_fail(&net->ctx, ASL_ERR_ARG, "bind_param: NULL data");
    p = &net->layers[i].p[j];
    asl_free(p->own);
    p->own = NULL;
    p->data = data;
    asl_net_weights_changed(net);
    return ASL_OK;
}

asl_status asl_net_param_grad(const asl_net *net, int i, int j,
                              const float **grad)
{
    ASL_TRY(check_param(net, i, j));
    *grad = net->layers[i].p[j].grad;
    return ASL_OK;
}

asl_status asl_net_set_trainable(asl_net *net, int i, int trainable)
{
    ASL_TRY(check_layer(net, i));
    net->layers[i].trainable = trainable != 0;
    net->forward_done = 0;   /* a training-mode forward may differ now */
    return ASL_OK;
}

void asl_net_weights_changed(asl_net *net)
{
    net->version++;
    for (int i = 0; i < net->nlayers; i++)
        net->layers[i].weights_version = net->version;
}

asl_status asl_net_layer_weights_changed(asl_net *net, int i)
{
    ASL_TRY(check_layer(net, i));
    net->layers[i].weights_version = ++net->version;
    return ASL_OK;
}

asl_status asl_net_set_num_threads(asl_net *net, int n)
{
    if (n < 0 || n > ASL_MAX_THREADS)
        return asl_fail(&net->ctx, ASL_ERR_ARG, "num_threads must be in [0, %d], got %d",
                        ASL_MAX_THREADS, n);
    /* oneDNN sizes some scratchpads for the thread count: re-plan */
    if (n != net->ctx.num_threads) unplan(net);
    net->ctx.num_threads = n;
    return ASL_OK;
}

void asl_net_set_allreduce(asl_net *net, asl_allreduce_fn fn, void *user)
{
    net->ctx.allreduce = fn;
    net->ctx.allreduce_user = fn ? user : NULL;
}

static int synchronized_bn(const asl_layer *l)
{
    return l->d.kind == ASL_LAYER_BATCH_NORM && l->d.synchronized && l->trainable &&
           !l->d.inference;
}

asl_status asl_net_sync_idle_step(asl_net *net, int start)
{
    if (start < 0 || start > net->nlayers)
        return asl_fail(&net->ctx, ASL_ERR_ARG, "sync_idle_step: start %d out of [0, %d]",
                        start, net->nlayers);
    if (!net->ctx.allreduce) return ASL_OK;   /* one process */
    for (int i = start; i < net->nlayers; i++)
        if (synchronized_bn(&net->layers[i])) {
            ASL_TRY(asl_bn_sync_idle(&net->layers[i], &net->ctx, 0));
            net->layers[i].weights_version = ++net->version;   /* as forward_layer */
        }
    for (int i = net->nlayers - 1; i >= start; i--)
        if (synchronized_bn(&net->layers[i]))
            ASL_TRY(asl_bn_sync_idle(&net->layers[i], &net->ctx, 1));
    return ASL_OK;
}

asl_status asl_net_set_compute_dtype(asl_net *net, asl_dtype dt)
{
    if (dt != ASL_F32 && dt != ASL_BF16 && dt != ASL_INT8)
        return asl_fail(&net->ctx, ASL_ERR_ARG, "unknown compute dtype %d", (int)dt);
    /* without native bfloat16, oneDNN would emulate it: slower than float32 */
    net->ctx.bf16 = dt == ASL_BF16 && asl_bf16_supported();
    net->ctx.int8 = dt == ASL_INT8;
    net->ctx.int8_vnni = asl_int8_vnni();
    return ASL_OK;
}

/* int8: the type and scale of the tensor at range index k (the input of
 * layer k); 0 when no range was recorded (the group runs in float32).
 * Non-negative tensors (ReLU outputs) are u8 over [0, max] (255 steps;
 * 127 without VNNI, see asl_int8_vnni), others s8, symmetric over
 * [-max|.|, max|.|]. */
static int qparams(const asl_net *net, int k, asl_qtype *t, float *scale)
{
    float lo, hi;
    if (k >= net->nrange) return 0;
    lo = net->range[2 * k];
    hi = net->range[2 * k + 1];
    if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi)) return 0;
    *t = lo >= 0.0f ? ASL_Q_U8 : ASL_Q_S8;
    *scale = *t == ASL_Q_U8 ? hi / (net->ctx.int8_vnni ? 255.0f : 127.0f)
                            : fmaxf(-lo, hi) / 127.0f;
    if (!(*scale > 0.0f)) *scale = 1.0f;   /* an all-zero tensor */
    return 1;
}

/* Widen the min/max at range index k with x[count]. */
static void record_range(asl_net *net, int k, const float *x, size_t count)
{
    const long long nn = (long long)count;
    float lo = net->range[2 * k], hi = net->range[2 * k + 1];
#pragma omp parallel for simd reduction(min : lo) reduction(max : hi) \
    schedule(static) if (nn >= (1 << 16))
    for (long long i = 0; i < nn; i++) {   /* NaN is skipped, as by fminf/fmaxf */
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    net->range[2 * k] = lo;
    net->range[2 * k + 1] = hi;
}

static asl_status alloc_ranges(asl_net *net)
{
    const int m = net->nlayers + 1;
    if (net->nrange == m) return ASL_OK;
    free(net->range);
    net->nrange = 0;
    net->range = malloc(2 * (size_t)m * sizeof(float));
    if (!net->range) return asl_fail(&net->ctx, ASL_ERR_NOMEM, "out of memory (ranges)");
    for (int k = 0; k < m; k++) {
        net->range[2 * k] = INFINITY;
        net->range[2 * k + 1] = -INFINITY;
    }
    net->nrange = m;
    return ASL_OK;
}

asl_status asl_net_get_ranges(const asl_net *net, float *ranges, int count)
{
    if (count != 2 * (net->nlayers + 1))
        return asl_fail((asl_ctx *)&net->ctx, ASL_ERR_ARG, "ranges: %d values for %d "
                        "layers, expected %d", count, net->nlayers, 2 * (net->nlayers + 1));
    for (int k = 0; k < count; k++)
        ranges[k] = net->nrange * 2 == count ? net->range[k]
                                              : (k % 2 ? -INFINITY : INFINITY);
    return ASL_OK;
}

asl_status asl_net_set_ranges(asl_net *net, const float *ranges, int count)
{
    if (count != 2 * (net->nlayers + 1))
        return asl_fail(&net->ctx, ASL_ERR_ARG, "ranges: %d values for %d layers, "
                        "expected %d", count, net->nlayers, 2 * (net->nlayers + 1));
    ASL_TRY(alloc_ranges(net));
    memcpy(net->range, ranges, (size_t)count * sizeof(float));
    return ASL_OK;
}

static void apply_threads(asl_net *net)
{
#ifdef _OPENMP
    int n = net->ctx.num_threads > 0 ? net->ctx.num_threads : omp_get_num_procs();
    omp_set_num_threads(n);
    ASL_BLAS_THREADS(1);   /* asl_sgemm shares big products over OpenMP's team */
#else
    (void)net;
#endif
}

/* Primitives of layer l for batch size n, built when it first runs at n:
 * a change of batch size re-plans only the layers that then run (the
 * trainable tail when training from the frozen-trunk cache). */
static asl_status plan_layer(asl_net *net, asl_layer *l, int n)
{
    asl_status st;
    if (l->n == n) return ASL_OK;
    if (l->ops->release) l->ops->release(l);
    l->n = n;
    st = l->ops->plan ? l->ops->plan(l, &net->ctx) : ASL_OK;
    if (st != ASL_OK) {
        if (l->ops->release) l->ops->release(l);
        l->n = 0;
    }
    return st;
}

/* Make *buf hold at least `need` floats (kept when large enough: batch
 * sizes alternate within an epoch). */
static asl_status ensure_buf(asl_net *net, float **buf, size_t *cap, size_t need,
                             const char *what)
{
    if (*cap >= need) return ASL_OK;
    if (need > SIZE_MAX / sizeof(float))
        return asl_fail(&net->ctx, ASL_ERR_NOMEM, "%s of batch %d is too large", what, net->n);
    asl_free(*buf);
    *buf = asl_alloc(need * sizeof(float));
    *cap = *buf ? need : 0;
    if (!*buf)
        return asl_fail(&net->ctx, ASL_ERR_NOMEM, "out of memory (%s of batch %d: %zu MiB)",
                        what, net->n, need * sizeof(float) >> 20);
    return ASL_OK;
}

/* The output buffer of layer l: its own when a backward will read it,
 * else the transient buffer that does not hold the input `cur`. */
static asl_status out_buf(asl_net *net, asl_layer *l, int keep, const float *cur)
{
    if (keep) {
        ASL_TRY(ensure_buf(net, &l->ybuf, &l->ybuf_cap, padded(l->n, l->out), "activations"));
        l->y = l->ybuf;
    } else {
        l->y = cur == net->tmp[0] ? net->tmp[1] : net->tmp[0];
    }
    return ASL_OK;
}

/* Transient buffers big enough for any layer's output at batch n. */
static asl_status plan_tmp(asl_net *net, int n)
{
    size_t need = 0;
    for (int i = 0; i < net->nlayers; i++)
        if (!net->layers[i].ops->alias && padded(n, net->layers[i].out) > need)
            need = padded(n, net->layers[i].out);
    if (net->tmp_cap >= need) return ASL_OK;
    for (int k = 0; k < 2; k++) {
        size_t cap = net->tmp_cap;
        asl_status st = ensure_buf(net, &net->tmp[k], &cap, need, "activations");
        if (st != ASL_OK) {
            net->tmp_cap = 0;   /* tmp[k] is gone: both are reallocated next time */
            return st;
        }
    }
    net->tmp_cap = need;
    return ASL_OK;
}

/* Parameter gradients of trainable layers. */
static asl_status alloc_param_grads(asl_net *net)
{
    for (int i = 0; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        if (!l->trainable) continue;
        for (int j = 0; j < l->nparams; j++) {
            asl_param *p = &l->p[j];
            if (!p->is_weight || p->grad) continue;
            p->grad = asl_calloc(p->size * sizeof(float));
            if (!p->grad)
                return asl_fail(&net->ctx, ASL_ERR_NOMEM,
                                "out of memory (gradient of %s)", p->name);
        }
    }
    return ASL_OK;
}

static int first_trainable(const asl_net *net);

static int all_finite(const float *x, size_t count)
{
    const long long nn = (long long)count;
    float acc = 0.0f;   /* x * 0 is 0, or NaN for NaN and Inf */
#pragma omp parallel for simd reduction(+ : acc) schedule(static) if (nn >= (1 << 16))
    for (long long i = 0; i < nn; i++) acc += x[i] * 0.0f;
    return acc == 0.0f;
}

/* memcpy(dst, src) and all_finite(src) in one pass over src. */
static int copy_finite(float *dst, const float *src, size_t count)
{
    const long long nn = (long long)count;
    float acc = 0.0f;
#pragma omp parallel for simd reduction(+ : acc) schedule(static) if (nn >= (1 << 16))
    for (long long i = 0; i < nn; i++) {
        const float v = src[i];
        dst[i] = v;
        acc += v * 0.0f;
    }
    return acc == 0.0f;
}

/* One layer's forward, counted.  A training forward of a trainable batch
 * norm moves its moving statistics, which fused groups fold like weights:
 * bump its version. */
static asl_status forward_layer(asl_net *net, asl_layer *l, int training)
{
    if (l->d.inference) training = 0;   /* desc.inference: always inference mode */
    ASL_TRY(l->ops->forward(l, &net->ctx, training));
    l->calls_fwd++;
    if (training && l->trainable && l->d.kind == ASL_LAYER_BATCH_NORM)
        l->weights_version = ++net->version;
    return ASL_OK;
}

/* Does a fused group start at layer i of a forward of [i, stop)?  Returns
 * its last layer, or -1.  A group is [zero_padding2d ->] conv2d/depthwise
 * (linear activation) -> batch norm in inference mode (network not training,
 * or the layer frozen) [-> relu/relu6 activation] (see fusion.c).  Fusing
 * skips the outputs of all but the last layer, so a training forward fuses
 * only below the first trainable layer `ft`, where backward never looks;
 * other backwards that need them recompute them first (unfuse()). */
static int fused_group(const asl_net *net, int i, int stop, int training,
                       int ft)
{
    const asl_layer *l = net->layers;
    int k = l[i].d.kind == ASL_LAYER_ZERO_PADDING2D ? i + 1 : i, hi = k + 1;

    if (net->calibrating || hi >= stop ||
        (l[k].d.kind != ASL_LAYER_CONV2D &&
         l[k].d.kind != ASL_LAYER_DEPTHWISE_CONV2D) ||
        l[k].d.activation != ASL_ACT_LINEAR ||
        l[hi].d.kind != ASL_LAYER_BATCH_NORM || (training && l[hi].trainable))
        return -1;
    if (hi + 1 < stop && l[hi + 1].d.kind == ASL_LAYER_ACTIVATION &&
        (l[hi + 1].d.activation == ASL_ACT_RELU ||
         l[hi + 1].d.activation == ASL_ACT_RELU6))
        hi++;
    /* an add reads its source's output: the group ends there (a source
     * below the batch norm: no group) */
    for (int j = i; j < hi; j++)
        if (l[j].is_source) {
            if (j < k + 1) return -1;
            hi = j;
        }
    return training && hi >= ft ? -1 : hi;
}

/* Must a training forward keep layer i's output in its own buffer?  The
 * backward reads the outputs of layers ft-1 and above (ft: the first
 * trainable layer).  Below, outputs go to transient buffers, except those
 * of layers whose training forward has effects (dropout masks, batch-norm
 * statistics): a backward that needs the others recomputes them from
 * there (unfuse()).  An inference forward keeps nothing. */
static int keep_output(const asl_net *net, int i, int training, int ft)
{
    const asl_layer *l = &net->layers[i];
    if (l->is_source) return 1;   /* an add reads it later */
    if (!training) return 0;
    return i >= ft - 1 || l->d.kind == ASL_LAYER_DROPOUT || l->ops->random ||
           (l->d.kind == ASL_LAYER_BATCH_NORM && l->trainable);
}

/* Bind layer i's second input: an add's source output (the forward's
 * input copy when the source is the layer below `start`). */
static void bind_x2(asl_net *net, int i, int start)
{
    asl_layer *l = &net->layers[i];
    if (!l->ops->merge) return;
    l->x2 = l->d.source == start - 1 ? net->input : net->layers[l->d.source].y;
}

/* *cur holds bfloat16 values in a transient buffer for a layer that
 * cannot read them (a fused group oneDNN refused in bfloat16): widen them
 * into the other transient buffer. */
static void widen(asl_net *net, const float **cur, size_t count)
{
    float *to = *cur == net->tmp[0] ? net->tmp[1] : net->tmp[0];
    asl_from_bf16((const uint16_t *)*cur, to, count);
    *cur = to;
}

/* The same for int8 values of type t and scale s (a group the int8 path
 * could not run). */
static void dequantize(asl_net *net, const float **cur, size_t count,
                       asl_qtype t, float s)
{
    float *to = *cur == net->tmp[0] ? net->tmp[1] : net->tmp[0];
    const long long nn = (long long)count;
    if (t == ASL_Q_U8) {
        const uint8_t *q = (const uint8_t *)*cur;
#pragma omp parallel for simd schedule(static) if (nn >= (1 << 16))
        for (long long i = 0; i < nn; i++) to[i] = q[i] * s;
    } else {
        const int8_t *q = (const int8_t *)*cur;
#pragma omp parallel for simd schedule(static) if (nn >= (1 << 16))
        for (long long i = 0; i < nn; i++) to[i] = q[i] * s;
    }
    *cur = to;
}

/* int8: run the group [i, hi] on cur (int8 of type *cur_q, or float32 if
 * ASL_Q_F32); its output int8 if only the next group reads it.  *ran = 0:
 * not run (no ranges, or no int8 kernel). */
static asl_status int8_group(asl_net *net, int i, int hi, int stop, int keep,
                             asl_qtype *cur_q, int *ran)
{
    asl_qtype xt, yt = ASL_Q_F32;
    float sx, sy = 1.0f;
    *ran = 0;
    if (!qparams(net, i, &xt, &sx)) return ASL_OK;
    if (keep || hi + 1 >= stop || fused_group(net, hi + 1, stop, 0, 0) < 0 ||
        !qparams(net, hi + 1, &yt, &sy)) {
        yt = ASL_Q_F32;
        sy = 1.0f;
    }
    ASL_TRY(asl_int8_forward(&net->ctx, &net->layers[i], hi - i + 1,
                             *cur_q == ASL_Q_F32, xt, sx, yt, sy, ran));
    if (*ran) *cur_q = yt;
    return ASL_OK;
}

/* Run layers [start, stop) on x (the input of layer start); the output
 * stays in layer stop-1's buffer.  Fused groups count a forward call for
 * each of their layers (layer_calls).  In bfloat16 mode, a fused group
 * whose output only feeds the next fused group writes it as bfloat16
 * (cur_bf16); such outputs are transient, so no one else reads them. */
static asl_status run_forward(asl_net *net, const float *x, int n, int training,
                              int start, int stop)
{
    asl_ctx *c = &net->ctx;
    const float *cur = x;
    int ft = first_trainable(net), finite = -1, cur_kept = 1, cur_bf16 = 0, planned = 0;
    asl_qtype cur_q = ASL_Q_F32;   /* int8 values in cur (their type) */
    size_t in_size;

    if (n < 1) return asl_fail(c, ASL_ERR_ARG, "batch size must be >= 1, got %d", n);
    if (!x) return asl_fail(c, ASL_ERR_ARG, "forward: NULL input");
    if (start < 0 || stop > net->nlayers || start >= stop)
        return asl_fail(c, ASL_ERR_ARG, "layer range [%d, %d) invalid for %d layers",
                        start, stop, net->nlayers);
    if (net->dynamic && net->cur < 0)
        return asl_fail(c, ASL_ERR_STATE, "a network of any input size needs its input "
                        "size (asl_net_set_input_size) before a forward");
    for (int i = start; i < stop; i++) {
        const asl_layer *l = &net->layers[i];
        if (l->ops->merge && l->d.source < start - 1)
            return asl_fail(c, ASL_ERR_ARG,
                            "forward from layer %d: layer %d (%s) also reads the output "
                            "of layer %d, which this forward does not compute; start at "
                            "layer %d or below (x: the output of the layer before start)",
                            start, i, l->ops->name, l->d.source, l->d.source + 1);
    }
    apply_threads(net);
    net->forward_done = 0;
    net->fused_hi = -1;
    net->n = n;
    ASL_TRY(plan_tmp(net, n));
    /* own a copy of x: backward needs it after the caller's array is gone */
    in_size = (size_t)n * numel(net->layers[start].in);
    ASL_TRY(ensure_buf(net, &net->input, &net->input_size, in_size, "input copy"));
    finite = net->input_finite = copy_finite(net->input, x, in_size);
    cur = net->input;
    for (int i = start; i < stop; i++) net->layers[i].y_finite = 0;
    if (net->calibrating) record_range(net, start, cur, in_size);
    for (int i = start; i < stop; i++) {
        asl_layer *l = &net->layers[i];
        int hi = fused_group(net, i, stop, training, ft), ran = 0;
        for (int k = i; k <= (hi > i ? hi : i); k++) {
            planned |= net->layers[k].n != n;
            ASL_TRY(plan_layer(net, &net->layers[k], n));
        }
        l->x = cur;
        bind_x2(net, i, start);
        /* fused relu/relu6 would turn NaN into 0: not with NaN/Inf input.
         * Checked at the input (while it is copied) and again after any
         * unfused layer (NaN weights there, or a group refused for
         * non-finite parameters) but a merge of two finite outputs; a
         * fused group's output counts as finite (barring float overflow,
         * which a merge's sum can meet too). */
        if (hi > i && finite < 0)
            finite = cur_bf16 || cur_q || all_finite(cur, (size_t)n * numel(l->in));
        if (hi > i && finite && c->int8 && !training) {
            asl_layer *last = &net->layers[hi];
            int keep = keep_output(net, hi, training, ft);
            ASL_TRY(out_buf(net, last, keep, cur));
            ASL_TRY(int8_group(net, i, hi, stop, keep, &cur_q, &ran));
            if (ran) {
                for (int k = i; k <= hi; k++) {
                    net->layers[k].fused = k < hi || !keep;
                    net->layers[k].in_group = k == hi && keep;
                    net->layers[k].calls_fwd++;
                    if (net->layers[k].fused) net->fused_hi = k;
                }
                i = hi;
            }
        }
        if (!ran && cur_q) {
            asl_qtype t = cur_q;
            float sc = 1.0f;
            qparams(net, i, &t, &sc);   /* known: the group below used it */
            dequantize(net, &cur, (size_t)n * numel(l->in), cur_q, sc);
            l->x = cur;
            cur_q = ASL_Q_F32;
        }
        if (!ran && hi > i && finite) {
            asl_layer *last = &net->layers[hi];
            int keep = keep_output(net, hi, training, ft);
            int y_bf16 = c->bf16 && !keep && hi + 1 < stop &&
                         fused_group(net, hi + 1, stop, training, ft) >= 0;
            ASL_TRY(out_buf(net, last, keep, cur));
            ASL_TRY(asl_fused_forward(c, l, hi - i + 1, cur_bf16, y_bf16, &ran));
            if (ran) {
                for (int k = i; k <= hi; k++) {
                    net->layers[k].fused = k < hi || !keep;
                    net->layers[k].in_group = k == hi && keep;
                    net->layers[k].calls_fwd++;
                    if (net->layers[k].fused) net->fused_hi = k;
                }
                i = hi;
                cur_bf16 = y_bf16;
            }
        }
        if (!ran && cur_bf16) {
            widen(net, &cur, (size_t)n * numel(l->in));
            l->x = cur;
            cur_bf16 = 0;
        }
        if (!ran) {
            if (l->ops->alias) {
                l->y = (float *)cur;
                l->fused = !cur_kept;
            } else {
                int keep = keep_output(net, i, training, ft);
                ASL_TRY(out_buf(net, l, keep, cur));
                l->fused = !keep;
            }
            l->in_group = 0;
            ASL_TRY(forward_layer(net, l, training));
            if (l->ops->merge)
                finite = finite == 1 && (l->d.source == start - 1 ? net->input_finite == 1
                                         : net->layers[l->d.source].y_finite) ? 1 : -1;
            else if (!l->ops->alias)
                finite = -1;
        }
        net->layers[i].y_finite = finite == 1;
        if (net->layers[i].fused) net->fused_hi = i;
        cur = net->layers[i].y;
        cur_kept = !net->layers[i].fused;
        if (net->calibrating)
            record_range(net, i + 1, cur, (size_t)n * numel(net->layers[i].out));
    }
    net->plans += planned;
    if (stop == net->nlayers) {
        net->forward_done = 1;
        net->forward_start = start;
        net->last_training = training;
    }
    return ASL_OK;
}

asl_status asl_net_calibrate(asl_net *net, const float *x, int n, int reset)
{
    asl_ctx *c = &net->ctx;
    const int bf16 = c->bf16, int8 = c->int8;
    asl_status st;
    if (net->nlayers == 0) return asl_fail(c, ASL_ERR_STATE, "empty network");
    if (reset || net->nrange != net->nlayers + 1) {
        net->nrange = 0;
        ASL_TRY(alloc_ranges(net));
    }
    c->bf16 = c->int8 = 0;
    net->calibrating = 1;
    st = run_forward(net, x, n, 0, 0, net->nlayers);
    net->calibrating = 0;
    c->bf16 = bf16;
    c->int8 = int8;
    return st;
}

/* Recompute the outputs the last forward left unavailable (fused groups,
 * transient buffers), for a backward that needs them.  An inference
 * forward is redone entirely, unfused: it has no side effects, and
 * backward then sees exactly the state of an unfused forward.  A training
 * forward left unavailable only outputs of stateless layers (frozen batch
 * norm, padding, conv, activation; see keep_output): just those are redone,
 * as a second training forward would update batch-norm statistics again
 * and draw new dropout masks. */
static asl_status unfuse(asl_net *net)
{
    for (int i = net->forward_start; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        l->x = i == net->forward_start ? net->input : net->layers[i - 1].y;
        bind_x2(net, i, net->forward_start);
        /* in_group: the kept last layer of a fused group (a frozen batch
         * norm or its activation): its backward needs its own forward */
        if (l->fused || l->in_group || !net->last_training) {
            if (l->ops->alias) l->y = (float *)l->x;
            else ASL_TRY(out_buf(net, l, 1, NULL));
            ASL_TRY(forward_layer(net, l, net->last_training));
        }
        l->fused = l->in_group = 0;
    }
    net->fused_hi = -1;
    return ASL_OK;
}

asl_status asl_net_forward_range(asl_net *net, int start, int stop, const float *x,
                                 int n, int training, float *y)
{
    if (!y) return asl_fail(&net->ctx, ASL_ERR_ARG, "forward: NULL output");
    if (net->nlayers == 0) return asl_fail(&net->ctx, ASL_ERR_STATE, "empty network");
    ASL_TRY(run_forward(net, x, n, training, start, stop));
    memcpy(y, net->layers[stop - 1].y,
           (size_t)n * numel(net->layers[stop - 1].out) * sizeof(float));
    return ASL_OK;
}

asl_status asl_net_forward(asl_net *net, const float *x, int n, int training,
                           float *y)
{
    return asl_net_forward_range(net, 0, net->nlayers, x, n, training, y);
}

static int first_trainable(const asl_net *net)
{
    for (int i = 0; i < net->nlayers; i++) {
        const asl_layer *l = &net->layers[i];
        if (!l->trainable) continue;
        for (int j = 0; j < l->nparams; j++)
            if (l->p[j].is_weight) return i;
    }
    return net->nlayers;
}

/* g += d (elementwise: the same result with any number of threads). */
static void accumulate(float *g, const float *d, size_t count)
{
    const long long nn = (long long)count;
#pragma omp parallel for simd schedule(static) if (nn >= (1 << 15))
    for (long long k = 0; k < nn; k++) g[k] += d[k];
}

/* Backward from the gradient already in layer `from`'s dy. */
static asl_status run_backward(asl_net *net, int from, float *dx_user)
{
    asl_ctx *c = &net->ctx;
    int stop = dx_user ? 0 : first_trainable(net);

    if (stop < net->forward_start)
        return asl_fail(c, ASL_ERR_STATE,
                        "backward must reach layer %d, but the forward pass started "
                        "at layer %d (a trainable layer lies below it)", stop,
                        net->forward_start);
    /* backward reads the outputs of layers stop-1 .. from */
    if (net->fused_hi >= 0 && net->fused_hi >= stop - 1) ASL_TRY(unfuse(net));

    for (int i = from; i >= stop; i--) {
        asl_layer *l = &net->layers[i];
        float *dx;
        if (i > stop || dx_user)
            dx = i > 0 ? (float *)net->layers[i - 1].dy : dx_user;
        else
            dx = NULL;
        if (l->ops->alias) {   /* output is the input: pass dy through */
            if (dx)
                memcpy(dx, l->dy, (size_t)net->n * numel(l->in) * sizeof(float));
            l->calls_bwd++;
        } else {
            l->dx = dx;
            /* a merge's second gradient: needed when its source is at or
             * above stop (the loop below carries it there) */
            if (l->ops->grad2)
                l->dx2 = l->d.source >= stop && l->d.source >= net->forward_start
                             ? l->dx2buf : NULL;
            ASL_TRY(l->ops->backward(l, c, net->last_training));
            l->calls_bwd++;
        }
        /* layer i-1's output gradient is now the chain's: add the gradient
         * of every merge (already passed, at or below `from`) that read it */
        if (i > stop && net->layers[i - 1].is_source)
            for (int a = i; a <= from; a++) {
                const asl_layer *m = &net->layers[a];
                if (!m->ops->merge || m->d.source != i - 1) continue;
                if (m->ops->grad2 && !m->dx2)
                    return asl_fail(c, ASL_ERR_STATE, "internal: %s (layer %d) wrote no "
                                    "gradient for its source", m->ops->name, a);
                accumulate((float *)net->layers[i - 1].dy, m->ops->grad2 ? m->dx2 : m->dy,
                           (size_t)net->n * numel(net->layers[i - 1].out));
            }
    }
    return ASL_OK;
}

/* Gradient buffers of the layers a backward down to `stop` writes. */
static asl_status begin_backward(asl_net *net, int stop)
{
    if (!net->forward_done)
        return asl_fail(&net->ctx, ASL_ERR_STATE,
                        "backward needs a forward pass first (since the last "
                        "change of batch size or trainable flags)");
    for (int i = stop > net->forward_start ? stop : net->forward_start;
         i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        ASL_TRY(ensure_buf(net, &l->dybuf, &l->dybuf_cap, padded(net->n, l->out),
                           "gradients"));
        l->dy = l->dybuf;
        if (l->ops->grad2)
            ASL_TRY(ensure_buf(net, &l->dx2buf, &l->dx2buf_cap, padded(net->n, l->in2),
                               "gradients"));
    }
    ASL_TRY(alloc_param_grads(net));
    for (int i = 0; i < net->nlayers; i++) net->layers[i].fused_softmax_ce = 0;
    return ASL_OK;
}

asl_status asl_net_backward(asl_net *net, const float *dy, int n, float *dx)
{
    asl_layer *last;
    if (!dy) return asl_fail(&net->ctx, ASL_ERR_ARG, "backward: NULL dy");
    if (net->nlayers == 0) return asl_fail(&net->ctx, ASL_ERR_STATE, "empty network");
    if (!net->forward_done)
        return asl_fail(&net->ctx, ASL_ERR_STATE,
                        "backward needs a forward pass first (since the last "
                        "change of batch size or trainable flags)");
    if (n != net->n)
        return asl_fail(&net->ctx, ASL_ERR_SHAPE,
                        "backward: dy has %d samples, the last forward had %d", n, net->n);
    apply_threads(net);
    if (!dx && first_trainable(net) >= net->nlayers) return ASL_OK;  /* all frozen */
    ASL_TRY(begin_backward(net, dx ? 0 : first_trainable(net)));
    last = &net->layers[net->nlayers - 1];
    memcpy((float *)last->dy, dy, (size_t)net->n * numel(last->out) * sizeof(float));
    return run_backward(net, net->nlayers - 1, dx);
}

/* ---- optimizer -------------------------------------------------------- */

/* Slot layouts equal: the state of one optimizer means the same to the
 * other (same kind, same slots, same initial values). */
static int same_layout(const asl_optimizer_desc *a, const asl_optimizer_desc *b)
{
    return a->kind == b->kind && asl_opt_nslots(a) == asl_opt_nslots(b) &&
           asl_opt_slot_init(a, 0) == asl_opt_slot_init(b, 0) &&
           (a->kind != ASL_OPT_RMSPROP || (a->momentum > 0.f) == (b->momentum > 0.f));
}

static void free_slots(asl_net *net)
{
    for (int i = 0; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        for (int j = 0; j < l->nparams; j++)
            for (int k = 0; k < ASL_OPT_MAX_SLOTS; k++) {
                asl_free(l->p[j].slot[k]);
                l->p[j].slot[k] = NULL;
            }
    }
}

asl_status asl_net_set_optimizer(asl_net *net, const asl_optimizer_desc *o)
{
    ASL_TRY(asl_opt_check(&net->ctx, o));
    /* state kept in another layout would be read wrongly: drop it */
    if (net->has_opt && !same_layout(&net->opt, o)) free_slots(net);
    net->opt = *o;
    net->has_opt = 1;
    return ASL_OK;
}

asl_status asl_net_set_learning_rate(asl_net *net, float lr)
{
    if (!(lr >= 0.f) || !isfinite(lr))
        return asl_fail(&net->ctx, ASL_ERR_ARG, "learning_rate must be finite and >= 0");
    net->opt.learning_rate = lr;
    return ASL_OK;
}

int64_t asl_net_iterations(const asl_net *net) { return net->iterations; }
void asl_net_set_iterations(asl_net *net, int64_t it)
{
    net->iterations = it < 0 ? 0 : it > ((int64_t)1 << 62) ? ((int64_t)1 << 62) : it;
}

void asl_net_reset_optimizer(asl_net *net)
{
    free_slots(net);
    net->iterations = 0;
}

static int nslots(const asl_net *net)
{
    return net->has_opt ? asl_opt_nslots(&net->opt) : 0;
}

int asl_net_num_slots(const asl_net *net) { return nslots(net); }

static asl_status ensure_slots(asl_net *net, asl_param *p)
{
    for (int k = 0; k < nslots(net); k++) {
        float init = asl_opt_slot_init(&net->opt, k);
        if (p->slot[k]) continue;
        p->slot[k] = asl_calloc(p->size * sizeof(float));
        if (!p->slot[k])
            return asl_fail(&net->ctx, ASL_ERR_NOMEM, "out of memory (optimizer state)");
        for (size_t i = 0; init != 0.f && i < p->size; i++) p->slot[k][i] = init;
    }
    return ASL_OK;
}

asl_status asl_net_slot(asl_net *net, int i, int j, int k, float **slot)
{
    asl_layer *l;
    ASL_TRY(check_param(net, i, j));
    l = &net->layers[i];
    if (k < 0 || k >= nslots(net) || !l->trainable || !l->p[j].is_weight) {
        *slot = NULL;
        return ASL_OK;
    }
    ASL_TRY(ensure_slots(net, &l->p[j]));
    *slot = l->p[j].slot[k];
    return ASL_OK;
}

/* The weights one step updates: trainable layers' weights with gradients. */
static int stepped(const asl_layer *l, const asl_param *p)
{
    return l->trainable && p->is_weight && p->grad;
}

/* One step of Keras's BaseOptimizer.apply (the update rules: optimizers.c).
 * global_clipnorm reads all gradients of the step first. */
asl_status asl_net_apply_gradients(asl_net *net)
{
    asl_opt_step step;
    double sumsq = 0.0;
    if (!net->has_opt)
        return asl_fail(&net->ctx, ASL_ERR_STATE, "no optimizer set");
    if (net->iterations >= ((int64_t)1 << 62))
        return asl_fail(&net->ctx, ASL_ERR_STATE, "optimizer iteration count overflow");
    for (int i = 0; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            if (!stepped(l, &l->p[j])) continue;
            ASL_TRY(ensure_slots(net, &l->p[j]));
            if (asl_opt_global_norm(&net->opt))
                sumsq += asl_opt_sumsq(l->p[j].grad, l->p[j].size);
        }
    }
    net->iterations++;
    asl_opt_begin(&net->opt, net->iterations, sumsq, &step);
    for (int i = 0; i < net->nlayers; i++) {
        asl_layer *l = &net->layers[i];
        int touched = 0;
        for (int j = 0; j < l->nparams; j++) {
            if (!stepped(l, &l->p[j])) continue;
            asl_opt_update(&net->opt, &step, &l->p[j]);
            touched = 1;
        }
        if (touched) l->weights_version = ++net->version;
    }
    return ASL_OK;
}

/* ---- loss ------------------------------------------------------------- */


static int softmax_output(const asl_net *net)
{
    const asl_layer *l;
    int k = net->nlayers - 1;
    while (k >= 0 && net->layers[k].ops->alias) k--;
    if (k < 0) return -1;
    l = &net->layers[k];
    /* one distribution per sample: the output must be (1, 1, classes) */
    if (l->d.activation == ASL_ACT_SOFTMAX && l->d.kind != ASL_LAYER_BATCH_NORM &&
        l->out[0] == 1 && l->out[1] == 1)
        return k;
    return -1;
}

int asl_net_softmax_output(const asl_net *net)
{
    return softmax_output(net);
}

/* Cross-entropy of one sample, -sum(y * log p), and sum(y).  Where softmax
 * meets cross-entropy Keras computes the loss from the logits z,
 * -sum(y * log_softmax(z)), with no clipping: so does this when zs is
 * given; else from log(p) floored at FLT_MIN (equal while logit gaps stay
 * below ~87). */
static double sample_cce(const float *ps, const float *ys, const float *zs,
                         int classes, double *ysum)
{
    double ls = 0.0, lse = 0.0;
    *ysum = 0.0;
    if (zs) {
        double zmax = zs[0];
        for (int j = 1; j < classes; j++) zmax = zs[j] > zmax ? zs[j] : zmax;
        for (int j = 0; j < classes; j++) lse += exp(zs[j] - zmax);
        lse = zmax + log(lse);
    }
    for (int j = 0; j < classes; j++) {
        double logp;
        if (zs) logp = zs[j] - lse;
        else logp = log(ps[j] > FLT_MIN || ps[j] != ps[j] ? (double)ps[j] : FLT_MIN);
        if (ys[j] != 0.f) ls -= (double)ys[j] * logp;
        *ysum += ys[j];
    }
    return ls;
}

asl_status asl_categorical_crossentropy(const float *y_true, const float *y_pred,
                                        int n, int classes, double *losses)
{
    double ysum;
    if (!y_true || !y_pred || !losses || n < 0 || classes < 1) return ASL_ERR_ARG;
    for (int s = 0; s < n; s++)
        losses[s] = sample_cce(y_pred + (size_t)s * classes, y_true + (size_t)s * classes,
                               NULL, classes, &ysum);
    return ASL_OK;
}

asl_status asl_net_train_step(asl_net *net, const float *x,
                              const float *y_true, int n, float *loss,
                              float *y_pred)
{
    return asl_net_train_step_from(net, 0, x, y_true, n, loss, y_pred);
}

asl_status asl_net_train_step_from(asl_net *net, int start, const float *x,
                                   const float *y_true, int n, float *loss,
                                   float *y_pred)
{
    int has_grads = 0;
    ASL_TRY(asl_net_train_step_grads(net, start, x, y_true, n, loss, y_pred, &has_grads));
    return has_grads ? asl_net_apply_gradients(net) : ASL_OK;
}

asl_status asl_net_grad_buffer(asl_net *net, float **buf, size_t *count)
{
    if (!buf || !count) return asl_fail(&net->ctx, ASL_ERR_ARG, "grad_buffer: NULL");
    ASL_TRY(asl_grad_flat_pack(&net->flat, net->layers, net->nlayers, &net->ctx));
    *buf = net->flat.buf;
    *count = net->flat.count;
    return ASL_OK;
}

asl_status asl_net_train_step_grads(asl_net *net, int start, const float *x,
                                    const float *y_true, int n, float *loss,
                                    float *y_pred, int *has_grads)
{
    asl_ctx *c = &net->ctx;
    int k = softmax_output(net), classes;
    const float *p;
    float *g;
    double total = 0.0;

    if (has_grads) *has_grads = 0;

    if (k < 0)
        return asl_fail(c, ASL_ERR_STATE,
                        "train_step needs a softmax output of shape (1, 1, "
                        "classes) per sample (categorical cross-entropy)");
    if (!net->has_opt) return asl_fail(c, ASL_ERR_STATE, "no optimizer set");
    if (!y_true || !loss) return asl_fail(c, ASL_ERR_ARG, "train_step: NULL buffer");
    classes = (int)numel(net_out(net));
    if (start > k)
        return asl_fail(c, ASL_ERR_ARG,
                        "train_step from layer %d: past the softmax output (layer %d)",
                        start, k);
    if (start < 0 || start >= net->nlayers || first_trainable(net) < start)
        return asl_fail(c, ASL_ERR_ARG,
                        "train_step from layer %d: a layer below it is trainable "
                        "(first trainable: %d)", start, first_trainable(net));
    ASL_TRY(run_forward(net, x, n, 1, start, net->nlayers));
    p = net->layers[k].y;
    if (y_pred) memcpy(y_pred, p, (size_t)n * classes * sizeof(float));
    ASL_TRY(begin_backward(net, first_trainable(net)));
    /* Nothing trainable at or below the output (everything frozen): the
     * loss only, no gradient, no update (Keras: "no trainable weights"). */
    g = first_trainable(net) <= k ? (float *)net->layers[k].dy : NULL;
    /* The loss from the logits the layer kept (sample_cce), batch mean.
     * Fused gradient w.r.t. the logits: (p * sum(y) - y) / n. */
    for (int s = 0; s < n; s++) {
        const float *ps = p + (size_t)s * classes, *ys = y_true + (size_t)s * classes;
        const float *zs = net->layers[k].logits ? net->layers[k].logits + (size_t)s * classes
                                                : NULL;
        float *gs = g ? g + (size_t)s * classes : NULL;
        double ysum, ls = sample_cce(ps, ys, zs, classes, &ysum);
        for (int j = 0; gs && j < classes; j++)
            gs[j] = (float)((ps[j] * ysum - ys[j]) / n);
        total += ls;
    }
    *loss = (float)(total / n);
    if (!g) return ASL_OK;
    net->layers[k].fused_softmax_ce = 1;
    ASL_TRY(run_backward(net, k, NULL));
    if (has_grads) *has_grads = 1;
    return ASL_OK;
}

asl_status asl_net_fold_count(const asl_net *net, int i, int64_t *folds)
{
    ASL_TRY(check_layer(net, i));
    *folds = (int64_t)asl_fused_folds(&net->layers[i]);
    return ASL_OK;
}

asl_status asl_net_layer_calls(const asl_net *net, int i, int64_t *fwd,
                               int64_t *bwd)
{
    ASL_TRY(check_layer(net, i));
    *fwd = net->layers[i].calls_fwd;
    *bwd = net->layers[i].calls_bwd;
    return ASL_OK;
}

size_t asl_net_buffer_bytes(const asl_net *net)
{
    size_t floats = 2 * net->tmp_cap + net->input_size;
    for (int i = 0; i < net->nlayers; i++)
        floats += net->layers[i].ybuf_cap + net->layers[i].dybuf_cap;
    return floats * sizeof(float);
}
