/*
 * aslnet.h - public C API of the aslnet core.
 *
 * A network is a chain of layers (MobileNet v1 and the tutorial's model are
 * chains); an add layer (ASL_LAYER_ADD) adds the output of an earlier layer
 * to the chain's (MobileNetV2's residual connections), a multiply or
 * concatenate layer multiplies them or puts them side by side (merge
 * layers: the chain's output and one earlier layer's).  Activations are
 * float32 NHWC; a sample's shape is always (h, w, c) (a vector of n
 * features is (1, 1, n)).  C owns activations, gradients,
 * optimizer state and oneDNN primitives; parameters live in C-owned storage
 * or in caller-owned storage bound with asl_net_bind_param().
 *
 * Every function returns an asl_status; on failure asl_net_last_error() says
 * why.  Nothing here aborts or exits.
 *
 * State.  A network owns all of its state (buffers, primitives, optimizer
 * state, its last error); the core has no mutable globals of its own and
 * two networks share no aslnet data.  Process-wide state of the libraries
 * underneath is touched, though:
 *  - OpenBLAS's thread count is process-wide: each forward/backward sets it
 *    to the network's count (asl_net_set_num_threads; 0: all cores), so the
 *    network that ran last sets it for every OpenBLAS user in the process;
 *  - omp_set_num_threads sets the calling thread's OpenMP thread count,
 *    which later OpenMP regions started by that thread inherit;
 *  - oneDNN's primitive cache is process-wide (thread-safe): networks with
 *    identical layer shapes may share a compiled primitive, never data;
 *    oneDNN reads its CPU dispatch limit (ONEDNN_MAX_CPU_ISA) once per
 *    process.
 * One network must not be entered from two threads at once (the Python
 * binding refuses that); distinct networks may run concurrently, the
 * thread counts above being their one interaction.
 */
#ifndef ASLNET_H
#define ASLNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ASL_OK = 0,
    ASL_ERR_ARG,      /* invalid argument (message says which)         */
    ASL_ERR_SHAPE,    /* shapes do not fit                             */
    ASL_ERR_NOMEM,    /* an allocation failed                          */
    ASL_ERR_DNNL,     /* oneDNN reported an error                      */
    ASL_ERR_STATE     /* call out of order (e.g. backward w/o forward) */
} asl_status;

typedef enum {
    ASL_LAYER_CONV2D = 1,
    ASL_LAYER_DEPTHWISE_CONV2D,
    ASL_LAYER_ZERO_PADDING2D,
    ASL_LAYER_BATCH_NORM,
    ASL_LAYER_ACTIVATION,
    ASL_LAYER_GLOBAL_AVG_POOL,
    ASL_LAYER_GLOBAL_MAX_POOL,
    ASL_LAYER_DROPOUT,
    ASL_LAYER_RESHAPE,
    ASL_LAYER_DENSE,
    ASL_LAYER_ADD,            /* previous output + output of layer source  */
    ASL_LAYER_MAX_POOL,       /* MaxPooling2D: kernel, strides, padding     */
    ASL_LAYER_AVG_POOL,       /* AveragePooling2D (padding excluded, as TF) */
    ASL_LAYER_RESCALING,      /* y = x * scale + offset                     */
    ASL_LAYER_RESIZING,       /* to target[0] x target[1] (interpolation,   */
                              /* crop_to_aspect_ratio); no backward         */
    ASL_LAYER_CENTER_CROP,    /* the centre target[0] x target[1]           */
    ASL_LAYER_RANDOM_FLIP,    /* training only (else identity): flip        */
    ASL_LAYER_RANDOM_AFFINE,  /* training only: rotation / zoom / shift     */
    ASL_LAYER_RANDOM_CONTRAST,/* training only: (x - mean) * f + mean       */
    ASL_LAYER_SEPARABLE_CONV2D,/* depthwise (no bias) then 1x1 conv2d       */
    ASL_LAYER_MULTIPLY,       /* previous output * output of layer source  */
    ASL_LAYER_CONCATENATE     /* previous output and output of layer source */
                              /* side by side along channels (source_first: */
                              /* the source's channels first)               */
} asl_layer_kind;

