/*
 * internal.h - what layer files and the executor share.  Plain C11, no
 * Python.  One file per layer kind implements an asl_layer_ops table:
 *
 *   init     validate l->d against l->in, set l->out, declare l->p[] with
 *            asl_param_declare() (which allocates zeroed storage) and fill
 *            parameter defaults (batch norm gamma = 1, moving_variance = 1)
 *   plan     build oneDNN primitives for batch size l->n (called again when
 *            n changes; release() runs first).  Data pointers are NOT known
 *            here: bind them at execution time (dnnl_memory_set_data_handle).
 *   forward  y = f(x).  `training` is the network's mode; a frozen layer
 *            (l->trainable == 0) runs in inference mode (batch norm).  The
 *            executor may skip it: a group conv -> batch norm (inference
 *            mode) [-> relu/relu6], with a zero padding before it, can run
 *            as one convolution (fusion.c), and then only the group's last
 *            y is written.  Before a backward that needs the others, the
 *            executor recomputes them with the layers' own forward.
 *   backward given dy (gradient w.r.t. y): if l->trainable, write the
 *            gradients of weight params into l->p[j].grad (overwrite, not
 *            accumulate); if l->dx != NULL, write the gradient w.r.t. x.
 *            If l->fused_softmax_ce, dy already is the gradient w.r.t. the
 *            pre-softmax logits (the executor fused softmax+cross-entropy).
 *            A merge layer (ops.merge: add.c, merge.c) reads l->x and l->x2
 *            (the output of layer d.source, of shape l->in2, which the
 *            executor sets before init).  An add's backward writes dx only
 *            and the executor carries dy to the source layer; a layer with
 *            ops.grad2 also writes the gradient w.r.t. x2 into l->dx2 when
 *            it is not NULL, and the executor carries that instead.
 *   release  free what plan() made (primitives, memories); idempotent.
 *   destroy  free priv entirely (after release).
 *
 * A net of any input size (h and/or w of -1) runs init once per input size
 * on a copy of the layer (see net_sizes.c, size states): init must compute
 * out, priv and parameters from l->in alone, and declare the same
 * parameters for every size (else the layer needs a fixed-size input).
 */
#ifndef ASLNET_INTERNAL_H
#define ASLNET_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "aslnet.h"

#define ASL_MAX_PARAMS 4
#define ASL_MAX_ARGS 16
#define ASL_ERRLEN 512

/* Per-network runtime context; never shared between networks. */
typedef struct asl_ctx {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_attr_t attr;   /* user-managed scratchpad mode        */
    void *scratch;                /* one scratchpad for every primitive, */
    size_t scratch_size;          /* grown by asl_prim_create (bytes)    */
    int num_threads;
    int bf16;                     /* convolutions in bfloat16 (fusion.c,  */
                                  /* conv2d.c)                            */
    int int8;                     /* fused groups in int8 (quantize.c)    */
    int int8_vnni;                /* asl_int8_vnni(), when int8 was set   */
    asl_allreduce_fn allreduce;   /* data-parallel sums, or NULL          */
    void *allreduce_user;         /* (asl_net_set_allreduce)              */
    char err[ASL_ERRLEN];
} asl_ctx;

typedef struct {
    char name[32];
    int ndim;
    int dims[4];
    size_t size;
    int is_weight;
    float *data;      /* storage in use (own or bound)            */
    float *own;       /* C-owned storage, NULL when bound          */
    float *grad;      /* allocated by the executor when trainable  */
    float *slot[ASL_OPT_MAX_SLOTS]; /* optimizer state, allocated on first step */
} asl_param;

typedef struct asl_layer asl_layer;

