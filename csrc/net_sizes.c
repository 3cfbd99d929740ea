/* net_sizes.c - size states: one network at many input sizes
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

/* ---- size states (nets of any input size) ---------------------------- */

/* Free the state's layer privs (not active: they are not in the layers). */
void net_drop_size(asl_net *net, int k)
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
void net_deactivate(asl_net *net)
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
    net_deactivate(net);
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
asl_status net_init_copy(asl_net *net, const asl_layer *l, int index, const int in[3],
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
asl_status net_check_merge_shapes(asl_net *net, int index, const int in[3],
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
asl_status net_make_size(asl_net *net, int h, int w, int *k)
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
        net_drop_size(net, slot);
    }
    s = &net->sizes[slot];
    s->io = calloc((size_t)net->nlayers + 1, sizeof *s->io);
    s->priv = calloc((size_t)net->nlayers + 1, sizeof *s->priv);
    s->fusion = calloc((size_t)net->nlayers + 1, sizeof *s->fusion);
    s->n = calloc((size_t)net->nlayers + 1, sizeof *s->n);
    if (!s->io || !s->priv || !s->fusion || !s->n) {
        net_drop_size(net, slot);
        return asl_fail(c, ASL_ERR_NOMEM, "out of memory (state of input size %dx%d)", h, w);
    }
    for (int i = 0; i < net->nlayers; i++) {
        const asl_layer *l = &net->layers[i];
        asl_layer t;
        const int *in2 = l->ops->merge ? s->io[l->d.source] + 3 : NULL;
        asl_status st = net_init_copy(net, l, i, in, in2, &t);
        if (st == ASL_OK && l->ops->merge) {
            st = net_check_merge_shapes(net, i, t.in, s->io[l->d.source] + 3, NULL);
            if (st != ASL_OK && t.ops->destroy) t.ops->destroy(&t);
        }
        if (st != ASL_OK) {
            snprintf(why, sizeof why, "%s", c->err);
            net_drop_size(net, slot);
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
            if (k == net->cur) net_deactivate(net);
            net_drop_size(net, k);
        }
    net->min_in[0] = h;
    net->min_in[1] = w;
    return ASL_OK;
}

/* Is h x w an input size of this net (a fixed net: its own)? */
asl_status net_check_size(asl_net *net, int h, int w)
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
    ASL_TRY(net_check_size(net, h, w));
    if (!net->dynamic) return ASL_OK;
    if (net->cur >= 0 && net->sizes[net->cur].h == h && net->sizes[net->cur].w == w) {
        net->sizes[net->cur].used = ++net->clock;
        return ASL_OK;
    }
    ASL_TRY(net_make_size(net, h, w, &k));
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