typedef enum {
    ASL_ACT_LINEAR = 0,
    ASL_ACT_RELU,
    ASL_ACT_RELU6,
    ASL_ACT_SOFTMAX,
    ASL_ACT_SIGMOID,          /* the activation layer only (conv and dense  */
    ASL_ACT_TANH,             /* take linear, relu, relu6, softmax)         */
    ASL_ACT_SWISH,            /* x * sigmoid(x) (Keras swish / silu)        */
    ASL_ACT_RELU_ARGS         /* Keras's ReLU(max_value, negative_slope,    */
                              /* threshold) and LeakyReLU: desc.relu        */
} asl_activation;

/* Interpolation and fill mode of the preprocessing layers (Keras's). */
typedef enum { ASL_INTERP_BILINEAR = 0, ASL_INTERP_NEAREST } asl_interpolation;
typedef enum {
    ASL_FILL_REFLECT = 0, ASL_FILL_WRAP, ASL_FILL_CONSTANT, ASL_FILL_NEAREST
} asl_fill_mode;

typedef enum { ASL_PAD_VALID = 0, ASL_PAD_SAME } asl_padding;

/* Description of one layer; fields not used by a kind are ignored. */
typedef struct {
    asl_layer_kind kind;
    int filters;              /* conv2d: output channels; dense: units      */
    int depth_multiplier;     /* depthwise conv (>= 1)                       */
    int kernel[2];            /* kernel height, width                        */
    int strides[2];           /* stride height, width                        */
    asl_padding padding;      /* conv/depthwise: TF/Keras 'valid' / 'same'   */
    int use_bias;             /* conv/depthwise/dense                        */
    int pad[4];               /* zero padding: top, bottom, left, right      */
    asl_activation activation;/* conv/depthwise/dense/activation layer       */
    float momentum, epsilon;  /* batch norm (Keras: 0.99, 1e-3)              */
    float rate;               /* dropout rate in [0, 1)                      */
    uint64_t seed;            /* dropout RNG seed                            */
    int target[3];            /* reshape: per-sample (h, w, c)               */
    int source;               /* add, multiply, concatenate: index of an    */
                              /* earlier layer whose output is the second   */
                              /* input (same shape; concatenate: same h, w) */
    int source_first;         /* concatenate: the source's output first     */
    /* The layers of issue 14 (zero: the defaults below). */
    struct {                  /* activation ASL_ACT_RELU_ARGS: Keras's relu */
        float negative_slope; /* (x > threshold ? x : 0) clipped to         */
        float max_value;      /* [0, max_value] (< 0: no clip), minus       */
        float threshold;      /* negative_slope * max(threshold - x, 0)     */
    } relu;
    int dilation[2];          /* conv2d / depthwise: dilation rate (0 is 1)  */
    float scale, offset;      /* rescaling                                   */
    asl_interpolation interpolation; /* resizing, random_affine              */
    int crop_to_aspect_ratio; /* resizing                                    */
    asl_fill_mode fill_mode;  /* random_affine                               */
    float fill_value;         /* random_affine, ASL_FILL_CONSTANT            */
    int flip;                 /* random_flip: 1 horizontal, 2 vertical, 3    */
                              /* both (one draw per sample flips both, as    */
                              /* Keras 3)                                    */
    float rotation[2];        /* random_affine: angle range, in turns        */
    float zoom[4];            /* random_affine: zoom-1 ranges (h lo, h hi, w */
                              /* lo, w hi); zoom_w_same: the height's zoom   */
    int zoom_w_same;          /* for the width too                           */
    float shift[4];           /* random_affine: shift ranges in fractions of */
                              /* the size (h lo, h hi, w lo, w hi)           */
    float contrast[2];        /* random_contrast: factor in [1-c0, 1+c1]     */
    float value_range[2];     /* random_contrast: output clipped to it       */
    int inference;            /* any kind: always run in inference mode,     */
                              /* even in a training forward (Keras's         */
                              /* nested model(x, training=False)); a         */
                              /* trainable batch norm then uses its moving   */
                              /* statistics, leaves them alone, and still    */
                              /* gets gamma/beta gradients                   */
    int synchronized;         /* batch norm: Keras's synchronized=True; with */
                              /* a reducer set (asl_net_set_allreduce), a   */
                              /* training forward uses the statistics of    */
                              /* the global batch (see batch_norm.c)        */
} asl_layer_desc;

