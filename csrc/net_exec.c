/* net_exec.c - buffers, plans, int8 ranges and the forward over a layer
 * range (fused groups, int8, bfloat16)
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

#ifdef ASL_SCIPY_OPENBLAS
void scipy_openblas_set_num_threads(int num_threads);
#define ASL_BLAS_THREADS scipy_openblas_set_num_threads
#else
void openblas_set_num_threads(int num_threads);
#define ASL_BLAS_THREADS openblas_set_num_threads
#endif


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

void net_apply_threads(asl_net *net)
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
asl_status net_ensure_buf(asl_net *net, float **buf, size_t *cap, size_t need,
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
        ASL_TRY(net_ensure_buf(net, &l->ybuf, &l->ybuf_cap, padded(l->n, l->out), "activations"));
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
        asl_status st = net_ensure_buf(net, &net->tmp[k], &cap, need, "activations");
        if (st != ASL_OK) {
            net->tmp_cap = 0;   /* tmp[k] is gone: both are reallocated next time */
            return st;
        }
    }
    net->tmp_cap = need;
    return ASL_OK;
}

/* Parameter gradients of trainable layers. */
asl_status net_alloc_param_grads(asl_net *net)
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
 * other backwards that need them recompute them first (net_unfuse()). */
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
 * there (net_unfuse()).  An inference forward keeps nothing. */
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

/* Layers [i, hi] ran as one group: all but its last output are skipped (the
 * last too unless kept); each counts as called once. */
static void mark_group(asl_net *net, int i, int hi, int keep)
{
    for (int k = i; k <= hi; k++) {
        net->layers[k].fused = k < hi || !keep;
        net->layers[k].in_group = k == hi && keep;
        net->layers[k].calls_fwd++;
        if (net->layers[k].fused) net->fused_hi = k;
    }
}

/* Run layers [start, stop) on x (the input of layer start); the output
 * stays in layer stop-1's buffer.  Fused groups count a forward call for
 * each of their layers (layer_calls).  In bfloat16 mode, a fused group
 * whose output only feeds the next fused group writes it as bfloat16
 * (cur_bf16); such outputs are transient, so no one else reads them. */
asl_status net_run_forward(asl_net *net, const float *x, int n, int training,
                              int start, int stop)
{
    asl_ctx *c = &net->ctx;
    const float *cur = x;
    int ft = net_first_trainable(net), finite = -1, cur_kept = 1, cur_bf16 = 0, planned = 0;
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
    net_apply_threads(net);
    net->forward_done = 0;
    net->fused_hi = -1;
    net->n = n;
    ASL_TRY(plan_tmp(net, n));
    /* own a copy of x: backward needs it after the caller's array is gone */
    in_size = (size_t)n * numel(net->layers[start].in);
    ASL_TRY(net_ensure_buf(net, &net->input, &net->input_size, in_size, "input copy"));
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
                mark_group(net, i, hi, keep);
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
                mark_group(net, i, hi, keep);
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
    st = net_run_forward(net, x, n, 0, 0, net->nlayers);
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
asl_status net_unfuse(asl_net *net)
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
    ASL_TRY(net_run_forward(net, x, n, training, start, stop));
    memcpy(y, net->layers[stop - 1].y,
           (size_t)n * numel(net->layers[stop - 1].out) * sizeof(float));
    return ASL_OK;
}

asl_status asl_net_forward(asl_net *net, const float *x, int n, int training,
                           float *y)
{
    return asl_net_forward_range(net, 0, net->nlayers, x, n, training, y);
}