typedef struct {
    const char *name;
    int alias;        /* output is the input (reshape): no buffers   */
    int random;       /* a training forward draws random numbers: the  */
                      /* executor keeps its output, never recomputes it */
    int merge;        /* a second input: x2, the output of d.source     */
    int grad2;        /* merge: backward writes dx2 (else it is dy)     */
    asl_status (*init)(asl_layer *l, asl_ctx *c);
    asl_status (*plan)(asl_layer *l, asl_ctx *c);
    asl_status (*forward)(asl_layer *l, asl_ctx *c, int training);
    asl_status (*backward)(asl_layer *l, asl_ctx *c, int training);
    void (*release)(asl_layer *l);
    void (*destroy)(asl_layer *l);
} asl_layer_ops;

struct asl_layer {
    asl_layer_desc d;
    const asl_layer_ops *ops;
    int in[3], out[3];      /* per-sample (h, w, c)                       */
    int n;                  /* planned batch size                         */
    int trainable;
    int nparams;
    asl_param p[ASL_MAX_PARAMS];
    uint64_t weights_version; /* bumped whenever parameter values change  */
    const float *x;         /* input  [n, in]   (set by executor)         */
    float *y;               /* output [n, out]                            */
    float *dx;              /* grad wrt input, NULL when not needed       */
    const float *dy;        /* grad wrt output                            */
    int fused_softmax_ce;
    const float *logits;    /* softmax output layers: the pre-softmax values
                               of the last forward, if kept (else NULL)  */
    uint64_t rng;           /* dropout state                              */
    int64_t calls_fwd, calls_bwd;
    int fused;              /* the last forward left y unavailable: the   */
                            /* layer ran inside a fused group (fusion.c) */
                            /* or wrote a transient buffer (executor)     */
    int in_group;           /* y kept, but written by a fused group: the  */
                            /* layer's own forward state is unset        */
    float *ybuf, *dybuf;    /* executor-owned output and output-gradient  */
    size_t ybuf_cap, dybuf_cap; /* buffers, their capacity in floats      */
    void *fusion;           /* conv/depthwise: fused-group state          */
    void *priv;
    const float *x2;        /* merge: the output of layer d.source (set by */
                            /* the executor, like x)                      */
    int in2[3];             /* merge: per-sample shape of x2 (set before  */
                            /* init, per input size)                      */
    float *dx2;             /* merge with grad2: grad wrt x2, NULL when   */
                            /* not needed (set by the executor)           */
    float *dx2buf;          /* executor-owned buffer of dx2               */
    size_t dx2buf_cap;
    int is_source;          /* a merge reads this layer's output: the     */
                            /* executor keeps it in its own buffer        */
    int y_finite;           /* the last forward's y is known to hold no   */
                            /* NaN/Inf (executor; see run_forward)        */
    int any_in[3], any_out[3]; /* net of any input size: the shapes with  */
                            /* -1 where they follow the input size (in,  */
                            /* out, priv, fusion, n: the active size's)   */
    int probe_out[2][3];    /* and the outputs at its two probe sizes     */
};