/* Parameter description (Keras order and layout). */
typedef struct {
    const char *name;         /* "kernel", "bias", "gamma", ...             */
    int ndim;
    int dims[4];
    size_t size;              /* number of floats                            */
    int is_weight;            /* 1: trained by the optimizer when the layer  */
                              /* is trainable; 0: a statistic (moving mean)  */
} asl_param_info;

/* Keras 3's optimizers (keras/src/optimizers/), update equations
 * included; AdamW is ASL_OPT_ADAM with a weight_decay.  Each keeps its
 * state in per-weight slots (asl_net_slot), numbered densely in this order:
 *   SGD       momentum (only when momentum > 0)
 *   Adam      m, v [, v_hat when amsgrad]
 *   RMSprop   velocity [, momentum when momentum > 0] [, average_gradient
 *             when centered]
 *   Adagrad   accumulator (starts at initial_accumulator_value)
 *   Nadam     m, v (Keras's scalar u_product follows from the iteration
 *             count: asl_opt_u_product)
 * For all: weight_decay w -= lr * weight_decay * w before the update;
 * clipnorm (each weight's gradient), global_clipnorm (all trainable
 * gradients of the step together), clipvalue: 0 is off, at most one set. */
typedef enum {
    ASL_OPT_SGD = 1, ASL_OPT_ADAM, ASL_OPT_RMSPROP, ASL_OPT_ADAGRAD, ASL_OPT_NADAM
} asl_optimizer_kind;

#define ASL_OPT_MAX_SLOTS 3

typedef struct {
    asl_optimizer_kind kind;
    float learning_rate;
    float momentum;           /* SGD, RMSprop                                */
    int nesterov;             /* SGD                                         */
    float beta_1, beta_2, epsilon; /* Adam, Nadam (Keras: 0.9, 0.999, 1e-7); */
                              /* epsilon also RMSprop, Adagrad               */
    int amsgrad;              /* Adam                                        */
    float rho;                /* RMSprop (Keras: 0.9)                        */
    int centered;             /* RMSprop                                     */
    float initial_accumulator_value; /* Adagrad (Keras: 0.1)                 */
    float weight_decay;       /* all; 0: none                                */
    float clipnorm, clipvalue, global_clipnorm; /* all; 0: off               */
} asl_optimizer_desc;

typedef struct asl_net asl_net;

/* h and/or w may be ASL_ANY_SIZE: a network of any input size in that
 * dimension (see asl_net_set_input_size). */
#define ASL_ANY_SIZE (-1)
asl_status asl_net_create(asl_net **net, int h, int w, int c);
void asl_net_destroy(asl_net *net);
const char *asl_net_last_error(const asl_net *net);

/* Adds a layer.  A merge layer (ASL_LAYER_ADD, _MULTIPLY, _CONCATENATE)
 * needs desc.source, an earlier layer whose output has the shape of the
 * previous layer's (concatenate: its height and width; ASL_ERR_SHAPE
 * otherwise; checked again at each input size of a net of any size).  A
 * layer whose parameters would depend on the input size (dense on a
 * spatial input of a net of any size) is refused. */
asl_status asl_net_add(asl_net *net, const asl_layer_desc *desc);
int asl_net_num_layers(const asl_net *net);
/* Per-sample output shape of a layer; in a net of any input size, -1 where
 * it follows the input size (asl_net_output_shape_at: at one size). */
asl_status asl_net_output_shape(const asl_net *net, int layer, int shape[3]);

