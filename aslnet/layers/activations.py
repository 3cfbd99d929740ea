"""Activation layers (ReLU, LeakyReLU, Softmax, Activation) and the
activation names every layer with an ``activation=`` argument accepts.

The C core computes them all (csrc/activation.c); a convolution or Dense
computes linear / relu / relu6 / softmax itself and is followed by an
``activation`` op for the others (``_activation_ops``)."""
from .layer import Layer

# Keras names -> the C core's.  silu is Keras 3's name of swish; leaky_relu
# is keras.activations.leaky_relu (negative_slope 0.2).
_ACTIVATIONS = ("linear", "relu", "relu6", "softmax", "sigmoid", "tanh", "swish", "silu",
                "leaky_relu")
_FUSED = ("linear", "relu", "relu6", "softmax")     # computed inside conv / dense


def _activation_op(name):
    """The C activation op of a Keras activation name."""
    if name == "leaky_relu":
        return ("activation", dict(activation="relu_args", negative_slope=0.2))
    return ("activation", dict(activation=name))


def _activation_name(a):
    if a is None:
        return "linear"
    name = getattr(a, "__name__", a)
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        raise ValueError(f"Unsupported activation {a!r}; aslnet supports {_ACTIVATIONS} "
                         "(and the layers ReLU, LeakyReLU, Softmax)")
    return name


def _activation_ops(name):
    """(activation the conv / dense op computes, [ops after it]) for ``name``."""
    if name in _FUSED:
        return name, []
    return "linear", [_activation_op(name)]


def _number(value, what, layer):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{layer}: {what} must be a number, got {value!r}") from None


class ReLU(Layer):
    """Keras ReLU(max_value, negative_slope, threshold), computed as
    keras.activations.relu computes it."""

    _base_name = "re_lu"
    negative_slope = threshold = 0.0   # (instances pickled before these existed)

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        what = f"Layer '{self.name}'"
        if max_value is not None and not _number(max_value, "max_value", what) >= 0:
            raise ValueError(f"{what}: max_value must be >= 0 (or None), got {max_value!r}")
        if not _number(negative_slope, "negative_slope", what) >= 0:
            raise ValueError(f"{what}: negative_slope must be >= 0, got {negative_slope!r}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = _number(threshold, "threshold", what)

    def _core_ops(self):
        if not self.negative_slope and not self.threshold and self.max_value in (None, 6.0):
            return [("activation", dict(activation="relu" if self.max_value is None
                                        else "relu6"))]
        return [("activation", dict(activation="relu_args", max_value=self.max_value,
                                    negative_slope=self.negative_slope,
                                    threshold=self.threshold))]

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(Layer):
    """Keras LeakyReLU: x for x >= 0, negative_slope * x below (Keras 3's
    ``negative_slope``, tf.keras 2's ``alpha``; default 0.3)."""

    _base_name = "leaky_re_lu"

    def __init__(self, negative_slope=None, alpha=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if negative_slope is not None and alpha is not None:
            raise ValueError(f"Layer '{self.name}': give negative_slope or alpha, not both")
        slope = negative_slope if negative_slope is not None else alpha
        slope = 0.3 if slope is None else _number(slope, "negative_slope", f"Layer '{self.name}'")
        if not slope >= 0:
            raise ValueError(f"Layer '{self.name}': negative_slope must be >= 0, got {slope}")
        self.negative_slope = float(slope)

    @property
    def alpha(self):
        """tf.keras 2's name of ``negative_slope``."""
        return self.negative_slope

    def _core_ops(self):
        return [("activation", dict(activation="relu_args", negative_slope=self.negative_slope))]

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class Softmax(Layer):
    """Keras Softmax over the last axis."""

    _base_name = "softmax"

    def __init__(self, axis=-1, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if axis not in (-1, [-1], (-1,)):
            raise NotImplementedError(f"Layer '{self.name}': Softmax over axis {axis!r}; "
                                      "aslnet computes it over the last axis (-1)")
        self.axis = -1

    def _core_ops(self):
        return [("activation", dict(activation="softmax"))]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Activation(Layer):
    """Keras's ``Activation``: applies an activation function to its input.

    :param activation: a name (``"relu"``, ``"relu6"``, ``"softmax"``, ...) or one
        of ``aslnet.activations``' functions; one the C core lacks is refused."""
    _base_name = "activation"

    def __init__(self, activation, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.activation = _activation_name(activation)

    def _core_ops(self):
        return [_activation_op(self.activation)]

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}
