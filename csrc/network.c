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
 * states: its layers hold their own priv, as always.
 *
 * Files: this one creates the net, adds layers, holds parameters and
 * settings; net_sizes.c the size states; net_exec.c buffers, plans, int8
 * ranges and the forward; net_train.c backward, optimizer, loss and the
 * training steps; net_internal.h what they share. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "net_internal.h"

/* Probe input sizes of a net of any size (see asl_net_add): two sizes
 * every MobileNet-like chain takes, different modulo 2, 4, ..., 32. */
static const int probe_size[2][2] = {{224, 224}, {257, 263}};

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


/* Free every layer's primitives and buffers (on a change of layers or
 * thread count, and at the end). */
static void unplan(asl_net *net)
{
    net_deactivate(net);
    for (int k = 0; k < ASL_MAX_SIZES; k++)
        if (net->sizes[k].h) net_drop_size(net, k);
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
    asl_status st = net_init_copy(net, l, i, net->probe[1], in2, &t);
    if (st != ASL_OK) return st;
    if (t.ops->destroy) t.ops->destroy(&t);
    if (l->ops->merge) {   /* matching shapes at both probe sizes */
        const asl_layer *src = &net->layers[l->d.source];
        for (int k = 0; k < 2; k++) {
            int at[2] = {net->in[0] < 0 ? probe_size[k][0] : net->in[0],
                         net->in[1] < 0 ? probe_size[k][1] : net->in[1]};
            ASL_TRY(net_check_merge_shapes(net, i, k ? t.in : l->in, src->probe_out[k], at));
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
             ? net_check_merge_shapes(net, net->nlayers, l->in, l->in2, NULL) : ASL_OK;
    if (st != ASL_OK) return st;
    if (ops->merge && net->dynamic) {
        int at[2] = {net->in[0] < 0 ? probe_size[0][0] : net->in[0],
                     net->in[1] < 0 ? probe_size[0][1] : net->in[1]};
        ASL_TRY(net_check_merge_shapes(net, net->nlayers, l->in, l->in2, at));
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

asl_status net_check_layer(const asl_net *net, int i)
{
    if (i < 0 || i >= net->nlayers) {
        asl_fail((asl_ctx *)&net->ctx, ASL_ERR_ARG,
                 "layer index %d out of range [0, %d)", i, net->nlayers);
        return ASL_ERR_ARG;
    }
    return ASL_OK;
}

asl_status net_check_param(const asl_net *net, int i, int j)
{
    ASL_TRY(net_check_layer(net, i));
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
    ASL_TRY(net_check_layer(net, i));
    memcpy(shape, net->dynamic ? net->layers[i].any_out : net->layers[i].out,
           3 * sizeof(int));
    return ASL_OK;
}

asl_status asl_net_output_shape_at(asl_net *net, int i, int h, int w, int shape[3])
{
    int k;
    ASL_TRY(net_check_layer(net, i));
    ASL_TRY(net_check_size(net, h, w));
    if (!net->dynamic) {
        memcpy(shape, net->layers[i].out, 3 * sizeof(int));
        return ASL_OK;
    }
    ASL_TRY(net_make_size(net, h, w, &k));
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
    ASL_TRY(net_check_param(net, i, j));
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
    ASL_TRY(net_check_param(net, i, j));
    *data = net->layers[i].p[j].data;
    return ASL_OK;
}

asl_status asl_net_bind_param(asl_net *net, int i, int j, float *data)
{
    asl_param *p;
    ASL_TRY(net_check_param(net, i, j));
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
    ASL_TRY(net_check_param(net, i, j));
    *grad = net->layers[i].p[j].grad;
    return ASL_OK;
}

asl_status asl_net_set_trainable(asl_net *net, int i, int trainable)
{
    ASL_TRY(net_check_layer(net, i));
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
    ASL_TRY(net_check_layer(net, i));
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