/* Input size.  A net of any input size keeps, per input size h x w, every
 * layer's shapes and oneDNN primitives (planned lazily by the forwards at
 * that size, as a fixed net plans per batch size), so alternating sizes
 * plans each size once; at most ASL_MAX_SIZES sizes are kept (the least
 * recently used is dropped).  asl_net_set_input_size selects the size of
 * the next forward and train_step (and so of the backward after them); the
 * first time, it checks that every layer fits that size (ASL_ERR_SHAPE
 * naming the first layer that does not, or the minimum size).  For a fixed
 * net it only checks that h x w is its size.  A forward from layer start >
 * 0 takes the output of layer start-1 at the selected size. */
#define ASL_MAX_SIZES 16
asl_status asl_net_set_input_size(asl_net *net, int h, int w);
/* The selected input size (a fixed net: its own; none yet: 0 x 0). */
void asl_net_input_size(const asl_net *net, int *h, int *w);
/* Output shape of a layer at input size h x w (selects nothing). */
asl_status asl_net_output_shape_at(asl_net *net, int layer, int h, int w,
                                   int shape[3]);
/* Smallest input size accepted (default 1 x 1; Keras's applications
 * take 32 x 32 and up). */
asl_status asl_net_set_min_input_size(asl_net *net, int h, int w);
/* For tests: the input sizes kept now (k in [0, asl_net_num_sizes)), and
 * how many forwards had to build primitives (a new input size or batch
 * size, or layers a forward ran for the first time). */
int asl_net_num_sizes(const asl_net *net);
asl_status asl_net_size(const asl_net *net, int k, int *h, int *w);
int64_t asl_net_num_plans(const asl_net *net);
int asl_net_num_params(const asl_net *net, int layer);
asl_status asl_net_param_info(const asl_net *net, int layer, int j,
                              asl_param_info *info);
/* Pointer to the parameter's storage (C-owned unless bound). */
asl_status asl_net_param_data(asl_net *net, int layer, int j, float **data);
/* Use caller-owned storage of info.size floats; it must outlive the net. */
asl_status asl_net_bind_param(asl_net *net, int layer, int j, float *data);
/* Gradient of the last backward pass (NULL if the param got none). */
asl_status asl_net_param_grad(const asl_net *net, int layer, int j,
                              const float **grad);
asl_status asl_net_set_trainable(asl_net *net, int layer, int trainable);
/* Tell the net parameter values were changed from outside: those of every
 * layer, or those of layer i only (fused groups holding it refold; the
 * others keep their folded, reordered weights). */
void asl_net_weights_changed(asl_net *net);
asl_status asl_net_layer_weights_changed(asl_net *net, int i);
#define ASL_MAX_THREADS 1024
asl_status asl_net_set_num_threads(asl_net *net, int n);

/* Data-parallel jobs (several processes, each with a slice of every global
 * batch): fn(buf, count, user) must sum buf[0..count) over the processes in
 * place, every process calling it in the same order, and return 0 (nonzero:
 * the forward or backward fails with ASL_ERR_STATE; the caller keeps its own
 * reason).  A synchronized batch norm (asl_layer_desc.synchronized) calls it
 * in a training forward (twice: the sums of x and the slice sizes, then the
 * squared deviations from the global mean) and in backward (once: its sums
 * of dy and dy * x_hat, weighted by the slice's share of the global batch,
 * which is how the caller must weight the parameter gradients it sums).
 * fn NULL: one process (synchronized changes nothing).  The reducer belongs
 * to this net only. */
typedef int (*asl_allreduce_fn)(double *buf, size_t count, void *user);
void asl_net_set_allreduce(asl_net *net, asl_allreduce_fn fn, void *user);
/* A rank whose slice of this step's global batch is empty takes part in the
 * sums anyway: the calls of a training step from layer start (forward, then
 * backward) of every trainable synchronized batch norm, contributing zeros;
 * their moving statistics move as on the other ranks.  Nothing else runs. */
