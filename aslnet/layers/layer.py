"""The base of every layer: ``Layer`` (name, weights, the functional call,
Keras's neutral arguments), its parameters (``Variable``) and its symbolic
output (``KerasTensor``), and the conversion of Keras shapes to the C core's.

A layer owns its parameters as float32 NumPy arrays (Keras order and
layout); a model's C network computes with those very arrays (bound, not
copied), so every model built from the same layers sees the same weights,
as in Keras.  Each layer describes itself to the C core through
``_core_ops()``, a list of ``(kind, config)`` entries for
``aslnet._core.Net.add``; shapes are the C core's rule, asked through
``_core_output_shape`` (one home: csrc/, see ``aslnet._core.layer_output_shape``).
"""
import numpy as np

from .. import _core, backend


def _pair(v, what):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {v}")
    return v


def core_shape(shape):
    """Keras per-sample shape -> the C core's (h, w, c) (h, w may be None: any size)."""
    shape = tuple(shape)
    if len(shape) == 3:
        return shape
    if len(shape) == 1:
        return (1, 1, shape[0])
    raise ValueError(f"aslnet supports per-sample shapes (h, w, c) and (features,), got {shape}")


def _core_output_shape(layer, input_shape):
    """Per-sample output shape (h, w, c) of ``layer``'s C ops on the per-sample
    ``input_shape``: the C core's shape rule (what ``Net.add`` will compute),
    with its refusal as a ValueError naming the layer."""
    shape = core_shape(input_shape)
    try:
        if None in shape:
            # any input size: a probe network of the layer's ops on (None, None, c)
            # says which dimensions follow the input size (the C core's rule)
            net = _core.Net(shape)
            for kind, cfg in layer._core_ops():
                net.add(kind, **cfg)
            return tuple(net.output_shape(net.num_layers - 1))
        for kind, cfg in layer._core_ops():
            shape = _core.layer_output_shape(kind, shape, **cfg)
    except ValueError as e:
        raise ValueError(f"Layer '{layer.name}': {e}") from None
    return shape


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
    """Symbolic output of a layer: its shape (batch first, None) and history
    (``_inbound``: the layer's input tensor, a list of them for a merge layer,
    None for an Input)."""

    def __init__(self, shape, layer, inbound=None):
        self.shape = (None,) + tuple(shape)
        self._layer = layer
        self._inbound = inbound

    @property
    def _inputs(self):
        """The tensors the producing layer read (empty for an Input)."""
        if self._inbound is None:
            return ()
        return tuple(self._inbound) if isinstance(self._inbound, list) else (self._inbound,)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape} from '{self._layer.name}'>"


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


def _refuse_custom_layer(cls):
    """A user's Layer subclass computing in ``call`` (Python on tensors): aslnet
    runs every layer in C and cannot run it -- said when it is made."""
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            f"Custom layer {cls.__name__}: aslnet runs layers in C and cannot run a Layer "
            "subclass's call() (nor layers.Lambda); build the computation from aslnet's "
            "layers (see README's Keras API table)")
    return __init__


