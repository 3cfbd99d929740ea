/* net_train.c - backward, optimizer steps, the loss and training steps
 * (see network.c and net_internal.h). */
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

int net_first_trainable(const asl_net *net)
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
    int stop = dx_user ? 0 : net_first_trainable(net);

    if (stop < net->forward_start)
        return asl_fail(c, ASL_ERR_STATE,
                        "backward must reach layer %d, but the forward pass started "
                        "at layer %d (a trainable layer lies below it)", stop,
                        net->forward_start);
    /* backward reads the outputs of layers stop-1 .. from */
    if (net->fused_hi >= 0 && net->fused_hi >= stop - 1) ASL_TRY(net_unfuse(net));

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
        ASL_TRY(net_ensure_buf(net, &l->dybuf, &l->dybuf_cap, padded(net->n, l->out),
                           "gradients"));
        l->dy = l->dybuf;
        if (l->ops->grad2)
            ASL_TRY(net_ensure_buf(net, &l->dx2buf, &l->dx2buf_cap, padded(net->n, l->in2),
                               "gradients"));
    }
    ASL_TRY(net_alloc_param_grads(net));
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
    net_apply_threads(net);
    if (!dx && net_first_trainable(net) >= net->nlayers) return ASL_OK;  /* all frozen */
    ASL_TRY(begin_backward(net, dx ? 0 : net_first_trainable(net)));
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
    ASL_TRY(net_check_param(net, i, j));
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
    if (start < 0 || start >= net->nlayers || net_first_trainable(net) < start)
        return asl_fail(c, ASL_ERR_ARG,
                        "train_step from layer %d: a layer below it is trainable "
                        "(first trainable: %d)", start, net_first_trainable(net));
    ASL_TRY(net_run_forward(net, x, n, 1, start, net->nlayers));
    p = net->layers[k].y;
    if (y_pred) memcpy(y_pred, p, (size_t)n * classes * sizeof(float));
    ASL_TRY(begin_backward(net, net_first_trainable(net)));
    /* Nothing trainable at or below the output (everything frozen): the
     * loss only, no gradient, no update (Keras: "no trainable weights"). */
    g = net_first_trainable(net) <= k ? (float *)net->layers[k].dy : NULL;
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
    ASL_TRY(net_check_layer(net, i));
    *folds = (int64_t)asl_fused_folds(&net->layers[i]);
    return ASL_OK;
}

asl_status asl_net_layer_calls(const asl_net *net, int i, int64_t *fwd,
                               int64_t *bwd)
{
    ASL_TRY(net_check_layer(net, i));
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

