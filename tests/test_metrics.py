"""Metrics: Keras's stateful classes and functions (checked against Keras 3 over
two batches), 'accuracy' resolved as Keras 3 resolves it, metrics in fit's
logs, History, evaluate and callbacks."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet import metrics
from aslnet.models import Sequential

RNG = np.random.default_rng(1)


def _batch(kind, n=16, k=5):
    p = RNG.uniform(size=(n, k)).astype(np.float32)
    if kind == "sparse":
        return RNG.integers(0, k, n), p
    if kind == "binary":
        return RNG.integers(0, 2, (n, 1)).astype(np.float32), p[:, :1]
    return np.eye(k, dtype=np.float32)[RNG.integers(0, k, n)], p


CASES = [  # (class name, kwargs, label kind)
    ("BinaryAccuracy", {}, "binary"), ("BinaryAccuracy", {"threshold": 0.3}, "binary"),
    ("CategoricalAccuracy", {}, "onehot"), ("SparseCategoricalAccuracy", {}, "sparse"),
    ("TopKCategoricalAccuracy", {"k": 2}, "onehot"),
    ("SparseTopKCategoricalAccuracy", {"k": 3}, "sparse"),
    ("Precision", {}, "binary"), ("Recall", {}, "binary"), ("Precision", {}, "onehot"),
    ("Recall", {"thresholds": 0.7}, "onehot"), ("Precision", {"top_k": 1}, "onehot"),
    ("Recall", {"class_id": 2}, "onehot"),
    ("AUC", {}, "binary"), ("AUC", {"curve": "PR"}, "binary"), ("AUC", {}, "onehot"),
    ("AUC", {"num_thresholds": 7, "summation_method": "minoring"}, "binary"),
    ("CategoricalCrossentropy", {}, "onehot"), ("BinaryCrossentropy", {}, "binary"),
    ("MeanSquaredError", {}, "onehot"),
]


@pytest.mark.keras
@pytest.mark.parametrize("name,kw,kind", CASES)
def test_metric_classes_match_keras(name, kw, kind):
    """Counts and means over two batches, then reset: Keras accumulates in float32
    (relative rounding ~1e-7 per step over 32 samples): 1e-5 relative."""
    keras = pytest.importorskip("keras")
    ours, theirs = getattr(metrics, name)(**kw), getattr(keras.metrics, name)(**kw)
    for _ in range(2):
        y, p = _batch(kind)
        ours.update_state(y, p)
        theirs.update_state(y, p)
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-5,
                               atol=1e-7)
    assert theirs.name.startswith(ours.name)          # Keras numbers repeats: precision_1
    ours.reset_state()
    y, p = _batch(kind)
    theirs.reset_state()
    np.testing.assert_allclose(ours(y, p), np.asarray(theirs(y, p)), rtol=1e-5, atol=1e-7)


@pytest.mark.keras
def test_metric_functions_match_keras():
    keras = pytest.importorskip("keras")
    for fn, kind, kw in [("binary_accuracy", "binary", {}), ("categorical_accuracy", "onehot", {}),
                         ("sparse_categorical_accuracy", "sparse", {}),
                         ("top_k_categorical_accuracy", "onehot", {"k": 2}),
                         ("categorical_crossentropy", "onehot", {})]:
        y, p = _batch(kind)
        np.testing.assert_allclose(getattr(metrics, fn)(y, p, **kw),
                                   np.asarray(getattr(keras.metrics, fn)(y, p, **kw)),
                                   rtol=1e-5, err_msg=fn)


def _model(units, activation):
    aslnet.set_random_seed(0)
    return Sequential([L.Input((4,)), L.Dense(units, activation=activation)])


@pytest.mark.parametrize("loss,units,activation,want", [
    ("categorical_crossentropy", 3, "softmax", metrics.CategoricalAccuracy),
    ("sparse_categorical_crossentropy", 3, "softmax", metrics.SparseCategoricalAccuracy),
    (aslnet.losses.BinaryCrossentropy(from_logits=True), 1, None, metrics.BinaryAccuracy),
])
def test_accuracy_is_resolved_as_keras_3_does(loss, units, activation, want):
    m = _model(units, activation)
    m.compile("sgd", loss, metrics=["accuracy", "acc"])
    objs = m._new_metrics()
    assert [type(o) for o in objs] == [want, want] and [o.name for o in objs] == ["accuracy",
                                                                                  "acc"]


def test_metrics_in_logs_history_evaluate_and_callbacks():
    m = _model(3, "softmax")
    x = RNG.normal(size=(40, 4)).astype(np.float32)
    labels = np.argmax(x[:, :3], 1)
    y = np.eye(3, dtype=np.float32)[labels]
    m.compile(aslnet.optimizers.Adam(0.05), "categorical_crossentropy",
              metrics=["accuracy", metrics.TopKCategoricalAccuracy(k=2), metrics.AUC(),
                       metrics.Precision(name="prec"), metrics.Recall()])
    assert m.metrics_names == ["loss", "accuracy", "top_k_categorical_accuracy", "auc",
                               "prec", "recall"]
    stop = aslnet.callbacks.EarlyStopping(monitor="val_auc", patience=1,
                                          restore_best_weights=True)
    h = m.fit(x, y, validation_data=(x, y), epochs=4, batch_size=8, verbose=0,
              callbacks=[stop])
    assert set(h.history) >= {"loss", "accuracy", "auc", "prec", "val_auc", "val_recall"}
    assert h.epoch == list(range(len(h.history["loss"])))
    logs = m.evaluate(x, y, verbose=0, return_dict=True)
    p = m.predict(x, verbose=0)
    assert np.isclose(logs["accuracy"], np.mean(np.argmax(p, 1) == labels))
    assert np.isclose(logs["top_k_categorical_accuracy"],
                      np.mean(metrics.top_k_categorical_accuracy(y, p, k=2)))
    ref = metrics.AUC()
    ref.update_state(y, p)
    assert np.isclose(logs["auc"], ref.result())
    assert stop.monitor_op(1.0, 0.5)          # 'auto' maximises an AUC


def test_a_metric_function_of_one_s_own_and_refusals():
    m = _model(3, "softmax")

    def mean_pred(y_true, y_pred):
        return np.mean(y_pred, axis=-1)
    m.compile("sgd", "categorical_crossentropy", metrics=[mean_pred])
    x, y = np.ones((4, 4), np.float32), np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    assert np.isclose(m.evaluate(x, y, verbose=0, return_dict=True)["mean_pred"], 1 / 3)
    with pytest.raises(ValueError, match="aslnet supports 'accuracy'"):
        m.compile("sgd", "categorical_crossentropy", metrics=["f2_score"])
    with pytest.raises(NotImplementedError, match="aslnet.metrics.F1Score is not supported"):
        metrics.F1Score()
    with pytest.raises(ValueError, match="named alike"):
        m.compile("sgd", "categorical_crossentropy", metrics=[metrics.AUC(), metrics.AUC()])
