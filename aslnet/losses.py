"""Losses: the names ``compile(loss=...)`` takes, and Keras's categorical
cross-entropy per sample (what ``evaluate`` reports).

Training computes the cross-entropy fused with the softmax output in the C
core (``Net.train_step``); ``resolve`` is the one place that decides which
losses aslnet trains with.
"""
import numpy as np

from . import _core

__all__ = ["categorical_crossentropy", "resolve", "SUPPORTED"]

SUPPORTED = ("categorical_crossentropy", "sparse_categorical_crossentropy")
_CCE_EPS = 1e-7      # Keras's backend.epsilon(), for non-softmax outputs
_CLASS_NAMES = {"CategoricalCrossentropy": "categorical_crossentropy",
                "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy"}


def resolve(loss):
    """The loss's name; a Keras loss object whose options change the
    objective (from_logits, label_smoothing, another reduction) is refused
    rather than silently trained with the default."""
    cfg = loss.get_config() if hasattr(loss, "get_config") and not isinstance(loss, type) \
        else {}
    odd = {k: v for k, v in cfg.items()
           if (k == "from_logits" and v) or (k == "label_smoothing" and v)
           or (k == "axis" and v not in (-1, None))
           or (k == "ignore_class" and v is not None)
           or (k == "reduction" and v not in ("auto", "sum_over_batch_size", None))}
    if odd:
        raise NotImplementedError(f"Loss {type(loss).__name__} with {odd}: aslnet computes "
                                  "cross-entropy on the softmax output, averaged over the "
                                  "batch, without these options")
    name = getattr(loss, "__name__", None) or getattr(loss, "name", None) or loss
    name = _CLASS_NAMES.get(type(loss).__name__, name)
    if name not in SUPPORTED:
        raise ValueError(f"Unsupported loss {loss!r}; aslnet supports {SUPPORTED}")
    return name


def categorical_crossentropy(y_true, y_pred, from_softmax=True):
    """Keras's categorical cross-entropy per sample.  For a softmax output
    Keras uses the logits (no clipping): -log(p) of the float32 softmax,
    floored at the smallest normal float -- the C core's rule, the one
    ``train_step`` computes; otherwise the outputs are divided by their sum,
    then clipped to [1e-7, 1 - 1e-7]."""
    if from_softmax:
        n = len(y_pred)
        return _core.categorical_crossentropy(
            np.ascontiguousarray(y_true, np.float32).reshape(n, -1),
            np.ascontiguousarray(y_pred, np.float32).reshape(n, -1))
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            p = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
        p = np.clip(p, _CCE_EPS, 1 - _CCE_EPS)
    return -np.sum(y_true * np.log(p), axis=-1)
