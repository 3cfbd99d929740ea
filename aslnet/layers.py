"""Keras-shaped layers.  A layer owns its parameters as float32 NumPy arrays
(Keras order and layout); a model's C network computes with those very
arrays (bound, not copied), so every model built from the same layers sees
the same weights, as in Keras.

Each layer describes itself to the C core through ``_core_ops`` — a list of
``(kind, config)`` entries for ``aslnet._core.Net.add`` — and builds its
parameters with Keras's default initialisers.
"""
import math

import numpy as np

from . import backend

__all__ = [
    "Layer", "InputLayer", "Input", "Conv2D", "DepthwiseConv2D", "ZeroPadding2D",
    "BatchNormalization", "ReLU", "Activation", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Dropout", "Reshape", "Flatten", "Dense",
]

_ACTIVATIONS = ("linear", "relu", "relu6", "softmax")


def _activation_name(a):
    if a is None:
        return "linear"
    name = getattr(a, "__name__", a)
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unsupported activation {a!r}; aslnet supports {_ACTIVATIONS}")
    return name


def _pair(v, what):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {v}")
    return v


def core_shape(shape):
    """Keras per-sample shape -> the C core's (h, w, c)."""
    shape = tuple(shape)
    if len(shape) == 3:
        return shape
    if len(shape) == 1:
        return (1, 1, shape[0])
    raise ValueError(f"aslnet supports per-sample shapes (h, w, c) and (features,), got {shape}")


class Variable:
    """A named parameter (what Keras's ``layer.weights`` holds)."""

    _version = 0      # (instances pickled before versions existed)

    def __init__(self, name, value, trainable):
        self.name = name
        self._value = value
        self.trainable = trainable
        self._version = backend.new_version()   # bumped when the values change

    shape = property(lambda self: self._value.shape)
    dtype = property(lambda self: self._value.dtype)

    def numpy(self):
        return self._value.copy()

    def assign(self, value):
        value = np.asarray(value, dtype=np.float32)
        if value.shape != self._value.shape:
            raise ValueError(f"{self.name}: expected shape {self._value.shape}, got {value.shape}")
        np.copyto(self._value, value)
        self._version = backend.new_version()

    def __array__(self, dtype=None, copy=None):
        return self._value.astype(dtype) if dtype else self._value.copy()

    def __repr__(self):
        return f"<Variable '{self.name}' shape={self.shape} dtype=float32>"


class KerasTensor:
    """Symbolic output of a layer: its shape (batch first, None) and history."""

    def __init__(self, shape, layer, inbound=None):
        self.shape = (None,) + tuple(shape)
        self._layer = layer
        self._inbound = inbound

    def __repr__(self):
        return f"<KerasTensor shape={self.shape} from '{self._layer.name}'>"


def _glorot_uniform(shape, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return backend.rng().uniform(-limit, limit, size=shape).astype(np.float32)


# Keras's initializers: name -> (VarianceScaling scale, mode, distribution) or
# a plain rule.  *_normal draw from a normal truncated at 2 standard
# deviations, scaled as Keras does (0.8796... is that truncation's stddev).
_VARIANCE_SCALING = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"), "glorot_normal": (1.0, "fan_avg", "normal"),
    "he_uniform": (2.0, "fan_in", "uniform"), "he_normal": (2.0, "fan_in", "normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"), "lecun_normal": (1.0, "fan_in", "normal"),
}
_INITIALIZERS = (*_VARIANCE_SCALING, "zeros", "ones", "constant", "random_normal",
                 "random_uniform")
_KERAS_CLASS_NAMES = {"GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal",
                      "HeUniform": "he_uniform", "HeNormal": "he_normal",
                      "LecunUniform": "lecun_uniform", "LecunNormal": "lecun_normal",
                      "Zeros": "zeros", "Ones": "ones", "Constant": "constant",
                      "RandomNormal": "random_normal", "RandomUniform": "random_uniform"}


