/* binding.c - the Python module aslnet._core: the only file that sees
 * Python.h and NumPy.  Each method converts and checks its arguments,
 * releases the GIL around pure C compute and maps asl_status to
 * exceptions. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <limits.h>
#include <string.h>

#include "aslnet.h"

typedef struct {
    PyObject_HEAD
    asl_net *net;
    PyObject *bound;     /* dict (layer, param) -> bound ndarray */
    int busy;            /* a call is running with the GIL released */
    int in[3];           /* -1 (ASL_ANY_SIZE): any input size       */
    PyObject *reducer;   /* set_allreduce's callable, or NULL       */
    PyObject *reduce_exc;/* the exception it raised, until re-raised */
} NetObject;

static int is_dynamic(const NetObject *self) { return self->in[0] < 0 || self->in[1] < 0; }

/* A shape as a Python tuple, None where it is -1 (any size). */
static PyObject *shape_or_none(const int *s, int n)
{
    PyObject *t = PyTuple_New(n);
    if (!t) return NULL;
    for (int k = 0; k < n; k++) {
        PyObject *v;
        if (s[k] < 0) {
            v = Py_None;
            Py_INCREF(v);
        } else if (!(v = PyLong_FromLong(s[k]))) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, v);
    }
    return t;
}

/* (h, w) from an input_size argument. */
static int parse_size(PyObject *o, const char *what, int *h, int *w)
{
    if (!PyTuple_Check(o) && !PyList_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be (height, width)", what);
        return -1;
    }
    {
        PyObject *t = PySequence_Tuple(o);
        int ok = t && PyArg_ParseTuple(t, "ii", h, w);
        Py_XDECREF(t);
        if (!ok) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s must be (height, width), two ints", what);
            return -1;
        }
    }
    if (*h < 1 || *w < 1) {
        PyErr_Format(PyExc_ValueError, "%s must be positive, got (%d, %d)", what, *h, *w);
        return -1;
    }
    return 0;
}

static PyObject *CoreError;

static PyObject *raise_status(NetObject *self, asl_status st)
{
    const char *msg = self && self->net ? asl_net_last_error(self->net) : "";
    PyObject *type;
    if (self && self->reduce_exc) {     /* the reducer's own exception */
        PyObject *e = self->reduce_exc;
        self->reduce_exc = NULL;
        PyErr_SetObject((PyObject *)Py_TYPE(e), e);
        Py_DECREF(e);
        return NULL;
    }
    switch (st) {
    case ASL_ERR_ARG:
    case ASL_ERR_SHAPE: type = PyExc_ValueError; break;
    case ASL_ERR_NOMEM: type = PyExc_MemoryError; break;
    default: type = CoreError; break;
    }
    PyErr_SetString(type, msg && *msg ? msg : "aslnet core error");
    return NULL;
}

static int enter(NetObject *self)
{
    if (!self->net) {
        PyErr_SetString(PyExc_RuntimeError, "Net is closed");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this Net is already running (in another thread, or a call "
                        "made while converting its arguments)");
        return -1;
    }
    return 0;
}

/* A view's memory must still lie inside the array it views: numpy's
 * resize(refcheck=False) of the base moves the memory under the view. */
static int inside_base(PyArrayObject *a)
{
    PyObject *b = PyArray_BASE(a);
    PyArrayObject *root = NULL;
    const char *lo, *hi, *d = PyArray_BYTES(a);
    while (b && PyArray_Check(b)) {
        root = (PyArrayObject *)b;
        b = PyArray_BASE(root);
    }
    if (!root || !PyArray_ISONESEGMENT(root)) return 1;
    lo = PyArray_BYTES(root);
    hi = lo + PyArray_NBYTES(root);
    return d >= lo && d + PyArray_NBYTES(a) <= hi;
}

/* The arrays bound with bind_param must still be where the network reads
 * them: numpy lets ndarray.resize(refcheck=False) move or shrink an array
 * whose buffer is in use, which would leave the network a dangling pointer. */
static int check_bound(NetObject *self)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(self->bound, &pos, &key, &value)) {
        int i = (int)PyLong_AsLong(PyTuple_GET_ITEM(key, 0));
        int j = (int)PyLong_AsLong(PyTuple_GET_ITEM(key, 1));
        asl_param_info info;
        float *data = NULL;
        PyArrayObject *a = (PyArrayObject *)value;
        if (asl_net_param_info(self->net, i, j, &info) != ASL_OK) continue;
        asl_net_param_data(self->net, i, j, &data);
        if (data != (float *)PyArray_DATA(a) || (size_t)PyArray_SIZE(a) != info.size ||
            !inside_base(a)) {
            PyErr_Format(PyExc_RuntimeError,
                         "the array bound to layer %d parameter %d was resized or moved "
                         "after bind_param (ndarray.resize(refcheck=False)?): bind it again",
                         i, j);
            return -1;
        }
    }
    return 0;
}

/* Run a method that converts array arguments (which can run Python code:
 * __array__) and then computes with the GIL released: the network is
 * marked busy for the whole call, so that code cannot change it. */
#define BUSY_WRAPPER(name)                                                    \
    static PyObject *name(NetObject *self, PyObject *args, PyObject *kw)      \
    {                                                                         \
        PyObject *r;                                                          \
        if (enter(self) || check_bound(self)) return NULL;                    \
        self->busy = 1;                                                       \
        r = name##_body(self, args, kw);                                      \
        self->busy = 0;                                                       \
        return r;                                                             \
    }

/* ---- keyword helpers ------------------------------------------------- */

static int kw_int(PyObject *kw, const char *key, int *out)
{
    PyObject *v = kw ? PyDict_GetItemString(kw, key) : NULL;
    long x;
    if (!v) return 0;
    if (PyBool_Check(v)) {
        *out = v == Py_True;
        return 0;
    }
    x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", key);
        return -1;
    }
    if (x < -(1L << 30) || x > (1L << 30)) {
        PyErr_Format(PyExc_ValueError, "%s out of range", key);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int kw_float(PyObject *kw, const char *key, float *out)
{
    PyObject *v = kw ? PyDict_GetItemString(kw, key) : NULL;
    double x;
    if (!v) return 0;
    x = PyFloat_AsDouble(v);
    if (x == -1.0 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s must be a number", key);
        return -1;
    }
    *out = (float)x;
    return 0;
}

/* int or sequence of `n` ints */
static int kw_ints(PyObject *kw, const char *key, int n, int *out)
{
    PyObject *v = kw ? PyDict_GetItemString(kw, key) : NULL, *seq;
    if (!v) return 0;
    if (PyLong_Check(v)) {
        long x = PyLong_AsLong(v);
        if ((x == -1 && PyErr_Occurred()) || x < -(1L << 30) || x > (1L << 30)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s out of range", key);
            return -1;
        }
        for (int i = 0; i < n; i++) out[i] = (int)x;
        return 0;
    }
    seq = PySequence_Fast(v, "");
    if (!seq || PySequence_Fast_GET_SIZE(seq) != n) {
        Py_XDECREF(seq);
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be an int or %d ints", key, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        long x = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (x == -1 && PyErr_Occurred()) {
            int overflow = PyErr_ExceptionMatches(PyExc_OverflowError);
            Py_DECREF(seq);
            PyErr_Clear();
            if (overflow) PyErr_Format(PyExc_ValueError, "%s out of range", key);
            else PyErr_Format(PyExc_TypeError, "%s must be an int or %d ints", key, n);
            return -1;
        }
        if (x < -(1L << 30) || x > (1L << 30)) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "%s out of range", key);
            return -1;
        }
        out[i] = (int)x;
    }
    Py_DECREF(seq);
    return 0;
}

static int kw_str(PyObject *kw, const char *key, const char **out)
{
    PyObject *v = kw ? PyDict_GetItemString(kw, key) : NULL;
    if (!v) return 0;
    if (!PyUnicode_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s must be a string", key);
        return -1;
    }
    {
        Py_ssize_t size;
        *out = PyUnicode_AsUTF8AndSize(v, &size);
        if (!*out) return -1;
        if ((size_t)size != strlen(*out)) {
            PyErr_Format(PyExc_ValueError, "%s must not contain NUL characters", key);
            return -1;
        }
    }
    return 0;
}

static int parse_activation(const char *s, asl_activation *a)
{
    if (!s || !strcmp(s, "linear")) *a = ASL_ACT_LINEAR;
    else if (!strcmp(s, "relu")) *a = ASL_ACT_RELU;
    else if (!strcmp(s, "relu6")) *a = ASL_ACT_RELU6;
    else if (!strcmp(s, "softmax")) *a = ASL_ACT_SOFTMAX;
    else if (!strcmp(s, "sigmoid")) *a = ASL_ACT_SIGMOID;
    else if (!strcmp(s, "tanh")) *a = ASL_ACT_TANH;
    else if (!strcmp(s, "swish") || !strcmp(s, "silu")) *a = ASL_ACT_SWISH;
    else if (!strcmp(s, "relu_args")) *a = ASL_ACT_RELU_ARGS;
    else {
        PyErr_Format(PyExc_ValueError,
                     "unknown activation '%s' (expected linear, relu, relu6, softmax, "
                     "sigmoid, tanh, swish or relu_args)", s);
        return -1;
    }
    return 0;
}

