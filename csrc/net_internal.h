/* net_internal.h - what the executor's files share: the network struct, its
 * size states and small helpers.  network.c: create, layers, parameters,
 * settings; net_sizes.c: nets of any input size; net_exec.c: buffers,
 * plans, int8 ranges and the forward (fused groups, int8, bfloat16);
 * net_train.c: backward, optimizer steps, loss, training steps.  Plain C11,
 * no Python. */
#ifndef ASLNET_NET_INTERNAL_H
#define ASLNET_NET_INTERNAL_H

#include "internal.h"


/* Shapes, priv and plans of every layer at one input size (see above). */
typedef struct {
    int h, w;                /* input size; 0: slot unused              */
    uint64_t used;           /* last activation (LRU clock)             */
    int (*io)[6];            /* per layer: in[3], out[3]                */
    void **priv, **fusion;   /* per layer                               */
    int *n;                  /* per layer: planned batch size           */
} size_state;

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

static inline size_t numel(const int s[3]) { return (size_t)s[0] * s[1] * s[2]; }

/* Floats of a batch of `s`, rounded up to 64 bytes: every buffer starts
 * aligned, so results never depend on where a tensor lives. */
static inline size_t padded(int n, const int s[3])
{
    return ((size_t)n * numel(s) + 15) & ~(size_t)15;
}

static inline const int *net_out(const asl_net *net)
{
    return net->nlayers ? net->layers[net->nlayers - 1].out : net->in;
}

/* Between the executor's files (hidden from the module: -fvisibility=hidden). */
void net_deactivate(asl_net *net);
void net_drop_size(asl_net *net, int k);
asl_status net_init_copy(asl_net *net, const asl_layer *l, int index, const int in[3], const int *in2, asl_layer *t);
asl_status net_check_merge_shapes(asl_net *net, int index, const int in[3], const int src[3], const int *probe);
asl_status net_check_size(asl_net *net, int h, int w);
asl_status net_make_size(asl_net *net, int h, int w, int *k);
asl_status net_alloc_param_grads(asl_net *net);
void net_apply_threads(asl_net *net);
asl_status net_ensure_buf(asl_net *net, float **buf, size_t *cap, size_t need, const char *what);
asl_status net_run_forward(asl_net *net, const float *x, int n, int training, int start, int stop);
asl_status net_unfuse(asl_net *net);
asl_status net_check_param(const asl_net *net, int i, int j);
asl_status net_check_layer(const asl_net *net, int i);
int net_first_trainable(const asl_net *net);

#endif