def _initializer(spec, what):
    """(name, config) of a Keras initializer given by name, config dict or
    Keras initializer object; ValueError for one aslnet does not have."""
    if spec is None:
        return None
    if isinstance(spec, str):
        name, cfg = spec.lower(), {}
    elif isinstance(spec, dict) and "class_name" in spec:
        name, cfg = spec["class_name"], dict(spec.get("config") or {})
    elif hasattr(spec, "get_config"):
        name, cfg = type(spec).__name__, dict(spec.get_config())
    else:
        raise ValueError(f"{what}: unsupported initializer {spec!r}")
    name = _KERAS_CLASS_NAMES.get(name, name)
    name = {"zero": "zeros", "one": "ones", "uniform": "random_uniform",
            "normal": "random_normal"}.get(name, name)
    if name not in _INITIALIZERS:
        raise ValueError(f"{what}: unsupported initializer {spec!r}; aslnet has "
                         f"{sorted(_INITIALIZERS)}")
    if cfg.get("seed") is not None:
        raise ValueError(f"{what}: seeded initializers are not supported; use "
                         "aslnet.set_random_seed")
    return name, cfg


def _init_value(init, shape, fan_in, fan_out, default):
    """A float32 array of ``shape`` drawn from ``init`` (see _initializer),
    or ``default()`` when no initializer was given."""
    if init is None:
        return default()
    name, cfg = init
    rng = backend.rng()
    if name == "zeros":
        v = np.zeros(shape)
    elif name == "ones":
        v = np.ones(shape)
    elif name == "constant":
        v = np.full(shape, float(cfg.get("value", 0.0)))
    elif name == "random_normal":
        v = rng.normal(float(cfg.get("mean", 0.0)), float(cfg.get("stddev", 0.05)), shape)
    elif name == "random_uniform":
        v = rng.uniform(float(cfg.get("minval", -0.05)), float(cfg.get("maxval", 0.05)), shape)
    else:
        scale, mode, dist = _VARIANCE_SCALING[name]
        n = max(1.0, fan_in if mode == "fan_in" else (fan_in + fan_out) / 2.0)
        if dist == "uniform":
            limit = math.sqrt(3.0 * scale / n)
            v = rng.uniform(-limit, limit, shape)
        else:
            std = math.sqrt(scale / n) / 0.87962566103423978
            v = rng.normal(0.0, 1.0, shape)
            bad = np.abs(v) > 2.0
            while bad.any():                          # redraw beyond 2 stddev
                v[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
                bad = np.abs(v) > 2.0
            v = v * std
    return np.asarray(v, np.float32)


def _conv_fans(shape):
    rf = int(np.prod(shape[:-2]))
    return shape[-2] * rf, shape[-1] * rf


# Keras arguments that aslnet's layers take only at the value that changes
# nothing: another value is refused, never ignored.
_NEUTRAL_ARGS = {
    "dtype": ((None, "float32"), "'float32' (set mixed_bfloat16 as the model's dtype_policy)"),
    "data_format": ((None, "channels_last"), "'channels_last'"),
    "dilation_rate": ((1, (1, 1)), "1"),
    "groups": ((1,), "1"),
    "autocast": ((True,), "True"),
}
for _k in ("kernel", "bias", "depthwise", "beta", "gamma", "activity"):
    _NEUTRAL_ARGS[_k + "_regularizer"] = ((None,), "None: aslnet has no regularizers")
for _k in ("kernel", "bias", "depthwise", "beta", "gamma"):
    _NEUTRAL_ARGS[_k + "_constraint"] = ((None,), "None: aslnet has no constraints")


def _is_neutral(value, allowed):
    value = getattr(value, "name", value)            # a dtype policy object
    if isinstance(value, list):
        value = tuple(value)
    try:
        return any(value == a and type(value) is type(a) or value is a for a in allowed)
    except (TypeError, ValueError):
        return False


def _pop_input_shape(kwargs):
    """Keras's input_shape / batch_input_shape / input_dim on a layer (used
    by a Sequential when the layer comes first; ignored elsewhere, as Keras)."""
    shape = None
    if kwargs.get("input_shape") is not None:
        shape = tuple(kwargs["input_shape"])
    elif kwargs.get("batch_input_shape") is not None:
        shape = tuple(kwargs["batch_input_shape"])[1:]
    elif kwargs.get("input_dim") is not None:
        shape = (int(kwargs["input_dim"]),)
    for key in ("input_shape", "batch_input_shape", "input_dim", "batch_size"):
        kwargs.pop(key, None)
    return shape


class Layer:
    """Base class: name, trainable flag, weights, the functional call."""

    _base_name = "layer"
    _training_dependent = False      # computes differently in training mode

    def __init__(self, name=None, trainable=True, **kwargs):
        self._input_shape_arg = _pop_input_shape(kwargs)
        for key in [k for k in kwargs if k in _NEUTRAL_ARGS]:
            value = kwargs.pop(key)
            allowed, what = _NEUTRAL_ARGS[key]
            if not _is_neutral(value, allowed):
                raise NotImplementedError(f"{type(self).__name__}: {key}={value!r} is not "
                                          f"supported by aslnet (only {what})")
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        self.name = name or backend.unique_name(self._base_name)
        self._trainable = bool(trainable)
        self._vars = []            # [Variable], Keras order
        self.built = False
        self._in_shape = None      # per-sample shapes, set when called
        self._out_shape = None
        self._inbound = None
        self._output = None

    # -- trainable ------------------------------------------------------
    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)

    # -- weights ----------------------------------------------------------
    def _add_weight(self, name, value, trainable=True):
        value = np.ascontiguousarray(value, dtype=np.float32)
        self._vars.append(Variable(f"{self.name}/{name}:0", value, trainable))

    _WEIGHT_ATTRS = ("kernel", "bias", "depthwise_kernel", "gamma", "beta", "moving_mean",
                     "moving_variance")

    def __getattr__(self, attr):
        """Keras's ``layer.kernel`` / ``layer.bias`` / ``layer.gamma`` ...: the Variable
        (``bias`` is None for a layer built without one)."""
        if attr in Layer._WEIGHT_ATTRS and "_vars" in self.__dict__:
            for v in self.__dict__["_vars"]:
                if v.name.rsplit("/", 1)[-1] == attr + ":0":
                    return v
            if attr == "bias" and getattr(self, "use_bias", None) is False:
                return None
        if attr in ("input_shape", "output_shape"):   # the property found no shape
            raise AttributeError(f"The layer {self.__dict__.get('name')} has never been "
                                 f"called and thus has no defined {attr.replace('_', ' ')}.")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    @property
    def dtype(self):
        return "float32"

    @property
    def weights(self):
        return list(self._vars)

    @property
    def trainable_weights(self):
        return [v for v in self._vars if v.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return list(self._vars)
        return [v for v in self._vars if not v.trainable]

    def get_weights(self):
        return [v.numpy() for v in self._vars]

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) != len(self._vars):
            raise ValueError(f"Layer '{self.name}' expects {len(self._vars)} weights, "
                             f"got {len(weights)}")
        values = []
        for v, w in zip(self._vars, weights):
            w = np.asarray(w)
            if w.shape != v.shape:
                raise ValueError(f"Layer '{self.name}' weight {v.name}: expected shape "
                                 f"{v.shape}, got {w.shape}")
            if not np.issubdtype(w.dtype, np.number):
                raise ValueError(f"Layer '{self.name}': weights must be numeric")
            values.append(w)
        for v, w in zip(self._vars, values):
            np.copyto(v._value, w, casting="unsafe")
            v._version = backend.new_version()

    def count_params(self):
        return int(sum(v._value.size for v in self._vars))

    # -- graph ------------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def __call__(self, x, training=None):
        if training is not None and self._training_dependent:
            raise NotImplementedError(
                f"Layer '{self.name}': training={training!r} in a layer call is not supported; "
                "aslnet runs a layer in training mode inside fit when it is trainable "
                "(BatchNormalization, Dropout) and in inference mode otherwise: set "
                "layer.trainable instead")
        if not isinstance(x, KerasTensor):
            module = (type(x).__module__ or "").split(".")[0]
            hint = (f" from {module}: aslnet layers do not mix with other frameworks' tensors"
                    if module in ("keras", "tensorflow", "tf_keras", "torch") else "")
            raise TypeError(f"Layer '{self.name}' must be called on the output of another "
                            f"aslnet layer (e.g. aslnet.layers.Input(...)); got "
                            f"{type(x).__name__}{hint}")
        if self._output is not None:
            raise NotImplementedError(f"Layer '{self.name}' is already in use; aslnet models "
                                      "are chains and do not share a layer twice")
        shape = x.shape[1:]
        if not self.built:
            self.build(shape)
            self.built = True
        self._in_shape = tuple(shape)
        self._out_shape = tuple(self.compute_output_shape(shape))
        self._inbound = x
        self._output = KerasTensor(self._out_shape, self, x)
        return self._output

    @staticmethod
    def _batch_shape(shape):
        if shape is None:          # never called: __getattr__ says so
            raise AttributeError
        return (None,) + shape

    input_shape = property(lambda self: self._batch_shape(self._in_shape),
                           doc="tf.keras 2's ``(None, ...)`` shape of the layer's input.")
    output_shape = property(lambda self: self._batch_shape(self._out_shape),
                            doc="tf.keras 2's ``(None, ...)`` shape of the layer's output.")

    @property
    def output(self):
        if self._output is None:
            raise AttributeError(f"Layer '{self.name}' has not been called yet")
        return self._output

    @property
    def input(self):
        if self._inbound is None:
            raise AttributeError(f"Layer '{self.name}' has not been called yet")
        return self._inbound

    def _core_ops(self):
        """[(kind, config)] for the C core; parameters go to the one op
        whose kind takes parameters."""
        return []

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class InputLayer(Layer):
    _base_name = "input"

    def __init__(self, input_shape=None, batch_size=None, name=None, shape=None, **kwargs):
        kwargs.pop("dtype", None)          # inputs are converted to float32
        if "batch_input_shape" in kwargs:
            input_shape = tuple(kwargs.pop("batch_input_shape"))[1:]
        if input_shape is None:
            input_shape = shape            # Keras 3's name
        if input_shape is None:
            raise ValueError("InputLayer needs shape (or input_shape)")
        super().__init__(name=name or backend.unique_name("input", zero_based=False),
                         **kwargs)
        input_shape = tuple(int(d) if d is not None else None for d in input_shape)
        if any(d is None or d < 1 for d in input_shape):
            raise ValueError(f"aslnet needs a fully known input shape, got {input_shape}")
        core_shape(input_shape)
        self._in_shape = self._out_shape = input_shape
        self.built = True
        self._output = KerasTensor(input_shape, self, None)

    def get_config(self):
        return {"name": self.name, "batch_input_shape": (None,) + self._in_shape}