static const char *const known_keys[] = {
    "filters", "units", "kernel_size", "strides", "padding", "use_bias",
    "depth_multiplier", "activation", "momentum", "epsilon", "rate", "seed",
    "target_shape", "source", "source_first", "dilation_rate",
    /* the layers of issue 14 */
    "negative_slope", "max_value", "threshold", "scale", "offset", "height", "width",
    "interpolation", "crop_to_aspect_ratio", "fill_mode", "fill_value", "mode",
    "rotation", "zoom_height", "zoom_width", "shift_height", "shift_width", "contrast",
    "value_range", "inference", "synchronized", NULL};

/* A pair of floats (lower, upper), or a number x meaning (-x, x) when
 * `symmetric`, else (x, x). */
static int kw_range(PyObject *kw, const char *key, float out[2], int symmetric)
{
    PyObject *v = kw ? PyDict_GetItemString(kw, key) : NULL;
    double a, b;
    if (!v || v == Py_None) return 0;
    if (PyNumber_Check(v) && !PySequence_Check(v)) {
        a = PyFloat_AsDouble(v);
        if (a == -1.0 && PyErr_Occurred()) return -1;
        out[0] = (float)(symmetric ? -a : a);
        out[1] = (float)a;
        return 0;
    }
    if (!PyArg_ParseTuple(v, "dd", &a, &b)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a number or (lower, upper)", key);
        return -1;
    }
    out[0] = (float)a;
    out[1] = (float)b;
    return 0;
}

/* The keywords of the layers of issue 14 (pooling, activations with
 * arguments, rescaling, resizing, augmentation) into d. */
static int parse_layer14(PyObject *kw, asl_layer_desc *d)
{
    const char *s = NULL;
    PyObject *v;

    d->relu.max_value = -1.0f;
    d->dilation[0] = d->dilation[1] = 1;
    d->scale = 1.0f;
    d->value_range[0] = 0.0f;
    d->value_range[1] = 255.0f;
    if (kw_ints(kw, "dilation_rate", 2, d->dilation) ||
        kw_float(kw, "negative_slope", &d->relu.negative_slope) ||
        kw_float(kw, "threshold", &d->relu.threshold) ||
        kw_float(kw, "scale", &d->scale) || kw_float(kw, "offset", &d->offset) ||
        kw_int(kw, "height", &d->target[0]) || kw_int(kw, "width", &d->target[1]) ||
        kw_int(kw, "crop_to_aspect_ratio", &d->crop_to_aspect_ratio) ||
        kw_int(kw, "synchronized", &d->synchronized) ||
        kw_float(kw, "fill_value", &d->fill_value) ||
        kw_range(kw, "rotation", d->rotation, 1) ||
        kw_range(kw, "zoom_height", d->zoom, 1) ||
        kw_range(kw, "zoom_width", d->zoom + 2, 1) ||
        kw_range(kw, "shift_height", d->shift, 1) ||
        kw_range(kw, "shift_width", d->shift + 2, 1) ||
        kw_range(kw, "contrast", d->contrast, 0) ||
        kw_range(kw, "value_range", d->value_range, 0))
        return -1;
    v = kw ? PyDict_GetItemString(kw, "max_value") : NULL;
    if (v && v != Py_None && kw_float(kw, "max_value", &d->relu.max_value)) return -1;
    if (v && v != Py_None && !(d->relu.max_value >= 0.0f)) {
        PyErr_SetString(PyExc_ValueError, "max_value must be >= 0 (or None)");
        return -1;
    }
    v = kw ? PyDict_GetItemString(kw, "zoom_width") : NULL;
    d->zoom_w_same = !v || v == Py_None;
    if (kw_str(kw, "interpolation", &s)) return -1;
    if (s && !strcmp(s, "nearest")) d->interpolation = ASL_INTERP_NEAREST;
    else if (s && strcmp(s, "bilinear")) {
        PyErr_Format(PyExc_ValueError, "interpolation must be 'bilinear' or 'nearest', "
                     "got '%s'", s);
        return -1;
    }
    s = NULL;
    if (kw_str(kw, "fill_mode", &s)) return -1;
    if (!s || !strcmp(s, "reflect")) d->fill_mode = ASL_FILL_REFLECT;
    else if (!strcmp(s, "wrap")) d->fill_mode = ASL_FILL_WRAP;
    else if (!strcmp(s, "constant")) d->fill_mode = ASL_FILL_CONSTANT;
    else if (!strcmp(s, "nearest")) d->fill_mode = ASL_FILL_NEAREST;
    else {
        PyErr_Format(PyExc_ValueError, "fill_mode must be 'reflect', 'wrap', 'constant' or "
                     "'nearest', got '%s'", s);
        return -1;
    }
    s = NULL;
    if (kw_str(kw, "mode", &s)) return -1;
    if (!s || !strcmp(s, "horizontal_and_vertical")) d->flip = 3;
    else if (!strcmp(s, "horizontal")) d->flip = 1;
    else if (!strcmp(s, "vertical")) d->flip = 2;
    else {
        PyErr_Format(PyExc_ValueError, "mode must be 'horizontal', 'vertical' or "
                     "'horizontal_and_vertical', got '%s'", s);
        return -1;
    }
    return 0;
}

/* ---- Net ------------------------------------------------------------- */

static int Net_init(NetObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"input_shape", "min_size", NULL};
    PyObject *shape, *min_size = Py_None, *t;
    int dims[3], mh = 1, mw = 1;
    asl_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O", kwlist, &shape, &min_size))
        return -1;
    t = PySequence_Check(shape) ? PySequence_Tuple(shape) : NULL;
    if (!t || PyTuple_GET_SIZE(t) != 3) {
        Py_XDECREF(t);
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "input_shape must be (height, width, channels); "
                        "height and width may be None (or -1): any size");
        return -1;
    }
    for (int k = 0; k < 3; k++) {
        PyObject *v = PyTuple_GET_ITEM(t, k);
        long x = v == Py_None ? -1 : PyLong_AsLong(v);
        if (x == -1 && PyErr_Occurred()) {
            Py_DECREF(t);
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "input_shape must hold ints (or None for "
                            "height and width)");
            return -1;
        }
        if ((x < 1 && !(x == -1 && k < 2)) || x > INT_MAX) {
            Py_DECREF(t);
            PyErr_Format(PyExc_ValueError, "input_shape must be positive (height and width "
                         "may be None: any size), got %S", shape);
            return -1;
        }
        dims[k] = (int)x;
    }
    Py_DECREF(t);
    if (min_size != Py_None && parse_size(min_size, "min_size", &mh, &mw)) return -1;
    if (self->net) {
        PyErr_SetString(PyExc_RuntimeError, "Net already initialised");
        return -1;
    }
    st = asl_net_create(&self->net, dims[0], dims[1], dims[2]);
    if (st != ASL_OK) {
        PyErr_SetString(st == ASL_ERR_NOMEM ? PyExc_MemoryError : CoreError,
                        "could not create the network (oneDNN engine)");
        return -1;
    }
    st = asl_net_set_min_input_size(self->net, mh, mw);
    if (st != ASL_OK) return raise_status(self, st), -1;
    memcpy(self->in, dims, sizeof dims);
    self->bound = PyDict_New();
    return self->bound ? 0 : -1;
}

