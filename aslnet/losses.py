"""Keras's ``losses`` module: functions (per-sample values), classes (the
batch mean, ``sum_over_batch_size``) and ``get``, computed in NumPy.

It is also the one home of which losses train and how (``resolve`` ->
``Objective``):

- categorical / sparse categorical cross-entropy on a softmax output
  (``from_logits=False``, label smoothing folded into the targets) trains
  fused with the softmax in the C core (``Net.train_step``);
- everything else -- ``from_logits=True``, binary cross-entropy, mean squared
  error -- runs the C core's general path: a training forward, the loss and
  its gradient dL/dy on the (batch, classes) output here, ``Net.backward(dy)``
  and ``Net.apply_gradients()`` (``Objective.value_and_grad``).

Values and gradients are computed in float64 and follow Keras 3's
formulas: probabilities clipped to [1e-7, 1 - 1e-7] (``backend.epsilon()``),
logits through a stable log-softmax / log-sigmoid.
"""
import numpy as np

from . import _core

__all__ = ["Loss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "categorical_crossentropy",
           "sparse_categorical_crossentropy", "binary_crossentropy", "mean_squared_error",
           "mse", "MSE", "get", "serialize", "deserialize", "resolve", "Objective", "SUPPORTED"]

EPSILON = 1e-7                     # Keras's backend.epsilon()
CCE, SCCE, BCE, MSE_KIND = ("categorical_crossentropy", "sparse_categorical_crossentropy",
                            "binary_crossentropy", "mean_squared_error")
SUPPORTED = (CCE, SCCE, BCE, MSE_KIND)
_OPTIONS = {CCE: ("from_logits", "label_smoothing"), SCCE: ("from_logits",),
            BCE: ("from_logits", "label_smoothing"), MSE_KIND: ()}
_CLASS_OF = {"CategoricalCrossentropy": CCE, "SparseCategoricalCrossentropy": SCCE,
             "BinaryCrossentropy": BCE, "MeanSquaredError": MSE_KIND}
_ALIASES = {"mse": MSE_KIND, "MSE": MSE_KIND, "mean_squared_error": MSE_KIND,
            "categorical_crossentropy": CCE, "sparse_categorical_crossentropy": SCCE,
            "binary_crossentropy": BCE, "bce": BCE}
_KNOWN_ELSEWHERE = ("mean_absolute_error", "mae", "MAE", "mean_absolute_percentage_error",
                    "mape", "mean_squared_logarithmic_error", "msle", "huber", "log_cosh",
                    "logcosh", "kl_divergence", "kld", "poisson", "hinge", "squared_hinge",
                    "categorical_hinge", "cosine_similarity", "binary_focal_crossentropy",
                    "categorical_focal_crossentropy", "ctc", "dice", "tversky")


# -- the arithmetic: per-sample values and their gradients (float64) -------------------------
def _log_softmax(z):
    z = z - np.max(z, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def _smooth(kind, t, label_smoothing):
    if not label_smoothing:
        return t
    if kind == BCE:
        return t * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return t * (1.0 - label_smoothing) + label_smoothing / t.shape[-1]


def _value_and_grad(kind, t, out, from_logits=False, grad=True):
    """(per-sample loss, d loss_i / d out_i) of dense float64 targets ``t`` and
    outputs ``out``, both (n, classes); the gradient None unless ``grad``."""
    t, out = np.asarray(t, np.float64), np.asarray(out, np.float64)
    g = None
    if kind in (CCE, SCCE):
        if from_logits:
            logp = _log_softmax(out)
            value = -np.sum(t * logp, axis=-1)
            if grad:                # softmax(z) * sum(t) - t
                g = np.exp(logp) * np.sum(t, axis=-1, keepdims=True) - t
        else:                       # Keras: p / sum(p), clipped, -sum(t log p)
            s = np.sum(out, axis=-1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                q = out / s
            qc = np.clip(q, EPSILON, 1 - EPSILON)
            value = -np.sum(t * np.log(qc), axis=-1)
            if grad:                # the clip passes no gradient outside its range
                with np.errstate(divide="ignore", invalid="ignore"):
                    dq = np.where((q > EPSILON) & (q < 1 - EPSILON), -t / qc, 0.0)
                    g = (dq - np.sum(dq * q, axis=-1, keepdims=True)) / s
    elif kind == BCE:
        if from_logits:             # max(z, 0) - z t + log(1 + exp(-|z|)), as TF
            value = np.mean(np.maximum(out, 0) - out * t + np.log1p(np.exp(-np.abs(out))),
                            axis=-1)
            if grad:
                g = (0.5 * (1 + np.tanh(0.5 * out)) - t) / out.shape[-1]   # sigmoid(z) - t
        else:
            p = np.clip(out, EPSILON, 1 - EPSILON)
            value = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p), axis=-1)
            if grad:
                inside = (out > EPSILON) & (out < 1 - EPSILON)
                g = np.where(inside, (p - t) / (p * (1 - p)), 0.0) / out.shape[-1]
    elif kind == MSE_KIND:
        d = out - t
        value = np.mean(d * d, axis=-1)
        if grad:
            g = 2.0 * d / out.shape[-1]
    else:
        raise ValueError(f"internal: unknown loss kind {kind!r}")
    return value, g


