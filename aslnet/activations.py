"""Keras's ``activations``: the functions (on NumPy arrays) whose names a
layer's ``activation=`` takes; which of them the C core computes is
``aslnet.layers``' rule (a layer refuses one it lacks, naming what it has)."""
import numpy as np

__all__ = ["linear", "relu", "relu6", "softmax", "sigmoid", "tanh", "swish", "silu", "get",
           "serialize", "deserialize"]


def linear(x):
    """Linear activation (Keras's ``linear``): returns ``x`` unchanged, as an array."""
    return np.asarray(x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Rectified linear unit, as Keras's ``activations.relu``.

    :param x: input array.
    :param negative_slope: slope below ``threshold`` (default 0.0: plain ReLU).
    :param max_value: upper bound of the output; ``None`` (default) for none.
    :param threshold: the value below which the output is damped (default 0.0).
    """
    x = np.asarray(x)
    y = np.where(x > threshold, x, negative_slope * (x - threshold))
    return y if max_value is None else np.minimum(y, max_value)


def relu6(x):
    """ReLU capped at 6 (Keras's ``relu6``): ``min(max(x, 0), 6)``, MobileNet's activation."""
    return np.clip(np.asarray(x), 0, 6)


def softmax(x, axis=-1):
    """Softmax along ``axis`` (default -1, the last), as Keras's ``activations.softmax``.

    Computed stably (the maximum along ``axis`` subtracted first).
    """
    x = np.asarray(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))`` (Keras's ``sigmoid``), computed through ``tanh``."""
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(x)))


def tanh(x):
    """Hyperbolic tangent (Keras's ``tanh``)."""
    return np.tanh(np.asarray(x))


def swish(x):
    """Swish (also called SiLU, Keras's ``swish``/``silu``): ``x * sigmoid(x)``."""
    x = np.asarray(x)
    return x * sigmoid(x)


silu = swish
_FUNCTIONS = {f.__name__: f for f in (linear, relu, relu6, softmax, sigmoid, tanh, swish)}
_FUNCTIONS["silu"] = swish


def get(identifier):
    """A name or an activation function -> the function (None -> linear)."""
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]
    raise ValueError(f"Unsupported activation {identifier!r}; aslnet.activations has "
                     f"{sorted(_FUNCTIONS)} (see README's Keras API table)")


def serialize(activation):
    """The name of an activation function (its ``__name__``), as Keras stores it in a layer's
    config."""
    return getattr(activation, "__name__", activation)


def deserialize(name):
    """The activation function a name stands for (as :func:`get`); an unknown name raises
    ``ValueError``."""
    return get(name)


def __getattr__(name):
    raise AttributeError(f"aslnet.activations has no {name}: aslnet has {sorted(_FUNCTIONS)} "
                         "(see README's Keras API table)")