static void Net_dealloc(NetObject *self)
{
    asl_net_destroy(self->net);
    self->net = NULL;
    Py_XDECREF(self->bound);
    Py_XDECREF(self->reducer);
    Py_XDECREF(self->reduce_exc);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The description of a layer `kind` from Net.add's keywords, with the
 * C core's defaults, Keras's (use_bias true for every kind that has one,
 * zero padding 1; tests/core/test_rules.py checks them against aslnet.layers).
 * Shared by Net.add and layer_output_shape.  -1 with an exception set. */
static int parse_layer(const char *kind, PyObject *kw, asl_layer_desc *dp)
{
    const char *padding = NULL, *act = NULL;
    asl_layer_desc d;

    if (kw) {
        PyObject *key;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kw, &pos, &key, NULL)) {
            const char *k = PyUnicode_AsUTF8(key);
            int ok = 0;
            for (int i = 0; known_keys[i]; i++)
                if (k && !strcmp(k, known_keys[i])) ok = 1;
            if (!ok) {
                PyErr_Format(PyExc_TypeError, "add(): unknown argument '%s'", k ? k : "?");
                return -1;
            }
        }
    }
    memset(&d, 0, sizeof d);
    d.kernel[0] = d.kernel[1] = 1;
    d.strides[0] = d.strides[1] = 1;
    d.depth_multiplier = 1;
    d.use_bias = 1;
    d.pad[0] = d.pad[1] = d.pad[2] = d.pad[3] = 1;   /* ZeroPadding2D(padding=1) */
    d.momentum = 0.99f;
    d.epsilon = 1e-3f;
    d.source = -1;

    if (!strcmp(kind, "conv2d")) d.kind = ASL_LAYER_CONV2D;
    else if (!strcmp(kind, "depthwise_conv2d")) d.kind = ASL_LAYER_DEPTHWISE_CONV2D;
    else if (!strcmp(kind, "zero_padding2d")) d.kind = ASL_LAYER_ZERO_PADDING2D;
    else if (!strcmp(kind, "batch_normalization")) d.kind = ASL_LAYER_BATCH_NORM;
    else if (!strcmp(kind, "activation")) d.kind = ASL_LAYER_ACTIVATION;
    else if (!strcmp(kind, "global_average_pooling2d")) d.kind = ASL_LAYER_GLOBAL_AVG_POOL;
    else if (!strcmp(kind, "global_max_pooling2d")) d.kind = ASL_LAYER_GLOBAL_MAX_POOL;
    else if (!strcmp(kind, "dropout")) d.kind = ASL_LAYER_DROPOUT;
    else if (!strcmp(kind, "reshape")) d.kind = ASL_LAYER_RESHAPE;
    else if (!strcmp(kind, "dense")) d.kind = ASL_LAYER_DENSE;
    else if (!strcmp(kind, "add")) d.kind = ASL_LAYER_ADD;
    else if (!strcmp(kind, "multiply")) d.kind = ASL_LAYER_MULTIPLY;
    else if (!strcmp(kind, "concatenate")) d.kind = ASL_LAYER_CONCATENATE;
    else if (!strcmp(kind, "max_pooling2d")) d.kind = ASL_LAYER_MAX_POOL;
    else if (!strcmp(kind, "average_pooling2d")) d.kind = ASL_LAYER_AVG_POOL;
    else if (!strcmp(kind, "rescaling")) d.kind = ASL_LAYER_RESCALING;
    else if (!strcmp(kind, "resizing")) d.kind = ASL_LAYER_RESIZING;
    else if (!strcmp(kind, "center_crop")) d.kind = ASL_LAYER_CENTER_CROP;
    else if (!strcmp(kind, "random_flip")) d.kind = ASL_LAYER_RANDOM_FLIP;
    else if (!strcmp(kind, "random_affine")) d.kind = ASL_LAYER_RANDOM_AFFINE;
    else if (!strcmp(kind, "random_contrast")) d.kind = ASL_LAYER_RANDOM_CONTRAST;
    else if (!strcmp(kind, "separable_conv2d")) d.kind = ASL_LAYER_SEPARABLE_CONV2D;
    else {
        PyErr_Format(PyExc_ValueError, "unknown layer kind '%s'", kind);
        return -1;
    }

    if (kw_int(kw, "filters", &d.filters) || kw_int(kw, "units", &d.filters) ||
        kw_ints(kw, "kernel_size", 2, d.kernel) ||
        kw_ints(kw, "strides", 2, d.strides) ||
        kw_int(kw, "use_bias", &d.use_bias) ||
        kw_int(kw, "depth_multiplier", &d.depth_multiplier) ||
        kw_str(kw, "activation", &act) || parse_activation(act, &d.activation) ||
        kw_float(kw, "momentum", &d.momentum) ||
        kw_float(kw, "epsilon", &d.epsilon) || kw_float(kw, "rate", &d.rate) ||
        kw_ints(kw, "target_shape", 3, d.target) || kw_int(kw, "source", &d.source) ||
        kw_int(kw, "source_first", &d.source_first) ||
        kw_int(kw, "inference", &d.inference) ||
        parse_layer14(kw, &d))
        return -1;
    if ((d.kind == ASL_LAYER_ADD || d.kind == ASL_LAYER_MULTIPLY ||
         d.kind == ASL_LAYER_CONCATENATE) && !(kw && PyDict_GetItemString(kw, "source"))) {
        PyErr_Format(PyExc_TypeError, "add(): a '%s' layer needs source=<index of the "
                     "earlier layer whose output is its second input>", kind);
        return -1;
    }
    {
        PyObject *seed = kw ? PyDict_GetItemString(kw, "seed") : NULL;
        if (seed && seed != Py_None) {
            d.seed = PyLong_AsUnsignedLongLongMask(seed);
            if (PyErr_Occurred()) return -1;
        }
    }
    if (d.kind == ASL_LAYER_ZERO_PADDING2D) {
        /* padding: int, (sym_h, sym_w) or ((top, bottom), (left, right)) */
        PyObject *v = kw ? PyDict_GetItemString(kw, "padding") : NULL;
        if (v) {
            int t, b, l, r;
            if (PyLong_Check(v)) {
                long x = PyLong_AsLong(v);
                if ((x == -1 && PyErr_Occurred()) || x < -(1L << 30) || x > (1L << 30)) {
                    PyErr_Clear();
                    PyErr_SetString(PyExc_ValueError, "padding out of range");
                    return -1;
                }
                t = b = l = r = (int)x;
            } else if (PyArg_ParseTuple(v, "(ii)(ii)", &t, &b, &l, &r)) {
            } else {
                PyErr_Clear();
                if (!PyArg_ParseTuple(v, "ii", &t, &l)) {
                    PyErr_Clear();
                    PyErr_SetString(PyExc_TypeError,
                                    "padding must be an int, (h, w) or ((top, bottom), (left, right))");
                    return -1;
                }
                b = t;
                r = l;
            }
            if (PyErr_Occurred()) return -1;
            d.pad[0] = t; d.pad[1] = b; d.pad[2] = l; d.pad[3] = r;
        }
    } else {
        if (kw_str(kw, "padding", &padding)) return -1;
        if (padding && !strcmp(padding, "same")) d.padding = ASL_PAD_SAME;
        else if (!padding || !strcmp(padding, "valid")) d.padding = ASL_PAD_VALID;
        else {
            PyErr_Format(PyExc_ValueError, "padding must be 'valid' or 'same', got '%s'", padding);
            return -1;
        }
    }
    if (d.activation > ASL_ACT_SOFTMAX && d.kind != ASL_LAYER_ACTIVATION) {
        PyErr_Format(PyExc_ValueError, "add(): a %s layer computes activation linear, relu, "
                     "relu6 or softmax (add an 'activation' layer for the others)", kind);
        return -1;
    }
    if (d.activation != ASL_ACT_LINEAR && d.kind != ASL_LAYER_ACTIVATION &&
        d.kind != ASL_LAYER_DENSE && d.kind != ASL_LAYER_CONV2D &&
        d.kind != ASL_LAYER_DEPTHWISE_CONV2D && d.kind != ASL_LAYER_SEPARABLE_CONV2D) {
        PyErr_Format(PyExc_ValueError, "add(): a %s layer takes no activation", kind);
        return -1;
    }
    *dp = d;
    return 0;
}

static PyObject *Net_add(NetObject *self, PyObject *args, PyObject *kw)
{
    const char *kind;
    asl_layer_desc d;
    asl_status st;

    if (enter(self)) return NULL;
    if (!PyArg_ParseTuple(args, "s", &kind)) return NULL;
    if (parse_layer(kind, kw, &d)) return NULL;
    if (enter(self)) return NULL;     /* the conversions above can run Python code */
    st = asl_net_add(self->net, &d);
    if (st != ASL_OK) return raise_status(self, st);
    return PyLong_FromLong(asl_net_num_layers(self->net) - 1);
}

static int layer_index(NetObject *self, int i)
{
    int n = asl_net_num_layers(self->net);
    if (i < 0) i += n;
    if (i < 0 || i >= n) {
        PyErr_Format(PyExc_IndexError, "layer index out of range (%d layers)", n);
        return -1;
    }
    return i;
}

static PyObject *Net_output_shape(NetObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"i", "input_size", NULL};
    PyObject *size = Py_None;
    int i, s[3], h, w;
    asl_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "i|O", kwlist, &i, &size) || enter(self))
        return NULL;
    if ((i = layer_index(self, i)) < 0) return NULL;
    if (size == Py_None) {
        asl_net_output_shape(self->net, i, s);
        return shape_or_none(s, 3);
    }
    if (parse_size(size, "input_size", &h, &w)) return NULL;
    st = asl_net_output_shape_at(self->net, i, h, w, s);
    if (st != ASL_OK) return raise_status(self, st);
    return Py_BuildValue("(iii)", s[0], s[1], s[2]);
}

static PyObject *shape_tuple(const asl_param_info *info)
{
    PyObject *t = PyTuple_New(info->ndim);
    if (!t) return NULL;
    for (int k = 0; k < info->ndim; k++)
        PyTuple_SET_ITEM(t, k, PyLong_FromLong(info->dims[k]));
    return t;
}

static PyObject *Net_params(NetObject *self, PyObject *args)
{
    int i;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "i", &i) || enter(self)) return NULL;
    if ((i = layer_index(self, i)) < 0) return NULL;
    list = PyList_New(0);
    if (!list) return NULL;
    for (int j = 0; j < asl_net_num_params(self->net, i); j++) {
        asl_param_info info;
        PyObject *shape, *d;
        asl_net_param_info(self->net, i, j, &info);
        shape = shape_tuple(&info);
        d = shape ? Py_BuildValue("{s:s,s:N,s:O}", "name", info.name, "shape", shape,
                                  "is_weight", info.is_weight ? Py_True : Py_False)
                  : NULL;
        if (!d || PyList_Append(list, d)) {
            Py_XDECREF(d);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(d);
    }
    return list;
}

static int param_index(NetObject *self, int *i, int *j, asl_param_info *info)
{
    asl_status st;
    if ((*i = layer_index(self, *i)) < 0) return -1;
    st = asl_net_param_info(self->net, *i, *j, info);
    if (st != ASL_OK) {
        PyErr_SetString(PyExc_IndexError, asl_net_last_error(self->net));
        return -1;
    }
    return 0;
}