def Input(shape, name=None, **kwargs):
    """Keras's ``Input``: the symbolic input of a functional model."""
    return InputLayer(input_shape=shape, name=name, **kwargs).output


class Conv2D(Layer):
    _base_name = "conv2d"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 activation=None, use_bias=True, kernel_initializer=None,
                 bias_initializer=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._kernel_init = _initializer(kernel_initializer, f"Layer '{self.name}'")
        self._bias_init = _initializer(bias_initializer, f"Layer '{self.name}'")
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = str(padding).lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.activation = _activation_name(activation)
        self.use_bias = bool(use_bias)

    def _out_hw(self, h, w):
        k, s = self.kernel_size, self.strides
        if self.padding == "same":
            return -(-h // s[0]), -(-w // s[1])
        if h < k[0] or w < k[1]:
            raise ValueError(f"Layer '{self.name}': input {h}x{w} is smaller than the "
                             f"kernel {k[0]}x{k[1]} with padding='valid'")
        return (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1

    def _check_input(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Layer '{self.name}' expects (h, w, c) inputs, got {input_shape}")

    def build(self, input_shape):
        self._check_input(input_shape)
        shape = (*self.kernel_size, input_shape[-1], self.filters)
        fans = _conv_fans(shape)
        self._add_weight("kernel", _init_value(self._kernel_init, shape, *fans,
                                               lambda: _glorot_uniform(shape, *fans)))
        if self.use_bias:
            self._add_weight("bias", _init_value(self._bias_init, (self.filters,), *fans,
                                                 lambda: np.zeros(self.filters, np.float32)))

    def compute_output_shape(self, input_shape):
        self._check_input(input_shape)
        return (*self._out_hw(*input_shape[:2]), self.filters)

    def _core_ops(self):
        return [("conv2d", dict(filters=self.filters, kernel_size=self.kernel_size,
                                strides=self.strides, padding=self.padding,
                                use_bias=self.use_bias, activation=self.activation))]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "activation": self.activation,
                "use_bias": self.use_bias}


class DepthwiseConv2D(Conv2D):
    _base_name = "depthwise_conv2d"

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 activation=None, use_bias=True, depthwise_initializer=None, name=None,
                 **kwargs):
        super().__init__(1, kernel_size, strides=strides, padding=padding,
                         activation=activation, use_bias=use_bias,
                         kernel_initializer=depthwise_initializer, name=name, **kwargs)
        if int(depth_multiplier) < 1:
            raise ValueError(f"depth_multiplier must be >= 1, got {depth_multiplier}")
        self.depth_multiplier = int(depth_multiplier)

    def build(self, input_shape):
        self._check_input(input_shape)
        shape = (*self.kernel_size, input_shape[-1], self.depth_multiplier)
        fans = _conv_fans(shape)
        self._add_weight("depthwise_kernel", _init_value(
            self._kernel_init, shape, *fans, lambda: _glorot_uniform(shape, *fans)))
        if self.use_bias:
            n = input_shape[-1] * self.depth_multiplier
            self._add_weight("bias", _init_value(self._bias_init, (n,), *fans,
                                                 lambda: np.zeros(n, np.float32)))

    def compute_output_shape(self, input_shape):
        self._check_input(input_shape)
        return (*self._out_hw(*input_shape[:2]), input_shape[-1] * self.depth_multiplier)

    def _core_ops(self):
        return [("depthwise_conv2d", dict(kernel_size=self.kernel_size, strides=self.strides,
                                          padding=self.padding, use_bias=self.use_bias,
                                          depth_multiplier=self.depth_multiplier,
                                          activation=self.activation))]

    def get_config(self):
        cfg = super().get_config()
        del cfg["filters"]
        return {**cfg, "depth_multiplier": self.depth_multiplier}


class ZeroPadding2D(Layer):
    _base_name = "zero_padding2d"

    def __init__(self, padding=(1, 1), name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        elif all(isinstance(p, int) for p in padding):
            padding = ((padding[0], padding[0]), (padding[1], padding[1]))
        self.padding = tuple(tuple(int(v) for v in p) for p in padding)
        if len(self.padding) != 2 or any(len(p) != 2 or min(p) < 0 for p in self.padding):
            raise ValueError(f"padding must be an int, (h, w) or ((top, bottom), (left, right)) "
                             f"of non-negative ints, got {padding!r}")

    def compute_output_shape(self, s):
        (t, b), (l, r) = self.padding
        return (s[0] + t + b, s[1] + l + r, s[2])

    def _core_ops(self):
        return [("zero_padding2d", dict(padding=self.padding))]

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


class BatchNormalization(Layer):
    """Keras BatchNormalization over the last axis.  Frozen (trainable=False)
    it runs in inference mode, as in Keras; trainable, ``fit`` uses batch
    statistics and updates the moving ones (momentum 0.99)."""

    _base_name = "batch_normalization"
    _training_dependent = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if axis not in (-1, 3):
            raise ValueError("aslnet's BatchNormalization normalises the channel axis (-1)")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)

    def build(self, input_shape):
        c = input_shape[-1]
        self._add_weight("gamma", np.ones(c, np.float32))
        self._add_weight("beta", np.zeros(c, np.float32))
        self._add_weight("moving_mean", np.zeros(c, np.float32), trainable=False)
        self._add_weight("moving_variance", np.ones(c, np.float32), trainable=False)

    def _core_ops(self):
        return [("batch_normalization", dict(momentum=self.momentum, epsilon=self.epsilon))]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon}