def _dense_targets(kind, y_true, y_pred):
    """Keras's y_true for ``kind`` as dense float64 targets shaped like y_pred."""
    y_pred = np.asarray(y_pred)
    if kind == SCCE:
        labels = np.asarray(y_true).reshape(-1).astype(np.int64)
        classes = y_pred.shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"labels must be in [0, {classes}), got "
                             f"{labels.min()}..{labels.max()}")
        return np.eye(classes)[labels].reshape(y_pred.shape)
    return np.asarray(y_true, np.float64).reshape(y_pred.shape)


def _function_value(kind, y_true, y_pred, from_logits=False, label_smoothing=0.0):
    y_pred = np.asarray(y_pred)
    if kind == BCE and y_pred.ndim == 0:
        y_pred = y_pred.reshape(1)
    t = _smooth(kind, _dense_targets(kind, y_true, y_pred), label_smoothing)
    n = y_pred.shape[:-1]
    value, _ = _value_and_grad(kind, t.reshape(-1, y_pred.shape[-1]),
                               y_pred.reshape(-1, y_pred.shape[-1]), from_logits, grad=False)
    return value.reshape(n).astype(np.float32)


# -- Keras's functions -------------------------------------------------------------------------
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """-sum(y_true * log(p)) per sample; ``p``: y_pred divided by its sum and
    clipped to [1e-7, 1 - 1e-7], or the softmax of y_pred (``from_logits``)."""
    _check_axis(axis)
    return _function_value(CCE, y_true, y_pred, from_logits, label_smoothing)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    """Categorical cross-entropy with integer labels."""
    _check_axis(axis)
    if ignore_class is not None:
        raise NotImplementedError("sparse_categorical_crossentropy(ignore_class=...) is not "
                                  "supported by aslnet")
    return _function_value(SCCE, y_true, y_pred, from_logits)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Mean over the last axis of -(y log p + (1 - y) log(1 - p)); ``p``:
    y_pred clipped to [1e-7, 1 - 1e-7], or its sigmoid (``from_logits``)."""
    _check_axis(axis)
    return _function_value(BCE, y_true, y_pred, from_logits, label_smoothing)


def mean_squared_error(y_true, y_pred):
    """mean((y_true - y_pred) ** 2) over the last axis."""
    return _function_value(MSE_KIND, y_true, y_pred)


mse = MSE = mean_squared_error
_FUNCTIONS = {CCE: categorical_crossentropy, SCCE: sparse_categorical_crossentropy,
              BCE: binary_crossentropy, MSE_KIND: mean_squared_error}


def _check_axis(axis):
    if axis not in (-1, None):
        raise NotImplementedError(f"losses on axis={axis}: aslnet computes them over the "
                                  "last axis (the classes)")


# -- Keras's classes --------------------------------------------------------------------------
class Loss:
    """Keras's ``Loss``: ``loss(y_true, y_pred, sample_weight=None)`` is the
    batch mean of the per-sample values times the weights."""

    _kind = None

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None, **options):
        if reduction not in ("sum_over_batch_size", "auto", None):
            raise NotImplementedError(f"{type(self).__name__}(reduction={reduction!r}): "
                                      "aslnet averages the loss over the batch "
                                      "('sum_over_batch_size')")
        if dtype not in (None, "float32"):
            raise NotImplementedError(f"{type(self).__name__}(dtype={dtype!r}): aslnet "
                                      "computes losses in float32")
        self.name = name or self._kind
        self.reduction = "sum_over_batch_size"
        self._options = options

    def call(self, y_true, y_pred):
        """The per-sample loss values (no weights, no reduction), as Keras's ``Loss.call``."""
        return _FUNCTIONS[self._kind](y_true, y_pred, **self._options)

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = np.asarray(self.call(y_true, y_pred), np.float64)
        if sample_weight is not None:
            values = values * np.broadcast_to(np.asarray(sample_weight, np.float64).reshape(
                values.shape[:1] + (1,) * (values.ndim - 1)), values.shape)
        return np.float32(np.sum(values) / max(values.size, 1))

    def get_config(self):
        """The constructor's arguments as a dict (Keras's ``get_config``)."""
        return {"name": self.name, "reduction": self.reduction, **self._options}

    @classmethod
    def from_config(cls, config):
        """Build the loss from a ``get_config`` dict (a Keras ``dtype`` or
        tf.keras's ``fn`` entry is dropped)."""
        config = {k: v for k, v in config.items() if k not in ("fn", "dtype")}
        return cls(**config)

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({opts})"