static PyObject *copy_out(const asl_param_info *info, const float *src)
{
    npy_intp dims[4];
    PyObject *arr;
    for (int k = 0; k < info->ndim; k++) dims[k] = info->dims[k];
    arr = PyArray_SimpleNew(info->ndim, dims, NPY_FLOAT32);
    if (arr) memcpy(PyArray_DATA((PyArrayObject *)arr), src, info->size * sizeof(float));
    return arr;
}

/* A C-contiguous float32 copy/view of obj with exactly `info`'s shape. */
static PyArrayObject *param_array(PyObject *obj, const asl_param_info *info,
                                  const char *what, int writeable)
{
    int flags = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED;
    PyArrayObject *a;
    if (writeable) flags |= NPY_ARRAY_WRITEABLE;
    a = (PyArrayObject *)PyArray_FROMANY(obj, NPY_FLOAT32, 0, 0,
                                         writeable ? flags : flags | NPY_ARRAY_FORCECAST);
    if (!a) return NULL;
    {
        int ok = (size_t)PyArray_SIZE(a) == info->size && PyArray_NDIM(a) == info->ndim;
        for (int k = 0; ok && k < info->ndim; k++) ok = PyArray_DIM(a, k) == info->dims[k];
        if (!ok) {
            PyObject *want = shape_tuple(info);
            PyObject *got = PyObject_GetAttrString((PyObject *)a, "shape");
            if (want && got)
                PyErr_Format(PyExc_ValueError, "%s: %s expects shape %S, got %S", what,
                             info->name, want, got);
            Py_XDECREF(want);
            Py_XDECREF(got);
            Py_DECREF(a);
            return NULL;
        }
    }
    return a;
}

static PyObject *Net_get_param(NetObject *self, PyObject *args)
{
    int i, j;
    asl_param_info info;
    float *data;
    if (!PyArg_ParseTuple(args, "ii", &i, &j) || enter(self) || check_bound(self)) return NULL;
    if (param_index(self, &i, &j, &info)) return NULL;
    asl_net_param_data(self->net, i, j, &data);
    return copy_out(&info, data);
}

static PyObject *Net_set_param(NetObject *self, PyObject *args)
{
    int i, j;
    PyObject *obj;
    asl_param_info info;
    PyArrayObject *a;
    float *data;
    asl_status st;
    if (!PyArg_ParseTuple(args, "iiO", &i, &j, &obj) || enter(self)) return NULL;
    if (param_index(self, &i, &j, &info)) return NULL;
    a = param_array(obj, &info, "set_param", 0);
    if (!a) return NULL;
    if (check_bound(self)) {          /* after the conversion: it can run Python code */
        Py_DECREF(a);
        return NULL;
    }
    asl_net_param_data(self->net, i, j, &data);
    memmove(data, PyArray_DATA(a), info.size * sizeof(float));   /* may overlap */
    Py_DECREF(a);
    st = asl_net_layer_weights_changed(self->net, i);
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

static PyObject *Net_bind_param(NetObject *self, PyObject *args)
{
    int i, j;
    PyArrayObject *arr;
    asl_param_info info;
    PyObject *key;
    asl_status st;
    if (!PyArg_ParseTuple(args, "iiO!", &i, &j, &PyArray_Type, &arr) || enter(self))
        return NULL;
    if (param_index(self, &i, &j, &info)) return NULL;
    if (PyArray_TYPE(arr) != NPY_FLOAT32 || !PyArray_IS_C_CONTIGUOUS(arr) ||
        !PyArray_ISWRITEABLE(arr) || !PyArray_ISALIGNED(arr) || !PyArray_ISNOTSWAPPED(arr)) {
        PyErr_SetString(PyExc_ValueError,
                        "bind_param needs a writeable, aligned, C-contiguous float32 array "
                        "in native byte order");
        return NULL;
    }
    {
        PyArrayObject *chk = param_array((PyObject *)arr, &info, "bind_param", 1);
        if (!chk) return NULL;
        Py_DECREF(chk);
    }
    key = Py_BuildValue("(ii)", i, j);
    if (!key || PyDict_SetItem(self->bound, key, (PyObject *)arr)) {
        Py_XDECREF(key);
        return NULL;
    }
    Py_DECREF(key);
    st = asl_net_bind_param(self->net, i, j, (float *)PyArray_DATA(arr));
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

static PyObject *Net_grad(NetObject *self, PyObject *args)
{
    int i, j;
    asl_param_info info;
    const float *g;
    if (!PyArg_ParseTuple(args, "ii", &i, &j) || enter(self)) return NULL;
    if (param_index(self, &i, &j, &info)) return NULL;
    asl_net_param_grad(self->net, i, j, &g);
    if (!g) Py_RETURN_NONE;
    return copy_out(&info, g);
}

static PyObject *Net_set_trainable(NetObject *self, PyObject *args)
{
    int i, t;
    if (!PyArg_ParseTuple(args, "ip", &i, &t) || enter(self)) return NULL;
    if ((i = layer_index(self, i)) < 0) return NULL;
    asl_net_set_trainable(self->net, i, t);
    Py_RETURN_NONE;
}

static PyObject *Net_weights_changed(NetObject *self, PyObject *args)
{
    int i = INT_MIN;
    asl_status st;
    if (!PyArg_ParseTuple(args, "|i", &i) || enter(self)) return NULL;
    if (i == INT_MIN) {
        asl_net_weights_changed(self->net);
        Py_RETURN_NONE;
    }
    if ((i = layer_index(self, i)) < 0) return NULL;
    st = asl_net_layer_weights_changed(self->net, i);
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

/* The C core's reducer (asl_allreduce_fn): called with the GIL released
 * from a forward or backward; takes the GIL and calls the Python callable
 * with a float64 copy of buf, which it must sum over the processes in
 * place; copies the result back.  An exception is kept for raise_status. */
static int call_reducer(double *buf, size_t count, void *user)
{
    NetObject *self = user;
    PyGILState_STATE gil = PyGILState_Ensure();
    npy_intp dims[1] = {(npy_intp)count};
    PyObject *arr = PyArray_SimpleNew(1, dims, NPY_FLOAT64), *r = NULL;
    int rc = -1;

    if (arr) {
        memcpy(PyArray_DATA((PyArrayObject *)arr), buf, count * sizeof(double));
        r = PyObject_CallFunctionObjArgs(self->reducer, arr, NULL);
    }
    if (r) {
        memcpy(buf, PyArray_DATA((PyArrayObject *)arr), count * sizeof(double));
        rc = 0;
    } else if (!self->reduce_exc) {   /* (a reference to the exception) */
#if PY_VERSION_HEX >= 0x030C0000
        self->reduce_exc = PyErr_GetRaisedException();
#else
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value && tb) PyException_SetTraceback(value, tb);
        self->reduce_exc = value;
        Py_XDECREF(type);
        Py_XDECREF(tb);
#endif
    }
    PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(arr);
    PyGILState_Release(gil);
    return rc;
}

static PyObject *Net_set_allreduce(NetObject *self, PyObject *fn)
{
    if (enter(self)) return NULL;
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "set_allreduce: expected a callable f(buf) that "
                        "sums the float64 array buf over the processes in place, or None");
        return NULL;
    }
    Py_XDECREF(self->reducer);
    self->reducer = NULL;
    if (fn != Py_None) {
        Py_INCREF(fn);
        self->reducer = fn;
    }
    asl_net_set_allreduce(self->net, self->reducer ? call_reducer : NULL, self);
    Py_RETURN_NONE;
}