/* ---- errors -------------------------------------------------------- */
asl_status asl_fail(asl_ctx *c, asl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *asl_dnnl_str(dnnl_status_t s);

/* Return on oneDNN failure (use where nothing needs cleanup). */
#define ASL_DNNL(c, call)                                                  \
    do {                                                                   \
        dnnl_status_t s_ = (call);                                         \
        if (s_ != dnnl_success)                                            \
            return asl_fail((c), ASL_ERR_DNNL, "oneDNN: %s: %s (%s:%d)",   \
                            #call, asl_dnnl_str(s_), __FILE__, __LINE__);  \
    } while (0)

/* Jump to `label` on oneDNN failure, with `st` set. */
#define ASL_DNNL_GOTO(c, st, call, label)                                  \
    do {                                                                   \
        dnnl_status_t s_ = (call);                                         \
        if (s_ != dnnl_success) {                                          \
            (st) = asl_fail((c), ASL_ERR_DNNL, "oneDNN: %s: %s (%s:%d)",   \
                            #call, asl_dnnl_str(s_), __FILE__, __LINE__);  \
            goto label;                                                    \
        }                                                                  \
    } while (0)

#define ASL_TRY(expr)                                                      \
    do {                                                                   \
        asl_status t_ = (expr);                                            \
        if (t_ != ASL_OK) return t_;                                       \
    } while (0)

/* ---- memory ------------------------------------------------------- */
void *asl_alloc(size_t bytes);            /* 64-byte aligned, NULL on fail */
void *asl_calloc(size_t bytes);           /* zeroed                        */
void asl_free(void *p);

/* ---- one gradient buffer (grad_buffer.c) ------------------------- */
/* The gradients of every weight of the trainable layers as slots of one
 * buffer (data-parallel training sums it across processes). */
typedef struct {
    float *buf;      /* NULL until packed */
    size_t count;    /* floats, padding included */
} asl_grad_flat;
/* Give each weight of a trainable layer its slot (values kept); a no-op
 * when the slots are in place. */
asl_status asl_grad_flat_pack(asl_grad_flat *f, asl_layer *layers, int nlayers,
                              asl_ctx *c);
/* Whether grad points into the buffer (not to be freed on its own). */
int asl_grad_flat_owns(const asl_grad_flat *f, const float *grad);
void asl_grad_flat_release(asl_grad_flat *f);

/* Memory descriptor of an NHWC activation of logical dims (n, c, h, w). */
asl_status asl_md_nhwc(asl_ctx *c, dnnl_memory_desc_t *md, int n, int h,
                       int w, int ch);

/* A oneDNN primitive with its scratchpad wiring. */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t scratch;   /* NULL when the primitive needs none */
} asl_prim;

/* Create the primitive of pd (made with c->attr or an attr in user
 * scratchpad mode) and grow the shared scratchpad to fit it (execution
 * binds the scratchpad each time, so growing later is safe).  pd is not
 * destroyed. */
asl_status asl_prim_create(asl_ctx *c, asl_prim *p,
                           const_dnnl_primitive_desc_t pd);
/* Execute with args (+ the scratchpad), synchronously. */
asl_status asl_prim_exec(asl_ctx *c, asl_prim *p, int nargs,
                         dnnl_exec_arg_t *args);
void asl_prim_destroy(asl_prim *p);

/* A memory object whose data handle is set right before each use. */
asl_status asl_mem_create(asl_ctx *c, dnnl_memory_t *m,
                          const_dnnl_memory_desc_t md);
asl_status asl_mem_bind(asl_ctx *c, dnnl_memory_t m, const void *data);

/* Weights kept in Keras layout by the net, in `prim_md` layout for a
 * primitive: reordered when (and only when) the version changes. */
typedef struct {
    dnnl_memory_t user;      /* Keras layout, bound to the param data  */
    dnnl_memory_t prim;      /* primitive layout (== user if same md)   */
    void *prim_buf;          /* owned buffer of prim when it differs    */
    asl_prim reorder;        /* user -> prim                            */
    asl_prim reorder_back;   /* prim -> user (for gradients)            */
    uint64_t version;        /* version of data in prim                 */
    int same;                /* no reorder needed                       */
} asl_wmem;

asl_status asl_wmem_init(asl_ctx *c, asl_wmem *w, const_dnnl_memory_desc_t user_md,
                         const_dnnl_memory_desc_t prim_md, int need_back);
/* Memory holding `data` in primitive layout (reorders if stale). */
asl_status asl_wmem_get(asl_ctx *c, asl_wmem *w, const float *data,
                        uint64_t version, dnnl_memory_t *out);
void asl_wmem_destroy(asl_wmem *w);

/* bfloat16 <-> float32 (round to nearest even, NaN stays NaN), threaded. */
void asl_to_bf16(const float *x, uint16_t *y, size_t count);
void asl_from_bf16(const uint16_t *x, float *y, size_t count);
/* Round x[count] into *buf, grown (kept across calls) to hold count values;
 * *cap: its capacity in values. */
asl_status asl_round_bf16(asl_ctx *c, uint16_t **buf, size_t *cap,
                          const float *x, size_t count);
/* Is pd one of oneDNN's reference implementations (slower than any jit
 * kernel: a bfloat16 one is refused in favour of float32)? */
int asl_pd_is_ref(const_dnnl_primitive_desc_t pd);

/* ---- BLAS ----------------------------------------------------------- */
/* Row-major C = alpha * op(A) op(B) + beta * C (OpenBLAS). */
void asl_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta,
               float *cm, int ldc);
/* out[j] = sum over the rows of a[rows][cols] (a bias gradient). */
void asl_col_sums(const float *a, int rows, int cols, float *out);

/* Dilation rate of a conv along axis k (0: height, 1: width); 0 means 1. */
static inline int asl_dilation(const asl_layer_desc *d, int k)
{
    return d->dilation[k] > 1 ? d->dilation[k] : 1;
}

/* ---- layer kinds ------------------------------------------------------ */
extern const asl_layer_ops asl_conv2d_ops;
extern const asl_layer_ops asl_depthwise_conv2d_ops;
extern const asl_layer_ops asl_zero_padding2d_ops;
extern const asl_layer_ops asl_batch_norm_ops;
/* batch_norm.c: a synchronized layer's part on a rank without rows */
asl_status asl_bn_sync_idle(asl_layer *l, asl_ctx *c, int backward);
extern const asl_layer_ops asl_activation_ops;
extern const asl_layer_ops asl_global_avg_pool_ops;
extern const asl_layer_ops asl_global_max_pool_ops;
extern const asl_layer_ops asl_dropout_ops;
extern const asl_layer_ops asl_reshape_ops;
extern const asl_layer_ops asl_dense_ops;
extern const asl_layer_ops asl_add_ops;
extern const asl_layer_ops asl_multiply_ops;        /* merge.c     */
extern const asl_layer_ops asl_concatenate_ops;
extern const asl_layer_ops asl_max_pool_ops;        /* pool2d.c    */
extern const asl_layer_ops asl_avg_pool_ops;
extern const asl_layer_ops asl_rescaling_ops;       /* rescaling.c */
extern const asl_layer_ops asl_resizing_ops;        /* resizing.c  */
extern const asl_layer_ops asl_center_crop_ops;
extern const asl_layer_ops asl_random_flip_ops;     /* augment.c   */
extern const asl_layer_ops asl_random_affine_ops;
extern const asl_layer_ops asl_random_contrast_ops;
extern const asl_layer_ops asl_separable_conv2d_ops; /* separable.c */

/* Declare parameter j of l and allocate its C-owned storage, zeroed (init
 * may then fill defaults, e.g. batch norm gamma = 1).  Sets l->nparams. */
asl_status asl_param_declare(asl_ctx *c, asl_layer *l, int j,
                             const char *name, int is_weight, int ndim,
                             const int *dims);

/* In-place activations on n*size floats (row softmax over `classes`). */
void asl_act_forward(asl_activation a, float *y, size_t count, int classes);
/* dz = act'(.) * dy, given the activation output y. */
void asl_act_backward(asl_activation a, const float *y, const float *dy,
                      float *dz, size_t count, int classes);

/* ---- fused inference (fusion.c) ------------------------------------ */
/* Run the group g[0 .. count): [zero_padding2d,] conv2d or depthwise_conv2d
 * (linear activation), batch_normalization in inference mode [, activation
 * relu or relu6] as ONE convolution: batch norm folded into the weights and
 * a bias, the activation as a post-op, the padding merged into the
 * convolution's.  Reads g[0].x, writes only g[count-1].y.  *ran = 0 (and
 * nothing written, no error) when oneDNN has no such convolution.
 * With c->bf16 the convolution computes in bfloat16: g[0].x holds bfloat16
 * values if x_bf16 (else float32, rounded first), and y is written as
 * bfloat16 if y_bf16 (else float32).  Without c->bf16 both must be 0.  The
 * state lives in the conv layer's `fusion`: the conv releases it with its
 * primitives (asl_fused_release) and destroys it (asl_fused_destroy). */
asl_status asl_fused_forward(asl_ctx *c, asl_layer *g, int count, int x_bf16,
                             int y_bf16, int *ran);
void asl_fused_release(asl_layer *conv);
/* How many times the group held by conv folded its batch norm (0: none). */
uint64_t asl_fused_folds(const asl_layer *conv);
void asl_fused_destroy(asl_layer *conv);

/* The folded parameters of a group (fusion.c's rule; refolded when the conv's
 * or the batch norm's weights changed), for the int8 path. */
typedef struct {
    const float *w, *b;     /* kernel (Keras layout), bias (out channels) */
    size_t wsize;
    uint64_t version;       /* changes with every refold                  */
    int finite;             /* no NaN/Inf among them                      */
    void **int8;            /* quantize.c's state, kept with the group's  */
} asl_folded;
asl_status asl_fused_params(asl_ctx *c, asl_layer *conv, const asl_layer *bn,
                            asl_folded *p);

/* ---- int8 inference (quantize.c) ------------------------------------ */
/* Element types of an int8-path activation. */
typedef enum { ASL_Q_F32 = 0, ASL_Q_U8, ASL_Q_S8 } asl_qtype;
/* Run the fused group g[0 .. count) (as asl_fused_forward) as ONE oneDNN
 * int8 convolution: the folded kernel quantized per output channel
 * (symmetric, scale max|w| / 127), the input of type xt (u8 or s8) with
 * per-tensor scale sx (x_f32: g[0].x holds float32 values, quantized first:
 * round half to even, saturated), s32 accumulation, y = act(sx * sw[o] * acc + b[o]) written
 * as float32 (yt ASL_Q_F32) or requantized with scale sy.  *ran = 0 (and
 * nothing written, no error) when oneDNN has no jit int8 kernel for it or
 * the folded parameters are not finite. */
asl_status asl_int8_forward(asl_ctx *c, asl_layer *g, int count, int x_f32,
                            asl_qtype xt, float sx, asl_qtype yt, float sy,
                            int *ran);
void asl_int8_release(void *state);   /* primitives; NULL is a no-op */
void asl_int8_destroy(void *state);   /* everything                 */

/* ---- optimizers (optimizers.c) ------------------------------------ */
/* What one step of an optimizer shares across weights, from the
 * descriptor, the step number t (1 for the first step) and the sum of the
 * squares of all gradients of the step (read only with global_clipnorm). */
typedef struct {
    float lr;           /* learning rate                                 */
    float wd_lr;        /* weight_decay * lr (0: no decay)                */
    float scale;        /* global_clipnorm's scale (1: none)              */
    float alpha;        /* Adam: lr sqrt(1 - b2^t) / (1 - b1^t)           */
    float c_m, c_g, c_v; /* Nadam: u_{t+1} / (1 - U_{t+1}), (1 - u_t) /   */
                        /* (1 - U_t), 1 / (1 - b2^t) (U: u_product)       */
} asl_opt_step;

/* Check a descriptor: ASL_ERR_ARG and a message naming the argument. */
asl_status asl_opt_check(asl_ctx *c, const asl_optimizer_desc *o);
/* Initial value of slot k (Adagrad's accumulator; else 0). */
float asl_opt_slot_init(const asl_optimizer_desc *o, int k);
/* Whether the step needs the global gradient norm (global_clipnorm). */
int asl_opt_global_norm(const asl_optimizer_desc *o);
/* Sum of squares of n floats, in double. */
double asl_opt_sumsq(const float *g, size_t n);
void asl_opt_begin(const asl_optimizer_desc *o, int64_t t, double sumsq,
                   asl_opt_step *s);
/* Update p->data (and its slots, all allocated) from p->grad, which is
 * read, never written (clipping happens on the fly). */
void asl_opt_update(const asl_optimizer_desc *o, const asl_opt_step *s,
                    asl_param *p);

#endif /* ASLNET_INTERNAL_H */