class Layer:
    """Base class: name, trainable flag, weights, the functional call."""

    _base_name = "layer"
    _training_dependent = False      # computes differently in training mode

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "call" in cls.__dict__ and "_core_ops" not in cls.__dict__:
            cls.__init__ = _refuse_custom_layer(cls)

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
        """Whether training updates the layer's weights (settable, as Keras's;
        False freezes every weight of the layer)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)

    # -- weights ----------------------------------------------------------
    def _add_weight(self, name, value, trainable=True):
        value = np.ascontiguousarray(value, dtype=np.float32)
        self._vars.append(Variable(f"{self.name}/{name}:0", value, trainable))

    _WEIGHT_ATTRS = ("kernel", "bias", "depthwise_kernel", "pointwise_kernel", "gamma",
                     "beta", "moving_mean", "moving_variance")

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
        """The weights' dtype: always ``"float32"`` (bfloat16 compute is
        :mod:`aslnet.mixed_precision`'s)."""
        return "float32"

    @property
    def weights(self):
        """Every weight of the layer (its Variables), in Keras's order."""
        return list(self._vars)

    @property
    def trainable_weights(self):
        """The weights training updates (none when the layer is not ``trainable``)."""
        return [v for v in self._vars if v.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self):
        """The weights training leaves alone (e.g. BatchNormalization's moving
        statistics; all of them when the layer is not ``trainable``)."""
        if not self.trainable:
            return list(self._vars)
        return [v for v in self._vars if not v.trainable]

    variables = property(lambda self: self.weights, doc="Keras's name of ``weights``.")
    trainable_variables = property(lambda self: self.trainable_weights,
                                   doc="Keras's name of ``trainable_weights``.")
    non_trainable_variables = property(lambda self: self.non_trainable_weights,
                                       doc="Keras's name of ``non_trainable_weights``.")

    def get_weights(self):
        """The values of ``weights`` as a list of NumPy arrays."""
        return [v.numpy() for v in self._vars]

    def set_weights(self, weights):
        """Set the values of ``weights`` from a list of arrays in the same
        order and shapes (as ``get_weights`` returns); a wrong count or shape raises
        ``ValueError``."""
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
        """The number of scalars in the layer's weights."""
        return int(sum(v._value.size for v in self._vars))

    # -- graph ------------------------------------------------------------
    def build(self, input_shape):
        """Create the layer's weights for per-sample ``input_shape`` (Keras's
        ``build``; called by the first ``__call__``)."""
        self.built = True

    def compute_output_shape(self, input_shape):
        """The per-sample output shape for per-sample ``input_shape``."""
        return tuple(input_shape)

    def __call__(self, x, training=None):
        self._check_call(x, training)
        shape = x.shape[1:]
        return self._connect(x, tuple(shape), tuple(self.compute_output_shape(shape)))

    def _check_call(self, x, training):
        """Refuse what a call cannot take: training=, a foreign tensor, a second call."""
        if training is not None and self._training_dependent:
            raise NotImplementedError(
                f"Layer '{self.name}': training={training!r} in a layer call is not supported; "
                "aslnet runs a layer in training mode inside fit when it is trainable "
                "(BatchNormalization, Dropout) and in inference mode otherwise: set "
                "layer.trainable instead")
        for t in (x if isinstance(x, (list, tuple)) and self._num_inputs > 1 else [x]):
            if not isinstance(t, KerasTensor):
                module = (type(t).__module__ or "").split(".")[0]
                hint = (f" from {module}: aslnet layers do not mix with other frameworks' "
                        "tensors" if module in ("keras", "tensorflow", "tf_keras", "torch")
                        else "")
                raise TypeError(f"Layer '{self.name}' must be called on the output of another "
                                f"aslnet layer (e.g. aslnet.layers.Input(...)); got "
                                f"{type(t).__name__}{hint}")
        if self._output is not None:
            raise NotImplementedError(f"Layer '{self.name}' is already in use; aslnet models "
                                      "do not share a layer twice")

    _num_inputs = 1          # tensors a call takes (a merge layer: a list of them)

    def _connect(self, x, shape, out_shape):
        """Build (once the output shape is known: a refused input draws no weights)
        and record the call: ``x`` the input tensor (a list for a merge layer)."""
        if not self.built:
            self.build(shape)
            self.built = True
        self._in_shape = tuple(shape)
        self._out_shape = tuple(out_shape)
        self._inbound = list(x) if isinstance(x, (list, tuple)) else x
        self._output = KerasTensor(self._out_shape, self, self._inbound)
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
        """The symbolic output tensor of the layer's (first) call; ``AttributeError`` before it
        is called."""
        if self._output is None:
            raise AttributeError(f"Layer '{self.name}' has not been called yet")
        return self._output

    @property
    def input(self):
        """The symbolic input tensor(s) of the layer's (first) call; ``AttributeError`` before
        it is called."""
        if self._inbound is None:
            raise AttributeError(f"Layer '{self.name}' has not been called yet")
        return self._inbound

    def _core_ops(self):
        """[(kind, config)] for the C core; parameters go to the one op
        whose kind takes parameters.  (A merge layer's ops read a second
        input: ``_core_ops(source=k)``, k the core index of the op that
        computes it; see layers/merging.py.)"""
        return []

    def get_config(self):
        """The layer's constructor arguments (Keras's config: ``from_config``
        makes the same layer, with new weights)."""
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        """A new layer from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"