static PyObject *Net_sync_idle_step(NetObject *self, PyObject *args)
{
    int start;
    asl_status st;
    if (!PyArg_ParseTuple(args, "i", &start) || enter(self)) return NULL;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = asl_net_sync_idle_step(self->net, start);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

static PyObject *Net_set_num_threads(NetObject *self, PyObject *args)
{
    int n;
    asl_status st;
    if (!PyArg_ParseTuple(args, "i", &n) || enter(self)) return NULL;
    st = asl_net_set_num_threads(self->net, n);
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

static PyObject *Net_set_compute_dtype(NetObject *self, PyObject *args)
{
    const char *name;
    asl_dtype dt;
    asl_status st;
    if (!PyArg_ParseTuple(args, "s", &name) || enter(self)) return NULL;
    if (strcmp(name, "float32") == 0) {
        dt = ASL_F32;
    } else if (strcmp(name, "bfloat16") == 0) {
        dt = ASL_BF16;
    } else if (strcmp(name, "int8") == 0) {
        dt = ASL_INT8;
    } else {
        PyErr_Format(PyExc_ValueError, "compute dtype must be 'float32', 'bfloat16' or "
                     "'int8', got '%s'", name);
        return NULL;
    }
    st = asl_net_set_compute_dtype(self->net, dt);
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

/* "(batch, h, w, c)", None for a size of -1. */
static void batch_str(const int s[3], char *buf, size_t size)
{
    char d[2][16];
    for (int k = 0; k < 2; k++) {
        if (s[k] < 0) snprintf(d[k], sizeof d[k], "None");
        else snprintf(d[k], sizeof d[k], "%d", s[k]);
    }
    snprintf(buf, size, "(batch, %s, %s, %d)", d[0], d[1], s[2]);
}

/* Batch array [n, shape...] as C-contiguous float32; checks per-sample
 * shape against (h, w, c) (any reshaping of the same size is refused). */
static PyArrayObject *batch_array(PyObject *obj, const int shape[3],
                                  const char *what)
{
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(
        obj, NPY_FLOAT32, 1, 4,
        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!a) {
        if (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
            char want[96];
            batch_str(shape, want, sizeof want);
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be a numeric array of shape %s", what,
                         want);
        }
        return NULL;
    }
    {
        int nd = PyArray_NDIM(a), ok;
        npy_intp *d = PyArray_DIMS(a);
        if (nd == 4)   /* -1: any size (at least 1) */
            ok = (shape[0] < 0 ? d[1] >= 1 && d[1] <= INT_MAX : d[1] == shape[0]) &&
                 (shape[1] < 0 ? d[2] >= 1 && d[2] <= INT_MAX : d[2] == shape[1]) &&
                 d[3] == shape[2];
        else if (nd == 2)
            ok = shape[0] == 1 && shape[1] == 1 && d[1] == shape[2];
        else
            ok = 0;
        if (ok && (d[0] < 1 || d[0] > (1 << 30))) {
            PyErr_Format(PyExc_ValueError, "%s: batch size must be in [1, 2**30], got %zd",
                         what, (Py_ssize_t)d[0]);
            Py_DECREF(a);
            return NULL;
        }
        if (!ok) {
            PyObject *got = PyObject_GetAttrString((PyObject *)a, "shape");
            if (shape[0] == 1 && shape[1] == 1)
                PyErr_Format(PyExc_ValueError, "%s must have shape (batch, %d), got %S",
                             what, shape[2], got);
            else {
                char want[96];
                batch_str(shape, want, sizeof want);
                PyErr_Format(PyExc_ValueError, "%s must have shape %s, got %S", what, want,
                             got);
            }
            Py_XDECREF(got);
            Py_DECREF(a);
            return NULL;
        }
    }
    return a;
}

static PyObject *new_batch(int n, const int s[3])
{
    npy_intp dims[4] = {n, s[0], s[1], s[2]};
    return PyArray_SimpleNew(4, dims, NPY_FLOAT32);
}

static int range_shapes(NetObject *self, int start, int *stop, int in[3], int out[3]);

/* Output shape of the net at its selected input size, and that size. */
static int out_shape(NetObject *self, int s[3], int *h, int *w)
{
    int n = asl_net_num_layers(self->net);
    asl_status st;
    if (n == 0) {
        PyErr_SetString(PyExc_RuntimeError, "the network has no layers");
        return -1;
    }
    asl_net_input_size(self->net, h, w);
    if (*h == 0) {
        PyErr_SetString(PyExc_RuntimeError, "backward needs a forward pass first");
        return -1;
    }
    st = asl_net_output_shape_at(self->net, n - 1, *h, *w, s);
    if (st != ASL_OK) return raise_status(self, st), -1;
    return 0;
}

static int shape_at(NetObject *self, int layer, int h, int w, int s[3])
{
    asl_status st = asl_net_output_shape_at(self->net, layer, h, w, s);
    if (st != ASL_OK) return raise_status(self, st), -1;
    return 0;
}

/* For a forward of layers [start, stop): x (the input of layer start) as an
 * array, the per-sample output shape, and the network input size (h, w)
 * it runs at: x's own for start == 0, else `size` (input_size=) or the
 * size selected now. */
static PyArrayObject *range_input(NetObject *self, PyObject *xo, PyObject *size, int start,
                                  int *stop, int out[3], int *h, int *w)
{
    int in[3];
    PyArrayObject *x = NULL;
    if (range_shapes(self, start, stop, in, out)) return NULL;
    if (size != Py_None) {
        if (parse_size(size, "input_size", h, w)) return NULL;
    } else if (!is_dynamic(self)) {
        *h = self->in[0];
        *w = self->in[1];
    } else if (start == 0) {
        if (!(x = batch_array(xo, self->in, "x"))) return NULL;
        *h = (int)PyArray_DIM(x, 1);
        *w = (int)PyArray_DIM(x, 2);
    } else {
        asl_net_input_size(self->net, h, w);
        if (*h == 0) {
            PyErr_Format(PyExc_ValueError,
                         "forward from layer %d of a network of any input size: pass "
                         "input_size=(height, width), the network input size x comes from",
                         start);
            return NULL;
        }
    }
    if (start == 0) {
        in[0] = *h;
        in[1] = *w;
        in[2] = self->in[2];
    } else if (shape_at(self, start - 1, *h, *w, in)) {
        Py_XDECREF(x);
        return NULL;
    }
    if (shape_at(self, *stop - 1, *h, *w, out)) {
        Py_XDECREF(x);
        return NULL;
    }
    return x ? x : batch_array(xo, in, "x");
}

/* Per-sample shape of the input of layer `start` (0: the network's). */
static int range_shapes(NetObject *self, int start, int *stop, int in[3], int out[3])
{
    int n = asl_net_num_layers(self->net);
    if (n == 0) {
        PyErr_SetString(PyExc_RuntimeError, "the network has no layers");
        return -1;
    }
    if (*stop < -1) {
        PyErr_Format(PyExc_IndexError, "stop must be -1 (the end) or a layer index, got %d",
                     *stop);
        return -1;
    }
    if (*stop == -1) *stop = n;
    if (start < 0 || start >= n || *stop <= start || *stop > n) {
        PyErr_Format(PyExc_IndexError, "layer range [%d, %d) invalid for %d layers", start,
                     *stop, n);
        return -1;
    }
    if (start == 0) memcpy(in, self->in, sizeof self->in);
    else asl_net_output_shape(self->net, start - 1, in);
    asl_net_output_shape(self->net, *stop - 1, out);
    return 0;
}

static PyObject *Net_forward_body(NetObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "training", "start", "stop", "input_size", NULL};
    PyObject *xo, *y, *size = Py_None;
    PyArrayObject *x;
    int training = 0, start = 0, stop = -1, n, s[3], h, w;
    asl_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|piiO", kwlist, &xo, &training,
                                     &start, &stop, &size))
        return NULL;
    if (!(x = range_input(self, xo, size, start, &stop, s, &h, &w))) return NULL;
    n = (int)PyArray_DIM(x, 0);
    y = new_batch(n, s);
    if (!y) {
        Py_DECREF(x);
        return NULL;
    }
    if (check_bound(self)) {          /* converting x can run Python code */
        Py_DECREF(x);
        Py_DECREF(y);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = asl_net_set_input_size(self->net, h, w);
    if (st == ASL_OK)
        st = asl_net_forward_range(self->net, start, stop, PyArray_DATA(x), n, training,
                                   PyArray_DATA((PyArrayObject *)y));
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    if (st != ASL_OK) {
        Py_DECREF(y);
        return raise_status(self, st);
    }
    return y;
}

static PyObject *Net_backward_body(NetObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"dy", "need_dx", NULL};
    PyObject *dyo, *dx = NULL;
    PyArrayObject *dy;
    int need_dx = 0, s[3], n, in[3];
    asl_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p", kwlist, &dyo, &need_dx))
        return NULL;
    if (out_shape(self, s, &in[0], &in[1])) return NULL;
    in[2] = self->in[2];
    if (!(dy = batch_array(dyo, s, "dy"))) return NULL;
    n = (int)PyArray_DIM(dy, 0);
    if (need_dx && !(dx = new_batch(n, in))) {
        Py_DECREF(dy);
        return NULL;
    }
    if (check_bound(self)) {          /* converting dy can run Python code */
        Py_DECREF(dy);
        Py_XDECREF(dx);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = asl_net_backward(self->net, PyArray_DATA(dy), n,
                          dx ? PyArray_DATA((PyArrayObject *)dx) : NULL);
    Py_END_ALLOW_THREADS
    Py_DECREF(dy);
    if (st != ASL_OK) {
        Py_XDECREF(dx);
        return raise_status(self, st);
    }
    if (!dx) Py_RETURN_NONE;
    return dx;
}

/* set_optimizer(name, **config): Keras 3's names and defaults; None for
 * weight_decay and the clips is off (0 in C). */
