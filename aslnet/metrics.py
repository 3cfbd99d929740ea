"""Keras's ``metrics`` module: functions (per-sample values), stateful
classes (``update_state`` / ``result`` / ``reset_state``) and ``get``,
computed in NumPy on each batch's outputs.

``compile_metric`` is the one home of how ``compile(metrics=...)`` turns
into metric objects, with ``'accuracy'`` resolved as Keras 3 resolves it:
binary accuracy for a one-unit output, sparse categorical accuracy for
integer labels (the sparse loss), else categorical accuracy.
"""
import numpy as np

from .losses import (binary_crossentropy, categorical_crossentropy, mean_squared_error, mse,
                     sparse_categorical_crossentropy)

__all__ = ["Metric", "Mean", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy",
           "CategoricalAccuracy", "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "Precision", "Recall", "AUC",
           "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy",
           "MeanSquaredError", "accuracy", "binary_accuracy", "categorical_accuracy",
           "sparse_categorical_accuracy", "top_k_categorical_accuracy",
           "sparse_top_k_categorical_accuracy", "categorical_crossentropy",
           "sparse_categorical_crossentropy", "binary_crossentropy", "mean_squared_error",
           "mse", "get", "serialize", "deserialize", "compile_metric"]

EPSILON = 1e-7


# -- Keras's functions (per sample) ------------------------------------------------------------
def _2d(y_pred):
    y_pred = np.asarray(y_pred)
    return y_pred.reshape(-1, y_pred.shape[-1]) if y_pred.ndim else y_pred.reshape(1, 1)