asl_status asl_net_sync_idle_step(asl_net *net, int start);

/* Forward a batch x[n,h,w,c] into y[n, output shape]. */
asl_status asl_net_forward(asl_net *net, const float *x, int n, int training,
                           float *y);
/* Forward layers [start, stop) on x, the input of layer start (the output
 * of layer start-1), into y, the output of layer stop-1.  Lets a caller
 * cache the output of frozen layers and train from it. */
asl_status asl_net_forward_range(asl_net *net, int start, int stop,
                                 const float *x, int n, int training,
                                 float *y);
/* Backward from dy (gradient of the last forward's output, n samples: the
 * forward's batch size).  Computes gradients of trainable parameters and,
 * if dx != NULL, of the input; stops at the earliest trainable layer
 * otherwise. */
asl_status asl_net_backward(asl_net *net, const float *dy, int n, float *dx);

asl_status asl_net_set_optimizer(asl_net *net, const asl_optimizer_desc *opt);
asl_status asl_net_set_learning_rate(asl_net *net, float lr);
/* train_step_from without its optimizer step: forward, loss, backward.
 * *has_grads is 1 when gradients were computed (something trains), the
 * caller then calls asl_net_apply_gradients (data-parallel training sums
 * the gradients across processes in between). */
asl_status asl_net_train_step_grads(asl_net *net, int start, const float *x,
                                    const float *y_true, int n, float *loss,
                                    float *y_pred, int *has_grads);
/* The gradients of every weight of the trainable layers as slots of one
 * buffer of *count floats (64-byte aligned slots, layer then parameter
 * order, zero padding), written by backward and read by
 * asl_net_apply_gradients.  Valid until the trainable layers change
 * (asking again then reallocates it) or the net is destroyed. */
asl_status asl_net_grad_buffer(asl_net *net, float **buf, size_t *count);
/* One optimizer step with the gradients of the last backward. */
asl_status asl_net_apply_gradients(asl_net *net);
/* Optimizer state: iteration count and slots (see asl_optimizer_desc for
 * their order).  Slots exist only for trainable weights. */
int64_t asl_net_iterations(const asl_net *net);
void asl_net_set_iterations(asl_net *net, int64_t it);
asl_status asl_net_slot(asl_net *net, int layer, int j, int k, float **slot);
/* Forget the optimizer state (slots and iteration count): a new optimizer. */
void asl_net_reset_optimizer(asl_net *net);
/* Number of slots per trainable weight of an optimizer (0 .. 3), and of
 * the network's optimizer (0: none set). */
int asl_opt_nslots(const asl_optimizer_desc *opt);
int asl_net_num_slots(const asl_net *net);
/* Nadam's u_product after t steps: prod_{s=1..t} beta_1 (1 - 0.5 0.96^s). */
double asl_opt_u_product(double beta_1, int64_t t);

/* The layer whose softmax train_step fuses with the cross-entropy: the
 * last layer that is not a reshape, if it applies softmax and gives one
 * distribution per sample ((1, 1, classes)); -1 when there is none (then
 * train_step refuses).  The one home of this rule (Python asks it). */
int asl_net_softmax_output(const asl_net *net);

/* Categorical cross-entropy of n samples of `classes` probabilities (a
 * softmax output) against y_true: losses[s] = -sum(y * log(max(p, FLT_MIN))),
 * the rule train_step applies when it has no logits (it uses the logits
 * when the softmax layer kept them: equal while logit gaps stay below ~87).
 * Pure: touches no state.  ASL_ERR_ARG for NULL pointers or bad sizes. */
asl_status asl_categorical_crossentropy(const float *y_true, const float *y_pred,
                                        int n, int classes, double *losses);

/* forward(training) + categorical cross-entropy + backward + update.
 * y_true[n, classes]; loss: batch mean; y_pred (optional): predictions. */
asl_status asl_net_train_step(asl_net *net, const float *x,
                              const float *y_true, int n, float *loss,
                              float *y_pred);

/* train_step on x = the input of layer start; no layer below start may
 * be trainable. */