class ReLU(Layer):
    _base_name = "re_lu"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if negative_slope or threshold or max_value not in (None, 6, 6.0):
            raise ValueError("aslnet's ReLU supports max_value None or 6 with no slope/threshold")
        self.max_value = None if max_value is None else float(max_value)

    def _core_ops(self):
        return [("activation", dict(activation="relu" if self.max_value is None else "relu6"))]

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value}


class Activation(Layer):
    _base_name = "activation"

    def __init__(self, activation, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.activation = _activation_name(activation)

    def _core_ops(self):
        return [("activation", dict(activation=self.activation))]

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class _GlobalPooling2D(Layer):
    _kind = None

    def __init__(self, keepdims=False, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, s):
        if len(s) != 3:
            raise ValueError(f"Layer '{self.name}' expects (h, w, c) inputs, got {s}")
        return (1, 1, s[2]) if self.keepdims else (s[2],)

    def _core_ops(self):
        return [(self._kind, {})]

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    _base_name = "global_average_pooling2d"
    _kind = "global_average_pooling2d"


class GlobalMaxPooling2D(_GlobalPooling2D):
    _base_name = "global_max_pooling2d"
    _kind = "global_max_pooling2d"


class Dropout(Layer):
    _base_name = "dropout"
    _training_dependent = True

    def __init__(self, rate, noise_shape=None, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if noise_shape is not None:
            raise NotImplementedError(f"Layer '{self.name}': Dropout's noise_shape is not "
                                      "supported (independent dropout per value only)")
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = int(backend.rng().integers(2 ** 63)) if seed is None else int(seed)

    def _core_ops(self):
        return [("dropout", dict(rate=self.rate, seed=self.seed))]

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Reshape(Layer):
    _base_name = "reshape"

    def __init__(self, target_shape, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)

    def compute_output_shape(self, s):
        shape = list(self.target_shape)
        if shape.count(-1) > 1:
            raise ValueError("Reshape: at most one -1")
        size = int(np.prod(s))
        if -1 in shape:
            known = -int(np.prod(shape))
            if known == 0 or size % known:
                raise ValueError(f"Reshape: cannot reshape {s} to {self.target_shape}")
            shape[shape.index(-1)] = size // known
        if int(np.prod(shape)) != size:
            raise ValueError(f"Reshape: total size of {s} ({size}) differs from "
                             f"{self.target_shape}")
        core_shape(shape)
        return tuple(shape)

    def _core_ops(self):
        return [("reshape", dict(target_shape=core_shape(self._out_shape)))]

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class Flatten(Reshape):
    _base_name = "flatten"

    def __init__(self, name=None, **kwargs):
        super().__init__((-1,), name=name, **kwargs)

    def get_config(self):
        cfg = super().get_config()
        del cfg["target_shape"]
        return cfg


class Dense(Layer):
    """Keras Dense.  On (h, w, c) inputs it acts on the last axis, as in
    Keras (computed as a 1x1 convolution)."""

    _base_name = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer=None,
                 bias_initializer=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._kernel_init = _initializer(kernel_initializer, f"Layer '{self.name}'")
        self._bias_init = _initializer(bias_initializer, f"Layer '{self.name}'")
        if int(units) < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        self.units = int(units)
        self.activation = _activation_name(activation)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        fan_in = input_shape[-1]
        shape = (fan_in, self.units)
        self._add_weight("kernel", _init_value(self._kernel_init, shape, fan_in, self.units,
                                               lambda: _glorot_uniform(shape, fan_in,
                                                                       self.units)))
        if self.use_bias:
            self._add_weight("bias", _init_value(self._bias_init, (self.units,), fan_in,
                                                 self.units,
                                                 lambda: np.zeros(self.units, np.float32)))

    def compute_output_shape(self, s):
        if len(s) not in (1, 3):
            raise ValueError(f"Layer '{self.name}': unsupported input shape {s}")
        return (*s[:-1], self.units)

    def _core_ops(self):
        if len(self._in_shape) == 3 and self._in_shape[:2] != (1, 1):
            return [("conv2d", dict(filters=self.units, kernel_size=1, use_bias=self.use_bias,
                                    activation=self.activation))]
        return [("dense", dict(units=self.units, use_bias=self.use_bias,
                               activation=self.activation))]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias}


LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Conv2D, DepthwiseConv2D, ZeroPadding2D, BatchNormalization, ReLU,
    Activation, GlobalAveragePooling2D, GlobalMaxPooling2D, Dropout, Reshape, Flatten, Dense)}