def accuracy(y_true, y_pred):
    """1 where y_pred equals y_true exactly (Keras's ``Accuracy``)."""
    y_pred = np.asarray(y_pred)
    return (np.asarray(y_true).reshape(y_pred.shape) == y_pred).astype(np.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1 where (y_pred > threshold) == y_true, element by element (Keras 3)."""
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true).reshape(y_pred.shape)
    return ((y_pred > threshold) == (y_true > 0.5)).astype(np.float32)


def categorical_accuracy(y_true, y_pred):
    """1 where argmax(y_pred) == argmax(y_true)."""
    p = _2d(y_pred)
    t = np.asarray(y_true).reshape(p.shape)
    return (np.argmax(p, -1) == np.argmax(t, -1)).astype(np.float32)


def sparse_categorical_accuracy(y_true, y_pred):
    """1 where argmax(y_pred) equals the integer label."""
    p = _2d(y_pred)
    return (np.argmax(p, -1) == np.asarray(y_true).reshape(len(p))).astype(np.float32)


def _in_top_k(p, labels, k):
    """Keras's in_top_k: the label's score is among the k largest (ties count in)."""
    target = p[np.arange(len(p)), labels]
    return np.sum(p > target[:, None], axis=-1) < k


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1 where the one-hot label's score is among the ``k`` (default 5) largest of y_pred."""
    p = _2d(y_pred)
    return _in_top_k(p, np.argmax(np.asarray(y_true).reshape(p.shape), -1), k
                     ).astype(np.float32)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1 where the integer label's score is among the ``k`` (default 5) largest of y_pred."""
    p = _2d(y_pred)
    return _in_top_k(p, np.asarray(y_true).reshape(len(p)).astype(np.int64), k
                     ).astype(np.float32)


acc = accuracy
_FUNCTIONS = {f.__name__: f for f in (
    accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
    top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, categorical_crossentropy,
    sparse_categorical_crossentropy, binary_crossentropy, mean_squared_error)}
_FUNCTIONS.update(mse=mean_squared_error, MSE=mean_squared_error, acc=accuracy)


# -- stateful metrics ---------------------------------------------------------------------------
class Metric:
    """Keras's ``Metric``: ``update_state(y_true, y_pred, sample_weight=None)``,
    ``result()``, ``reset_state()``; calling it updates and returns the result."""

    _default_name = "metric"

    def __init__(self, name=None, dtype=None):
        if dtype not in (None, "float32"):
            raise NotImplementedError(f"{type(self).__name__}(dtype={dtype!r}): aslnet's "
                                      "metrics are float32")
        self.name = name or self._default_name
        self.dtype = "float32"
        self.reset_state()

    def reset_state(self):
        """Forget every batch seen: the state a new metric has (Keras's ``reset_state``)."""
        raise NotImplementedError

    def reset_states(self):                 # tf.keras 2's name
        """tf.keras 2's name of ``reset_state``."""
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch to the state.

        :param y_true: the batch's targets.
        :param y_pred: the batch's predictions.
        :param sample_weight: optional per-sample weights (default None: all 1)."""
        raise NotImplementedError

    def result(self):
        """The metric's value over every batch since the last reset, as a float32."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        """The constructor's arguments as a dict (Keras's ``get_config``)."""
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        """Build the metric from the dict ``get_config`` returned."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class Mean(Metric):
    """The (weighted) mean of the values given to ``update_state``."""

    _default_name = "mean"

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, np.float64)
        if sample_weight is None:
            self.total += float(np.sum(values))
            self.count += values.size
        else:
            w = np.broadcast_to(np.asarray(sample_weight, np.float64).reshape(
                values.shape[:1] + (1,) * (values.ndim - 1) if values.ndim else ()),
                values.shape)
            self.total += float(np.sum(values * w))
            self.count += float(np.sum(w))

    def result(self):
        return self.total / self.count if self.count else 0.0

    def __call__(self, values, sample_weight=None):
        self.update_state(values, sample_weight)
        return self.result()


class MeanMetricWrapper(Mean):
    """The mean over samples of ``fn(y_true, y_pred, **kwargs)``."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        self._fn, self._fn_kwargs = fn, kwargs
        super().__init__(name=name or getattr(fn, "__name__", "mean_metric"), dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        Mean.update_state(self, np.asarray(self._fn(y_true, y_pred, **self._fn_kwargs)),
                          sample_weight)

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _wrapper(cls_name, fn, default_name, *keys, **defaults):
    """A MeanMetricWrapper class over ``fn``, Keras's name and arguments."""
    def __init__(self, *args, name=default_name, dtype=None, **kwargs):
        opts = dict(defaults)
        opts.update(zip(keys, args))
        opts.update(kwargs)
        unknown = set(opts) - set(keys)
        if unknown:
            raise TypeError(f"{cls_name}: unexpected arguments {sorted(unknown)}")
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **opts)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, **self._fn_kwargs}
    get_config.__doc__ = Metric.get_config.__doc__

    return type(cls_name, (MeanMetricWrapper,), {"__init__": __init__,
                                                "get_config": get_config,
                                                "__doc__": f"Keras's ``{cls_name}``."})


Accuracy = _wrapper("Accuracy", accuracy, "accuracy")
BinaryAccuracy = _wrapper("BinaryAccuracy", binary_accuracy, "binary_accuracy", "threshold",
                          threshold=0.5)
CategoricalAccuracy = _wrapper("CategoricalAccuracy", categorical_accuracy,
                               "categorical_accuracy")
SparseCategoricalAccuracy = _wrapper("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                     "sparse_categorical_accuracy")
TopKCategoricalAccuracy = _wrapper("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                   "top_k_categorical_accuracy", "k", k=5)
SparseTopKCategoricalAccuracy = _wrapper("SparseTopKCategoricalAccuracy",
                                         sparse_top_k_categorical_accuracy,
                                         "sparse_top_k_categorical_accuracy", "k", k=5)
CategoricalCrossentropy = _wrapper("CategoricalCrossentropy", categorical_crossentropy,
                                   "categorical_crossentropy", "from_logits",
                                   "label_smoothing", from_logits=False, label_smoothing=0.0)
SparseCategoricalCrossentropy = _wrapper("SparseCategoricalCrossentropy",
                                         sparse_categorical_crossentropy,
                                         "sparse_categorical_crossentropy", "from_logits",
                                         from_logits=False)
BinaryCrossentropy = _wrapper("BinaryCrossentropy", binary_crossentropy, "binary_crossentropy",
                              "from_logits", "label_smoothing", from_logits=False,
                              label_smoothing=0.0)
MeanSquaredError = _wrapper("MeanSquaredError", mean_squared_error, "mean_squared_error")


class _Confusion(Metric):
    """True/false positives/negatives at thresholds, over every element of
    the batch (Keras's confusion metrics: y_pred > threshold is a positive)."""

    def __init__(self, thresholds, top_k=None, class_id=None, name=None, dtype=None):
        self.thresholds = np.atleast_1d(np.asarray(thresholds, np.float64))
        self.top_k, self.class_id = top_k, class_id
        super().__init__(name=name, dtype=dtype)

    def reset_state(self):
        k = len(self.thresholds)
        self.true_positives, self.false_positives = np.zeros(k), np.zeros(k)
        self.true_negatives, self.false_negatives = np.zeros(k), np.zeros(k)

    def _prepare(self, y_true, y_pred):
        y_pred = np.asarray(y_pred, np.float64)
        y_true = np.asarray(y_true, np.float64).reshape(y_pred.shape)
        if self.top_k is not None:          # only the top k predictions may be positive
            p2 = _2d(y_pred)
            kth = -np.sort(-p2, axis=-1)[:, min(self.top_k, p2.shape[-1]) - 1:][:, :1]
            y_pred = np.where(p2 >= kth, p2, -np.inf).reshape(y_pred.shape)
        if self.class_id is not None:
            y_pred, y_true = y_pred[..., self.class_id], y_true[..., self.class_id]
        return y_true.reshape(-1) > 0.5, y_pred.reshape(-1)

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = self._prepare(y_true, y_pred)
        w = np.ones_like(p)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, np.float64).reshape(-1)
            w = np.repeat(sw, len(p) // max(len(sw), 1)) if len(sw) != len(p) else sw
        pos = p[None, :] > self.thresholds[:, None]            # (thresholds, elements)
        self.true_positives += np.sum(pos * (t * w), axis=1)
        self.false_positives += np.sum(pos * (~t * w), axis=1)
        self.false_negatives += np.sum(~pos * (t * w), axis=1)
        self.true_negatives += np.sum(~pos * (~t * w), axis=1)

    def _out(self, values):
        values = np.asarray(values, np.float32)
        return float(values[0]) if values.size == 1 else values

    def get_config(self):
        th = self.thresholds.tolist()
        return {**super().get_config(), "thresholds": th[0] if len(th) == 1 else th,
                "top_k": self.top_k, "class_id": self.class_id}


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


class Precision(_Confusion):
    """tp / (tp + fp) of the predictions above ``thresholds`` (default 0.5)."""

    _default_name = "precision"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        default = 0.5 if top_k is None else -np.inf
        super().__init__(default if thresholds is None else thresholds, top_k, class_id,
                         name, dtype)

    def result(self):
        return self._out(_div(self.true_positives, self.true_positives + self.false_positives))


class Recall(_Confusion):
    """tp / (tp + fn) of the predictions above ``thresholds`` (default 0.5)."""

    _default_name = "recall"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        default = 0.5 if top_k is None else -np.inf
        super().__init__(default if thresholds is None else thresholds, top_k, class_id,
                         name, dtype)

    def result(self):
        return self._out(_div(self.true_positives, self.true_positives + self.false_negatives))


class AUC(_Confusion):
    """Keras's ``AUC``: the area under the ROC or PR curve, from the confusion
    counts at ``num_thresholds`` thresholds evenly spread over [0, 1] (plus
    -1e-7 and 1 + 1e-7), summed by 'interpolation' (PR: Davis & Goadrich's,
    as Keras), 'minoring' or 'majoring'."""

    _default_name = "auc"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        if multi_label or label_weights is not None:
            raise NotImplementedError("AUC(multi_label=True / label_weights): aslnet's AUC "
                                      "pools every label into one curve")
        self.curve, self.summation_method = str(curve).upper(), str(summation_method).lower()
        if self.curve not in ("ROC", "PR"):
            raise ValueError(f"AUC curve must be 'ROC' or 'PR', got {curve!r}")
        if self.summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"Unknown AUC summation_method {summation_method!r}")
        if thresholds is None:
            if int(num_thresholds) <= 1:
                raise ValueError("Argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds}")
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        else:
            inner = sorted(float(t) for t in thresholds)
        self.num_thresholds = len(inner) + 2
        self.from_logits = bool(from_logits)
        super().__init__([-EPSILON] + inner + [1.0 + EPSILON], None, None, name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.from_logits:
            y_pred = 0.5 * (1 + np.tanh(0.5 * np.asarray(y_pred, np.float64)))
        super().update_state(y_true, y_pred, sample_weight)

    def result(self):
        tp, fp, tn, fn = (self.true_positives, self.false_positives, self.true_negatives,
                          self.false_negatives)
        if self.curve == "PR" and self.summation_method == "interpolation":
            dtp = tp[:-1] - tp[1:]
            p = tp + fp
            slope = _div(dtp, np.maximum(p[:-1] - p[1:], 0))
            intercept = tp[1:] - slope * p[1:]
            ratio = np.where((p[:-1] > 0) & (p[1:] > 0), _div(p[:-1], np.maximum(p[1:], 0)),
                             1.0)
            return float(np.float32(np.sum(_div(slope * (dtp + intercept * np.log(ratio)),
                                                np.maximum(tp[1:] + fn[1:], 0)))))
        recall = _div(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _div(fp, fp + tn), recall
        else:
            x, y = recall, _div(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.float32(np.sum((x[:-1] - x[1:]) * heights)))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_thresholds": self.num_thresholds,
                "curve": self.curve, "summation_method": self.summation_method,
                "from_logits": self.from_logits}


_CLASSES = {c.__name__: c for c in (
    Mean, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, Precision, Recall, AUC,
    CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
    MeanSquaredError)}
# names Keras's get() takes for the classes (as it deserializes 'auc' etc.)
_CLASS_ALIASES = {"auc": AUC, "precision": Precision, "recall": Recall}
_KNOWN_ELSEWHERE = ("MeanAbsoluteError", "MeanIoU", "IoU", "F1Score", "FBetaScore",
                    "RootMeanSquaredError", "KLDivergence", "Hinge", "CosineSimilarity",
                    "PrecisionAtRecall", "RecallAtPrecision", "SensitivityAtSpecificity",
                    "SpecificityAtSensitivity", "TruePositives", "FalsePositives",
                    "TrueNegatives", "FalseNegatives", "Sum", "R2Score")


def _unknown(name):
    return (f"aslnet.metrics has no {name}: aslnet supports 'accuracy', "
            f"{', '.join(sorted(_CLASSES))}, the functions {', '.join(sorted(_FUNCTIONS))}, "
            "or a function fn(y_true, y_pred) on NumPy arrays (see README's Keras API table)")


def __getattr__(name):
    """Keras's metrics aslnet lacks import, and say so when used (aslnet._missing)."""
    from ._missing import missing
    if name in _KNOWN_ELSEWHERE or name in ("mean_absolute_error", "mae", "f1_score",
                                            "hinge", "kl_divergence", "poisson"):
        return missing("aslnet.metrics", name, "aslnet has 'accuracy', "
                       f"{', '.join(sorted(_CLASSES))} and a function fn(y_true, y_pred) on "
                       "NumPy arrays")
    raise AttributeError(f"module 'aslnet.metrics' has no attribute {name!r}")


def get(identifier):
    """Keras's ``metrics.get``: a function name (function), a class name
    (instance), a config dict, a Metric or a function."""
    if identifier is None or isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        if identifier in _CLASS_ALIASES:
            return _CLASS_ALIASES[identifier]()
        if identifier in _FUNCTIONS:
            return _FUNCTIONS[identifier]
        raise ValueError(_unknown(repr(identifier)))
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret metric identifier: {identifier!r}")


def serialize(metric):
    """Keras's ``metrics.serialize``: a Metric -> ``{"class_name", "config"}``; a function ->
    its name."""
    if isinstance(metric, Metric):
        return {"class_name": type(metric).__name__, "config": metric.get_config()}
    return getattr(metric, "__name__", metric)


def deserialize(config):
    """Keras's ``metrics.deserialize``: a name (as :func:`get`) or a
    ``{"class_name", "config"}`` dict (tf.keras's ``MeanMetricWrapper`` of a known
    function included) -> the metric; unknown ones raise ``ValueError``."""
    if isinstance(config, str):
        return get(config)
    cls = _CLASSES.get(config.get("class_name"))
    cfg = dict(config.get("config") or {})
    if cls is None and config.get("class_name") == "MeanMetricWrapper":
        fn = cfg.pop("fn", None)
        fn = _FUNCTIONS.get(fn if isinstance(fn, str) else getattr(fn, "__name__", None))
        if fn is not None:
            return MeanMetricWrapper(fn, **{k: v for k, v in cfg.items() if k != "dtype"})
    if cls is None:
        raise ValueError(_unknown(config.get("class_name")))
    return cls.from_config(cfg)


def _keras_metric(obj):
    """An aslnet metric for a Keras (tf.keras, Keras 3) metric object, by its
    class name and config; None if it is not one."""
    module = (type(obj).__module__ or "").split(".")[0]
    if module not in ("keras", "tensorflow", "tf_keras") or not hasattr(obj, "get_config"):
        return None
    cls = _CLASSES.get(type(obj).__name__)
    if cls is None:
        raise NotImplementedError(_unknown(type(obj).__name__))
    cfg = {k: v for k, v in obj.get_config().items() if v is not None or k == "thresholds"}
    keep = {Precision: ("name", "thresholds", "top_k", "class_id"),
            Recall: ("name", "thresholds", "top_k", "class_id"),
            AUC: ("name", "num_thresholds", "curve", "summation_method", "from_logits",
                  "multi_label", "label_weights")}.get(cls)
    if keep is not None:
        cfg = {k: v for k, v in cfg.items() if k in keep}
        if cls is AUC and "curve" in cfg:
            cfg["curve"] = str(cfg["curve"]).split(".")[-1]
    else:
        cfg.pop("dtype", None)
    return cls(**cfg)


def compile_metric(identifier, objective, classes):
    """The metric object of one entry of ``compile(metrics=[...])`` for a
    model trained with ``objective`` (an ``aslnet.losses.Objective``) on a
    (None, ``classes``) output, named as Keras names it in the logs."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        if classes == 1:
            return BinaryAccuracy(name=identifier)
        if objective.sparse:
            return SparseCategoricalAccuracy(name=identifier)
        return CategoricalAccuracy(name=identifier)
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        identifier = identifier()
    obj = _keras_metric(identifier) if not isinstance(identifier, (str, dict)) else None
    if obj is None:
        obj = get(identifier)
    if not isinstance(obj, Metric):
        name = identifier if isinstance(identifier, str) else getattr(obj, "__name__", None)
        obj = MeanMetricWrapper(obj, name=name)
    return obj


def metric_name(identifier):
    """The log name ``compile_metric`` gives ``identifier`` (known before the
    output shape is): the string itself, else the object's or function's name."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, type):
        identifier = identifier()
    return getattr(identifier, "name", None) or getattr(identifier, "__name__", None) \
        or str(identifier)