static int opt_float_or_none(PyObject *obj, float *out, const char *what)
{
    double v;
    if (!obj || obj == Py_None) return 0;
    v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "set_optimizer: %s must be a number or None", what);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static PyObject *Net_set_optimizer(NetObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "learning_rate", "momentum", "nesterov",
                             "beta_1", "beta_2", "epsilon", "amsgrad", "rho", "centered",
                             "initial_accumulator_value", "weight_decay", "clipnorm",
                             "clipvalue", "global_clipnorm", NULL};
    static const struct { const char *name; asl_optimizer_kind kind; } kinds[] = {
        {"sgd", ASL_OPT_SGD}, {"adam", ASL_OPT_ADAM}, {"adamw", ASL_OPT_ADAM},
        {"rmsprop", ASL_OPT_RMSPROP}, {"adagrad", ASL_OPT_ADAGRAD}, {"nadam", ASL_OPT_NADAM}};
    const char *name;
    PyObject *wd = NULL, *cn = NULL, *cv = NULL, *gcn = NULL;
    asl_optimizer_desc o = {0};
    asl_status st;
    o.learning_rate = 0.001f;
    o.beta_1 = 0.9f;
    o.beta_2 = 0.999f;
    o.epsilon = 1e-7f;
    o.rho = 0.9f;
    o.initial_accumulator_value = 0.1f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|ffpfffpfpfOOOO", kwlist, &name,
                                     &o.learning_rate, &o.momentum, &o.nesterov, &o.beta_1,
                                     &o.beta_2, &o.epsilon, &o.amsgrad, &o.rho, &o.centered,
                                     &o.initial_accumulator_value, &wd, &cn, &cv, &gcn) ||
        enter(self))
        return NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(name, kinds[i].name)) o.kind = kinds[i].kind;
    if (!o.kind) {
        PyErr_Format(PyExc_ValueError,
                     "unknown optimizer '%s' (expected 'sgd', 'adam', 'adamw', 'rmsprop', "
                     "'adagrad' or 'nadam')", name);
        return NULL;
    }
    if (opt_float_or_none(wd, &o.weight_decay, "weight_decay") ||
        opt_float_or_none(cn, &o.clipnorm, "clipnorm") ||
        opt_float_or_none(cv, &o.clipvalue, "clipvalue") ||
        opt_float_or_none(gcn, &o.global_clipnorm, "global_clipnorm"))
        return NULL;
    st = asl_net_set_optimizer(self->net, &o);
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

static PyObject *Net_reset_optimizer(NetObject *self, PyObject *noargs)
{
    (void)noargs;
    if (enter(self)) return NULL;
    asl_net_reset_optimizer(self->net);
    Py_RETURN_NONE;
}

static PyObject *Net_set_learning_rate(NetObject *self, PyObject *args)
{
    float lr;
    asl_status st;
    if (!PyArg_ParseTuple(args, "f", &lr) || enter(self)) return NULL;
    st = asl_net_set_learning_rate(self->net, lr);
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

static PyObject *Net_apply_gradients(NetObject *self, PyObject *unused)
{
    asl_status st;
    (void)unused;
    if (enter(self) || check_bound(self)) return NULL;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = asl_net_apply_gradients(self->net);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

/* grad_buffer(): the gradients of the trainable weights as one writable
 * float32 array over the C buffer (kept alive by this Net); stale once the
 * trainable layers change: ask again each step. */
static PyObject *Net_grad_buffer(NetObject *self, PyObject *unused)
{
    float *buf = NULL;
    size_t count = 0;
    npy_intp dims[1];
    PyObject *a;
    asl_status st;
    (void)unused;
    if (enter(self)) return NULL;
    st = asl_net_grad_buffer(self->net, &buf, &count);
    if (st != ASL_OK) return raise_status(self, st);
    dims[0] = (npy_intp)count;
    a = PyArray_SimpleNewFromData(1, dims, NPY_FLOAT32, buf);
    if (!a) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)a, (PyObject *)self) < 0) {
        Py_DECREF(a);     /* the reference to self was stolen */
        return NULL;
    }
    return a;
}

static PyObject *Net_slot(NetObject *self, PyObject *args)
{
    int i, j, k;
    asl_param_info info;
    float *slot;
    asl_status st;
    if (!PyArg_ParseTuple(args, "iii", &i, &j, &k) || enter(self)) return NULL;
    if (param_index(self, &i, &j, &info)) return NULL;
    st = asl_net_slot(self->net, i, j, k, &slot);
    if (st != ASL_OK) return raise_status(self, st);
    if (!slot) Py_RETURN_NONE;
    return copy_out(&info, slot);
}

static PyObject *Net_set_slot(NetObject *self, PyObject *args)
{
    int i, j, k;
    PyObject *obj;
    asl_param_info info;
    PyArrayObject *a;
    float *slot;
    asl_status st;
    if (!PyArg_ParseTuple(args, "iiiO", &i, &j, &k, &obj) || enter(self)) return NULL;
    if (param_index(self, &i, &j, &info)) return NULL;
    self->busy = 1;                   /* converting obj can run Python code */
    a = param_array(obj, &info, "set_slot", 0);
    self->busy = 0;
    if (!a) return NULL;
    st = asl_net_slot(self->net, i, j, k, &slot);
    if (st != ASL_OK) {
        Py_DECREF(a);
        return raise_status(self, st);
    }
    if (!slot) {
        Py_DECREF(a);
        PyErr_Format(PyExc_ValueError,
                     "no optimizer slot %d for layer %d param %d (frozen, a statistic, or "
                     "the optimizer has fewer slots)", k, i, j);
        return NULL;
    }
    memmove(slot, PyArray_DATA(a), info.size * sizeof(float));
    Py_DECREF(a);
    Py_RETURN_NONE;
}

static PyObject *Net_train_step_body(NetObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "y", "start", "input_size", "apply", NULL};
    PyObject *xo, *yo, *pred, *size = Py_None;
    PyArrayObject *x, *y;
    int n, s[3], start = 0, stop = -1, h, w, apply = 1, has_grads = 0;
    float loss = 0.f;
    asl_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|iOp", kwlist, &xo, &yo, &start, &size,
                                     &apply))
        return NULL;
    if (!(x = range_input(self, xo, size, start, &stop, s, &h, &w))) return NULL;
    if (!(y = batch_array(yo, s, "y"))) {
        Py_DECREF(x);
        return NULL;
    }
    n = (int)PyArray_DIM(x, 0);
    if (PyArray_DIM(y, 0) != n) {
        PyErr_Format(PyExc_ValueError, "x and y batch sizes differ: %d vs %zd", n,
                     (Py_ssize_t)PyArray_DIM(y, 0));
        Py_DECREF(x);
        Py_DECREF(y);
        return NULL;
    }
    pred = new_batch(n, s);
    if (!pred) {
        Py_DECREF(x);
        Py_DECREF(y);
        return NULL;
    }
    if (check_bound(self)) {          /* converting x, y can run Python code */
        Py_DECREF(x);
        Py_DECREF(y);
        Py_DECREF(pred);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = asl_net_set_input_size(self->net, h, w);
    if (st == ASL_OK)
        st = apply ? asl_net_train_step_from(self->net, start, PyArray_DATA(x),
                                             PyArray_DATA(y), n, &loss,
                                             PyArray_DATA((PyArrayObject *)pred))
                   : asl_net_train_step_grads(self->net, start, PyArray_DATA(x),
                                              PyArray_DATA(y), n, &loss,
                                              PyArray_DATA((PyArrayObject *)pred),
                                              &has_grads);
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    Py_DECREF(y);
    if (st != ASL_OK) {
        Py_DECREF(pred);
        return raise_status(self, st);
    }
    if (!apply)
        return Py_BuildValue("(dNO)", (double)loss, pred, has_grads ? Py_True : Py_False);
    return Py_BuildValue("(dN)", (double)loss, pred);
}