asl_status asl_net_train_step_from(asl_net *net, int start, const float *x,
                                   const float *y_true, int n, float *loss,
                                   float *y_pred);

/* Work counters, for tests: calls of a layer's forward and backward.  A
 * fused group (conv + batch norm + activation) counts one forward call for
 * each layer it covers; recomputing it before a backward counts again. */
asl_status asl_net_layer_calls(const asl_net *net, int layer,
                               int64_t *forward, int64_t *backward);
/* How many times the fused group led by convolution `layer` folded its
 * batch norm into its weights (0 when it never ran fused). */
asl_status asl_net_fold_count(const asl_net *net, int layer, int64_t *folds);

/* Compute type of the convolutions.  ASL_F32 (the default): float32
 * throughout.  ASL_BF16: convolutions round their input and weights (and,
 * in backward, their output gradient) to bfloat16 and accumulate in
 * float32; outputs, input gradients and weight gradients are float32,
 * except that the output of a fused inference group (conv + frozen batch
 * norm [+ relu/relu6]) that only feeds the next such group is stored as
 * bfloat16.  Parameters, optimizer state and every other layer stay
 * float32.  A convolution oneDNN cannot run natively in bfloat16 on this
 * CPU runs in float32. */
typedef enum { ASL_F32 = 0, ASL_BF16, ASL_INT8 } asl_dtype;
/* ASL_INT8 (inference only): every fused inference group (conv + frozen
 * batch norm [+ relu/relu6]) whose input range is known (calibrated, see
 * asl_net_calibrate) runs as one int8 convolution (quantize.c): weights
 * per output channel, activations per tensor; a group's output that only
 * feeds the next such group stays int8, others are float32.  Training
 * forwards and every other layer compute in float32. */
asl_status asl_net_set_compute_dtype(asl_net *net, asl_dtype dt);
/* int8 calibration: a float32 inference forward of x (n images, unfused)
 * that widens the recorded (min, max) of every layer's input and of the
 * net's output; reset: forget earlier ones first. */
asl_status asl_net_calibrate(asl_net *net, const float *x, int n, int reset);
/* The recorded ranges: count = 2 * (num_layers + 1) floats, (min, max) of
 * the input of layer i at 2i, 2i+1 and of the output last; (+inf, -inf)
 * where none was recorded.  set: replace them (e.g. from a saved model). */
asl_status asl_net_get_ranges(const asl_net *net, float *ranges, int count);
asl_status asl_net_set_ranges(asl_net *net, const float *ranges, int count);
/* 1 if this CPU runs bfloat16 convolutions natively (AVX512_BF16 or
 * newer), else 0. */
int asl_bf16_supported(void);
/* 1 if this CPU has VNNI (AVX512_VNNI or AVX_VNNI): int8 convolutions
 * take u8 activations over their full range [0, 255].  Without it, the
 * 16-bit intermediate sums of oneDNN's u8 x s8 kernels could saturate, so
 * u8 activations use [0, 127] (one bit of resolution less). */
int asl_int8_vnni(void);

/* Convolution geometry along one axis (Keras/TF rule, the one the conv
 * layers use): input size `in`, kernel k, stride s, dilation (1: none),
 * 'valid' or 'same' -> output size and the padding before and after (0
 * for 'valid'; 'same' puts the smaller half before).  Any output pointer
 * may be NULL.  ASL_ERR_ARG for a size, kernel, stride or dilation < 1,
 * ASL_ERR_SHAPE when 'valid' and the input is smaller than the dilated
 * kernel.  Pure: touches no state. */
asl_status asl_conv_geometry(int in, int k, int s, int dilation,
                             asl_padding padding, int *out, int *before,
                             int *after);

/* Bytes of activation, gradient and input buffers the net holds now (not
 * weights, optimizer state or oneDNN scratchpads). */
size_t asl_net_buffer_bytes(const asl_net *net);

#ifdef __cplusplus
}
#endif
#endif /* ASLNET_H */