class CategoricalCrossentropy(Loss):
    """Keras's ``CategoricalCrossentropy``: one-hot (or soft) targets.

    :param from_logits: whether ``y_pred`` are logits (default False: probabilities).
    :param label_smoothing: in [0, 1] (default 0.0): targets become
        ``t * (1 - a) + a / classes``.
    :param axis: the class axis; only -1 (the default).
    :param reduction: only ``"sum_over_batch_size"`` (the default; ``"auto"`` means it).
    :param name: default ``"categorical_crossentropy"``."""
    _kind = CCE

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", **kwargs):
        _check_axis(axis)
        super().__init__(name, reduction, from_logits=bool(from_logits),
                         label_smoothing=_smoothing(label_smoothing), **kwargs)


class SparseCategoricalCrossentropy(Loss):
    """Keras's ``SparseCategoricalCrossentropy``: integer class labels.

    :param from_logits: whether ``y_pred`` are logits (default False: probabilities).
    :param ignore_class: only None (the default): aslnet does not mask a class.
    :param reduction: only ``"sum_over_batch_size"`` (the default).
    :param name: default ``"sparse_categorical_crossentropy"``."""
    _kind = SCCE

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", **kwargs):
        if ignore_class is not None:
            raise NotImplementedError("SparseCategoricalCrossentropy(ignore_class=...) is "
                                      "not supported by aslnet")
        super().__init__(name, reduction, from_logits=bool(from_logits), **kwargs)


class BinaryCrossentropy(Loss):
    """Keras's ``BinaryCrossentropy``: targets in [0, 1], one value per output unit.

    :param from_logits: whether ``y_pred`` are logits (default False: probabilities).
    :param label_smoothing: in [0, 1] (default 0.0): targets become
        ``t * (1 - a) + a / 2``.
    :param axis: only -1 (the default).
    :param reduction: only ``"sum_over_batch_size"`` (the default).
    :param name: default ``"binary_crossentropy"``."""
    _kind = BCE

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", **kwargs):
        _check_axis(axis)
        super().__init__(name, reduction, from_logits=bool(from_logits),
                         label_smoothing=_smoothing(label_smoothing), **kwargs)


class MeanSquaredError(Loss):
    """Keras's ``MeanSquaredError``: ``mean((y_true - y_pred) ** 2)`` over the last axis.

    :param reduction: only ``"sum_over_batch_size"`` (the default).
    :param name: default ``"mean_squared_error"``."""
    _kind = MSE_KIND

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", **kwargs):
        super().__init__(name, reduction, **kwargs)


_CLASSES = {c.__name__: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy,
                                    BinaryCrossentropy, MeanSquaredError)}


def _smoothing(a):
    a = float(a)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {a}")
    return a


def get(identifier):
    """Keras's ``losses.get``: a name (function), a class name (instance), a
    config dict, a Loss or a function -> that loss; None -> None."""
    if identifier is None or isinstance(identifier, Loss) or identifier in _FUNCTIONS.values():
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        if identifier in _ALIASES:
            return _FUNCTIONS[_ALIASES[identifier]]
        raise ValueError(_unknown(identifier))
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")