/* calibrate(x, reset=False): int8 activation ranges from a float32 pass */
static PyObject *Net_calibrate_body(NetObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "reset", NULL};
    PyObject *xo;
    PyArrayObject *x;
    int reset = 0, stop = -1, n, s[3], h, w;
    asl_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p", kwlist, &xo, &reset)) return NULL;
    if (!(x = range_input(self, xo, Py_None, 0, &stop, s, &h, &w))) return NULL;
    n = (int)PyArray_DIM(x, 0);
    if (check_bound(self)) {
        Py_DECREF(x);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = asl_net_set_input_size(self->net, h, w);
    if (st == ASL_OK) st = asl_net_calibrate(self->net, PyArray_DATA(x), n, reset);
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

/* ranges(values=None): the int8 (min, max) per layer input and the output,
 * shape (num_layers + 1, 2); with values: set them. */
static PyObject *Net_ranges(NetObject *self, PyObject *args)
{
    PyObject *vo = Py_None;
    PyArrayObject *v;
    npy_intp dims[2];
    asl_status st;
    if (!PyArg_ParseTuple(args, "|O", &vo) || enter(self)) return NULL;
    dims[0] = asl_net_num_layers(self->net) + 1;
    dims[1] = 2;
    if (vo == Py_None) {
        if (!(v = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32))) return NULL;
        st = asl_net_get_ranges(self->net, PyArray_DATA(v), (int)(2 * dims[0]));
        if (st != ASL_OK) {
            Py_DECREF(v);
            return raise_status(self, st);
        }
        return (PyObject *)v;
    }
    v = (PyArrayObject *)PyArray_FROMANY(vo, NPY_FLOAT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (!v) return NULL;
    if (PyArray_DIM(v, 0) != dims[0] || PyArray_DIM(v, 1) != 2) {
        PyErr_Format(PyExc_ValueError, "ranges must have shape (%ld, 2), got (%ld, %ld)",
                     (long)dims[0], (long)PyArray_DIM(v, 0), (long)PyArray_DIM(v, 1));
        Py_DECREF(v);
        return NULL;
    }
    st = asl_net_set_ranges(self->net, PyArray_DATA(v), (int)(2 * dims[0]));
    Py_DECREF(v);
    if (st != ASL_OK) return raise_status(self, st);
    Py_RETURN_NONE;
}

BUSY_WRAPPER(Net_forward)
BUSY_WRAPPER(Net_calibrate)
BUSY_WRAPPER(Net_backward)
BUSY_WRAPPER(Net_train_step)

static PyObject *Net_softmax_output(NetObject *self, PyObject *noargs)
{
    int k;
    (void)noargs;
    if (enter(self)) return NULL;
    k = asl_net_softmax_output(self->net);
    if (k < 0) Py_RETURN_NONE;
    return PyLong_FromLong(k);
}

static PyObject *Net_layer_calls(NetObject *self, PyObject *args)
{
    int i;
    int64_t f, b;
    if (!PyArg_ParseTuple(args, "i", &i) || enter(self)) return NULL;
    if ((i = layer_index(self, i)) < 0) return NULL;
    asl_net_layer_calls(self->net, i, &f, &b);
    return Py_BuildValue("(LL)", (long long)f, (long long)b);
}

static PyObject *Net_fold_count(NetObject *self, PyObject *args)
{
    int i;
    int64_t folds;
    if (!PyArg_ParseTuple(args, "i", &i) || enter(self)) return NULL;
    if ((i = layer_index(self, i)) < 0) return NULL;
    asl_net_fold_count(self->net, i, &folds);
    return PyLong_FromLongLong((long long)folds);
}

static PyObject *Net_buffer_bytes(NetObject *self, PyObject *noargs)
{
    (void)noargs;
    if (enter(self)) return NULL;
    return PyLong_FromSize_t(asl_net_buffer_bytes(self->net));
}

static PyObject *Net_get_iterations(NetObject *self, void *closure)
{
    (void)closure;
    if (enter(self)) return NULL;
    return PyLong_FromLongLong(asl_net_iterations(self->net));
}

static int Net_set_iterations(NetObject *self, PyObject *v, void *closure)
{
    long long it;
    (void)closure;
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete iterations");
        return -1;
    }
    it = PyLong_AsLongLong(v);
    if (it == -1 && PyErr_Occurred()) return -1;
    if (it < 0 || it > ((int64_t)1 << 62)) {
        PyErr_SetString(PyExc_ValueError, "iterations must be in [0, 2**62]");
        return -1;
    }
    if (enter(self)) return -1;
    asl_net_set_iterations(self->net, it);
    return 0;
}

static PyObject *Net_get_num_layers(NetObject *self, void *closure)
{
    (void)closure;
    if (enter(self)) return NULL;
    return PyLong_FromLong(asl_net_num_layers(self->net));
}

static PyObject *Net_get_input_shape(NetObject *self, void *closure)
{
    (void)closure;
    return shape_or_none(self->in, 3);
}

static PyObject *Net_get_input_size(NetObject *self, void *closure)
{
    int h, w;
    (void)closure;
    if (enter(self)) return NULL;
    asl_net_input_size(self->net, &h, &w);
    if (h == 0) Py_RETURN_NONE;
    return Py_BuildValue("(ii)", h, w);
}

static PyObject *Net_get_num_plans(NetObject *self, void *closure)
{
    (void)closure;
    if (enter(self)) return NULL;
    return PyLong_FromLongLong(asl_net_num_plans(self->net));
}

static PyObject *Net_get_sizes(NetObject *self, void *closure)
{
    PyObject *list;
    (void)closure;
    if (enter(self)) return NULL;
    list = PyList_New(0);
    for (int k = 0; list && k < asl_net_num_sizes(self->net); k++) {
        int h, w;
        PyObject *t;
        asl_net_size(self->net, k, &h, &w);
        t = Py_BuildValue("(ii)", h, w);
        if (!t || PyList_Append(list, t)) {
            Py_XDECREF(t);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(t);
    }
    return list;
}

static PyMethodDef Net_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Net_add, METH_VARARGS | METH_KEYWORDS,
     "add(kind, **config) -> layer index"},
    {"output_shape", (PyCFunction)(void (*)(void))Net_output_shape,
     METH_VARARGS | METH_KEYWORDS,
     "output_shape(i, input_size=None) -> per-sample (h, w, c) of layer i; in a net of any "
     "input size, None where it follows the input size, or at input_size=(h, w)"},
    {"params", (PyCFunction)Net_params, METH_VARARGS, "parameter descriptions of layer i"},
    {"get_param", (PyCFunction)Net_get_param, METH_VARARGS, "copy of parameter j of layer i"},
    {"set_param", (PyCFunction)Net_set_param, METH_VARARGS, "copy values into parameter j of layer i"},
    {"bind_param", (PyCFunction)Net_bind_param, METH_VARARGS,
     "use a float32 ndarray as the storage of parameter j of layer i"},
    {"grad", (PyCFunction)Net_grad, METH_VARARGS, "gradient of the last backward, or None"},
    {"set_trainable", (PyCFunction)Net_set_trainable, METH_VARARGS, "freeze/unfreeze layer i"},
    {"weights_changed", (PyCFunction)Net_weights_changed, METH_VARARGS,
     "weights_changed(i=None): invalidate cached weight layouts after changing bound "
     "arrays, of layer i or of every layer"},
    {"set_num_threads", (PyCFunction)Net_set_num_threads, METH_VARARGS, "0 = all cores"},
    {"sync_idle_step", (PyCFunction)Net_sync_idle_step, METH_VARARGS,
     "sync_idle_step(start): a rank with an empty slice takes part in the synchronized "
     "batch norms' sums of a training step from layer start (aslnet.h)"},
    {"set_allreduce", (PyCFunction)Net_set_allreduce, METH_O,
     "set_allreduce(f or None): f(buf) sums the float64 array buf over the processes of a "
     "data-parallel job in place (synchronized batch norms call it; see aslnet.h)"},
    {"set_compute_dtype", (PyCFunction)Net_set_compute_dtype, METH_VARARGS,
     "'float32', 'bfloat16' or 'int8': compute type of the convolutions"},
    {"forward", (PyCFunction)(void (*)(void))Net_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(x, training=False, start=0, stop=-1, input_size=None) -> y: layers "
     "[start, stop) on x, the input of layer start (stop=-1: through the last layer).  A "
     "net of any input size runs at x's size when start == 0; from a later layer, at "
     "input_size=(h, w) (default: the size of the last forward)"},
    {"backward", (PyCFunction)(void (*)(void))Net_backward, METH_VARARGS | METH_KEYWORDS,
     "backward(dy, need_dx=False) -> dx or None"},
    {"set_optimizer", (PyCFunction)(void (*)(void))Net_set_optimizer, METH_VARARGS | METH_KEYWORDS,
     "set_optimizer('sgd'|'adam'|'adamw'|'rmsprop'|'adagrad'|'nadam', learning_rate=..., ...)"},
    {"set_learning_rate", (PyCFunction)Net_set_learning_rate, METH_VARARGS, ""},
    {"reset_optimizer", (PyCFunction)Net_reset_optimizer, METH_NOARGS,
     "forget the optimizer's slots and iteration count"},
    {"apply_gradients", (PyCFunction)Net_apply_gradients, METH_NOARGS, "one optimizer step"},
    {"grad_buffer", (PyCFunction)Net_grad_buffer, METH_NOARGS,
     "grad_buffer() -> float32 array: the trainable weights' gradients as one writable view "
     "of C memory (what apply_gradients reads); ask again after the trainable layers change"},
    {"slot", (PyCFunction)Net_slot, METH_VARARGS, "copy of optimizer slot k of (i, j), or None"},
    {"set_slot", (PyCFunction)Net_set_slot, METH_VARARGS, "set optimizer slot k of (i, j)"},
    {"train_step", (PyCFunction)(void (*)(void))Net_train_step, METH_VARARGS | METH_KEYWORDS,
     "train_step(x, y_onehot, start=0, input_size=None, apply=True) -> (loss, y_pred); "
     "apply=False: no optimizer step, (loss, y_pred, has_grads); x is the input "
     "of layer start (input_size as in forward)"},
    {"softmax_output", (PyCFunction)Net_softmax_output, METH_NOARGS,
     "index of the softmax layer train_step fuses with the cross-entropy (the last "
     "layer but reshapes, softmax, (1, 1, classes)), or None: then training is refused"},
    {"layer_calls", (PyCFunction)Net_layer_calls, METH_VARARGS, "(forward, backward) call counts"},
    {"calibrate", (PyCFunction)(void (*)(void))Net_calibrate, METH_VARARGS | METH_KEYWORDS,
     "calibrate(x, reset=False): record int8 activation ranges (a float32 pass)"},
    {"ranges", (PyCFunction)Net_ranges, METH_VARARGS,
     "ranges(values=None): int8 (min, max) of each layer's input and the output"},
    {"fold_count", (PyCFunction)Net_fold_count, METH_VARARGS,
     "fold_count(i): times the fused group led by conv layer i folded its batch norm"},
    {"buffer_bytes", (PyCFunction)Net_buffer_bytes, METH_NOARGS,
     "bytes of activation, gradient and input buffers held now"},
    {NULL, NULL, 0, NULL}};

static PyObject *Net_get_num_slots(NetObject *self, void *closure)
{
    (void)closure;
    if (enter(self)) return NULL;
    return PyLong_FromLong(asl_net_num_slots(self->net));
}