def serialize(loss):
    """A Loss -> {"class_name", "config"}; a function -> its name."""
    if isinstance(loss, Loss):
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    return getattr(loss, "__name__", loss)


def deserialize(config):
    """Keras's ``losses.deserialize``: a name (as :func:`get`) or a
    ``{"class_name", "config"}`` dict -> the loss; unknown ones raise ``ValueError``."""
    if isinstance(config, str):
        return get(config)
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        fn = (config.get("config") or {}).get("fn")      # tf.keras's LossFunctionWrapper
        if fn in _ALIASES:
            return _FUNCTIONS[_ALIASES[fn]]
        raise ValueError(_unknown(config.get("class_name")))
    return cls.from_config(dict(config.get("config") or {}))


def _unknown(name):
    extra = (f" ({name!r} is a Keras loss aslnet does not train with)"
             if name in _KNOWN_ELSEWHERE else "")
    return (f"Unsupported loss {name!r}{extra}; aslnet supports {', '.join(SUPPORTED)} (also as "
            f"{', '.join(_CLASSES)}; see README's Keras API table)")


# -- what compile takes: the one home of how each loss trains ---------------------------------
_KERAS_CLASSES = ("MeanAbsoluteError", "MeanAbsolutePercentageError",
                  "MeanSquaredLogarithmicError", "Huber", "LogCosh", "KLDivergence", "Poisson",
                  "Hinge", "SquaredHinge", "CategoricalHinge", "CosineSimilarity",
                  "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "CTC", "Dice",
                  "Tversky", "LossFunctionWrapper")


def __getattr__(name):
    """Keras's losses aslnet lacks import, and say so when used (aslnet._missing)."""
    from ._missing import missing
    if name in _KNOWN_ELSEWHERE or name in _KERAS_CLASSES:
        return missing("aslnet.losses", name, f"aslnet trains with {', '.join(SUPPORTED)}")
    raise AttributeError(f"module 'aslnet.losses' has no attribute {name!r}")