static PyGetSetDef Net_getset[] = {
    {"num_slots", (getter)Net_get_num_slots, NULL,
     "optimizer slots per trainable weight (0 without an optimizer)", NULL},
    {"iterations", (getter)Net_get_iterations, (setter)Net_set_iterations, "optimizer steps", NULL},
    {"num_layers", (getter)Net_get_num_layers, NULL, "number of layers", NULL},
    {"input_shape", (getter)Net_get_input_shape, NULL,
     "per-sample input shape; None for a height or width of any size", NULL},
    {"input_size", (getter)Net_get_input_size, NULL,
     "(height, width) of the last forward's input (a fixed net: its own), or None", NULL},
    {"num_plans", (getter)Net_get_num_plans, NULL,
     "forwards that built primitives (a new input size or batch size): for tests", NULL},
    {"planned_sizes", (getter)Net_get_sizes, NULL,
     "input sizes (height, width) whose plans a net of any size keeps now", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject NetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aslnet._core.Net",
    .tp_basicsize = sizeof(NetObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Net(input_shape, min_size=None): a chain of layers computed by the aslnet C "
              "core.  input_shape = (height, width, channels); height and/or width None (or "
              "-1) make a net of any input size: every forward runs at its input's size, "
              "planning each size once and keeping the plans (at most 16 sizes, least "
              "recently used dropped); output_shape(i) then has None where a shape follows "
              "the input size.  min_size=(h, w): smallest input size accepted (default 1x1).  "
              "add('add', source=k) adds layer k's output to the previous layer's "
              "(a residual connection; equal shapes); add('multiply', source=k) multiplies them, "
              "add('concatenate', source=k, source_first=0) puts them side by side along "
              "channels (source_first=1: layer k's channels first).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Net_init,
    .tp_dealloc = (destructor)Net_dealloc,
    .tp_methods = Net_methods,
    .tp_getset = Net_getset,
};

static PyObject *core_bfloat16_supported(PyObject *mod, PyObject *noargs)
{
    (void)mod;
    (void)noargs;
    return PyBool_FromLong(asl_bf16_supported());
}

static PyObject *core_int8_vnni(PyObject *mod, PyObject *noargs)
{
    (void)mod;
    (void)noargs;
    return PyBool_FromLong(asl_int8_vnni());
}

static int padding_arg(const char *s, asl_padding *p)
{
    if (!strcmp(s, "valid")) *p = ASL_PAD_VALID;
    else if (!strcmp(s, "same")) *p = ASL_PAD_SAME;
    else {
        PyErr_Format(PyExc_ValueError, "padding must be 'valid' or 'same', got '%s'", s);
        return -1;
    }
    return 0;
}

static PyObject *core_conv_geometry(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"size", "kernel", "stride", "padding", "dilation", NULL};
    int in, k, s, dil = 1, out, before, after;
    const char *pname = "valid";
    asl_padding p;
    asl_status st;
    (void)mod;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iii|si", kwlist, &in, &k, &s, &pname, &dil) ||
        padding_arg(pname, &p))
        return NULL;
    st = asl_conv_geometry(in, k, s, dil, p, &out, &before, &after);
    if (st == ASL_ERR_ARG) {
        PyErr_Format(PyExc_ValueError, "conv_geometry: size, kernel, stride and dilation "
                     "must be >= 1, got %d, %d, %d, %d", in, k, s, dil);
        return NULL;
    }
    if (st != ASL_OK) {
        PyErr_Format(PyExc_ValueError, "conv_geometry: input size %d is smaller than the "
                     "kernel %d (dilation %d) with padding 'valid': use padding='same' or "
                     "a larger input", in, k, dil);
        return NULL;
    }
    return Py_BuildValue("(iii)", out, before, after);
}

/* Output shape of one layer on a per-sample input shape: the rule of the
 * layer's own init (the one Net.add applies), run on a throw-away network
 * so that shapes have one home. */
static PyObject *core_layer_output_shape(PyObject *mod, PyObject *args, PyObject *kw)
{
    const char *kind;
    int h, w, c, shape[3];
    asl_layer_desc d;
    asl_net *net = NULL;
    asl_status st;
    PyObject *r = NULL;
    (void)mod;
    if (!PyArg_ParseTuple(args, "s(iii)", &kind, &h, &w, &c) || parse_layer(kind, kw, &d))
        return NULL;
    if (h < 1 || w < 1 || c < 1) {
        PyErr_Format(PyExc_ValueError, "input_shape must be positive, got (%d, %d, %d)",
                     h, w, c);
        return NULL;
    }
    st = asl_net_create(&net, h, w, c);
    if (st != ASL_OK) {
        PyErr_SetString(st == ASL_ERR_NOMEM ? PyExc_MemoryError : CoreError,
                        "could not create the network (oneDNN engine)");
        return NULL;
    }
    st = asl_net_add(net, &d);
    if (st == ASL_OK) st = asl_net_output_shape(net, 0, shape);
    if (st == ASL_OK) {
        r = Py_BuildValue("(iii)", shape[0], shape[1], shape[2]);
    } else {
        const char *msg = asl_net_last_error(net);
        PyErr_SetString(st == ASL_ERR_ARG || st == ASL_ERR_SHAPE ? PyExc_ValueError
                        : st == ASL_ERR_NOMEM ? PyExc_MemoryError : CoreError,
                        msg && *msg ? msg : "aslnet core error");
    }
    asl_net_destroy(net);
    return r;
}

/* Per-sample categorical cross-entropy of softmax outputs: the C core's
 * rule (asl_categorical_crossentropy, the one train_step applies). */
static PyObject *core_categorical_crossentropy(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"y_true", "y_pred", NULL};
    PyObject *yo, *po, *out = NULL;
    PyArrayObject *y = NULL, *p = NULL;
    const int flags = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST;
    npy_intp n;
    int classes;
    asl_status st;
    (void)mod;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kwlist, &yo, &po)) return NULL;
    y = (PyArrayObject *)PyArray_FROMANY(yo, NPY_FLOAT32, 2, 2, flags);
    if (y) p = (PyArrayObject *)PyArray_FROMANY(po, NPY_FLOAT32, 2, 2, flags);
    if (!y || !p) {
        if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "categorical_crossentropy takes y_true and "
                            "y_pred as (samples, classes) arrays: reshape them to 2-D");
        }
        goto done;
    }
    if (!PyArray_SAMESHAPE(y, p) || PyArray_DIM(y, 1) < 1 || PyArray_DIM(y, 1) > INT_MAX ||
        PyArray_DIM(y, 0) > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "categorical_crossentropy: y_true and y_pred "
                        "must have the same (samples, classes) shape, classes >= 1");
        goto done;
    }
    n = PyArray_DIM(y, 0);
    classes = (int)PyArray_DIM(y, 1);
    out = PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    if (!out) goto done;
    Py_BEGIN_ALLOW_THREADS
    st = asl_categorical_crossentropy(PyArray_DATA(y), PyArray_DATA(p), (int)n, classes,
                                      PyArray_DATA((PyArrayObject *)out));
    Py_END_ALLOW_THREADS
    if (st != ASL_OK) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_ValueError, "categorical_crossentropy: bad arguments");
    }
done:
    Py_XDECREF(y);
    Py_XDECREF(p);
    return out;
}

static PyMethodDef core_functions[] = {
    {"categorical_crossentropy", (PyCFunction)(void (*)(void))core_categorical_crossentropy,
     METH_VARARGS | METH_KEYWORDS,
     "categorical_crossentropy(y_true, y_pred) -> float64 (samples,): -sum(y * log(max(p, "
     "FLT_MIN))) per sample of a softmax output, train_step's rule"},
    {"conv_geometry", (PyCFunction)(void (*)(void))core_conv_geometry,
     METH_VARARGS | METH_KEYWORDS,
     "conv_geometry(size, kernel, stride, padding='valid', dilation=1) -> (out, pad_before, "
     "pad_after): the convolution rule along one axis (TF/Keras 'valid' and 'same')"},
    {"layer_output_shape", (PyCFunction)(void (*)(void))core_layer_output_shape,
     METH_VARARGS | METH_KEYWORDS,
     "layer_output_shape(kind, input_shape, **config) -> (h, w, c): what Net.add(kind, "
     "**config) gives on a per-sample input (h, w, c); ValueError as Net.add"},
    {"int8_vnni", core_int8_vnni, METH_NOARGS,
     "True if this CPU has VNNI: int8 u8 activations use [0, 255], else [0, 127]"},
    {"bfloat16_supported", core_bfloat16_supported, METH_NOARGS,
     "True if this CPU runs bfloat16 convolutions natively (AVX512_BF16)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "_core",
    "The aslnet C core (oneDNN + OpenBLAS).", -1, core_functions, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void)
{
    PyObject *m;
    import_array();
    if (PyType_Ready(&NetType) < 0) return NULL;
    m = PyModule_Create(&core_module);
    if (!m) return NULL;
    CoreError = PyErr_NewException("aslnet._core.CoreError", PyExc_RuntimeError, NULL);
    if (!CoreError || PyModule_AddObjectRef(m, "CoreError", CoreError) < 0 ||
        PyModule_AddObjectRef(m, "Net", (PyObject *)&NetType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