class Objective:
    """What ``compile(loss=...)`` resolved to: the kind of loss, its options,
    and what training does with it."""

    def __init__(self, kind, from_logits=False, label_smoothing=0.0, identifier=None):
        self.kind, self.from_logits = kind, bool(from_logits)
        self.label_smoothing = _smoothing(label_smoothing)
        self.sparse = kind == SCCE
        # what model.loss shows (and the model file keeps): the name when the
        # options are Keras's defaults, else the loss's Keras config
        options = {k: getattr(self, k) for k in _OPTIONS[kind]}
        self.identifier = identifier or (kind if not any(options.values()) else {
            "class_name": next(c for c, k in _CLASS_OF.items() if k == kind),
            "config": {"name": kind, "reduction": "sum_over_batch_size", **options}})

    def __repr__(self):
        return f"Objective({self.kind}, from_logits={self.from_logits}, " \
               f"label_smoothing={self.label_smoothing})"

    def fused(self, softmax_output):
        """Whether training runs the C core's softmax + cross-entropy."""
        return self.kind in (CCE, SCCE) and not self.from_logits and softmax_output

    def needs_softmax(self):
        """Cross-entropy on probabilities: aslnet trains it only on a softmax output."""
        return self.kind in (CCE, SCCE) and not self.from_logits

    def targets(self, y, n, classes):
        """The labels of a batch of ``n`` as dense float32 (n, classes) targets
        (sparse labels one-hot), unsmoothed and unweighted."""
        y = np.asarray(y)
        if self.sparse:
            if y.size != n:
                hint = ("; these look one-hot: use loss='categorical_crossentropy'"
                        if y.shape == (n, classes) else "")
                raise ValueError(f"sparse_categorical_crossentropy takes one integer label "
                                 f"per sample ({n} here), got targets of shape {y.shape}{hint}")
            if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
                raise ValueError("sparse_categorical_crossentropy takes integer labels")
            y = y.reshape(-1).astype(np.int64)
            if y.size and (y.min() < 0 or y.max() >= classes):
                raise ValueError(f"labels must be in [0, {classes}), got {y.min()}..{y.max()}")
            return np.eye(classes, dtype=np.float32)[y]
        if self.kind != CCE and y.size == n * classes and y.ndim >= 1 and len(y) == n:
            y = y.reshape(n, classes)              # (n,) binary labels for a (n, 1) output
        if y.shape != (n, classes):
            hint = ""
            if self.kind == CCE and y.size == n:
                hint = ("; these look like integer labels: use "
                        "loss='sparse_categorical_crossentropy' (or "
                        "aslnet.utils.to_categorical)")
            elif self.kind == BCE and classes != 1 and y.size == n:
                hint = ("; binary cross-entropy wants one label per output unit: give the "
                        "model one sigmoid output (Dense(1)) or use "
                        "loss='sparse_categorical_crossentropy'")
            raise ValueError(f"targets must have shape ({n}, {classes}), got {y.shape}{hint}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def smoothed(self, t):
        """Dense targets ``t`` with the loss's ``label_smoothing`` applied, as float32."""
        return _smooth(self.kind, t, self.label_smoothing).astype(np.float32, copy=False)

    def per_sample(self, t, out, softmax_output=False):
        """float64 per-sample losses of dense targets ``t`` and outputs ``out``
        (n, classes).  A softmax output's cross-entropy is the C core's
        (``_core.categorical_crossentropy``, train_step's rule)."""
        t = self.smoothed(t)
        if self.fused(softmax_output):
            return _core.categorical_crossentropy(np.ascontiguousarray(t, np.float32),
                                                  np.ascontiguousarray(out, np.float32))
        return _value_and_grad(self.kind, t, out, self.from_logits, grad=False)[0]

    def value_and_grad(self, t, out, w=None):
        """(summed weighted loss, float32 dL/dout) of the batch mean loss
        L = sum_i w_i l_i / n (Keras's sum_over_batch_size)."""
        n = len(t)
        value, g = _value_and_grad(self.kind, self.smoothed(t), out.reshape(n, -1),
                                   self.from_logits)
        if w is not None:
            w = np.asarray(w, np.float64).reshape(n)
            value, g = value * w, g * w[:, None]
        return float(np.sum(value)), (g / max(n, 1)).astype(np.float32)


def resolve(loss):
    """The ``Objective`` of what ``compile(loss=...)`` got: a name, an
    aslnet or Keras loss (function, object or config), refusing what aslnet
    would train wrongly or cannot train."""
    if loss is None:
        raise ValueError("compile() needs a loss, e.g. loss='categorical_crossentropy'")
    if isinstance(loss, Objective):
        return loss
    if isinstance(loss, str):
        kind = _ALIASES.get(loss) or _CLASS_OF.get(loss)
        if kind is None:
            raise ValueError(_unknown(loss))
        return Objective(kind)
    if isinstance(loss, dict):
        loss = deserialize(loss)
    if isinstance(loss, type):
        loss = loss()
    cfg = loss.get_config() if hasattr(loss, "get_config") else {}
    cls = type(loss).__name__
    kind = _CLASS_OF.get(cls)
    module = (getattr(loss, "__module__", None) or type(loss).__module__ or "").split(".")[0]
    if kind is None and callable(loss) and module in ("aslnet", "keras", "tensorflow",
                                                      "tf_keras"):
        name = getattr(loss, "__name__", None) or cfg.get("fn")
        kind = _ALIASES.get(name)
        if kind is None and cls == "LossFunctionWrapper":
            kind = _ALIASES.get(getattr(getattr(loss, "fn", None), "__name__", None))
    if kind is None:
        name = getattr(loss, "__name__", None) or cls
        if callable(loss) and name not in _KNOWN_ELSEWHERE:
            raise NotImplementedError(
                f"Custom loss {name!r}: aslnet computes the losses it trains with itself "
                f"(the gradient too) and cannot differentiate your function; use one of "
                f"{', '.join(SUPPORTED)} (functions or classes, with from_logits / "
                "label_smoothing), see README's Keras API table")
        raise ValueError(_unknown(name))
    odd = {k: v for k, v in cfg.items()
           if (k == "axis" and v not in (-1, None))
           or (k == "ignore_class" and v is not None)
           or (k == "reduction" and v not in ("auto", "sum_over_batch_size", None))}
    if odd:
        raise NotImplementedError(f"Loss {cls} with {odd}: aslnet averages the loss over "
                                  "the batch, on the last axis, without these options")
    opts = {k: cfg[k] for k in _OPTIONS[kind] if k in cfg}
    return Objective(kind, **opts)
