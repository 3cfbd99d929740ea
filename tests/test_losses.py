"""Losses: Keras's functions and classes (checked against Keras 3), their
gradients (against central finite differences in float64), and training with
each: the fused softmax + cross-entropy in C and the general path (C forward /
backward / update around a NumPy loss gradient) give the same step."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet import losses
from aslnet.models import Model, Sequential
from aslnet.optimizers import SGD

RNG = np.random.default_rng(0)


def _probs(n, k):
    z = RNG.normal(size=(n, k))
    return (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)


CASES = [  # (aslnet function, Keras name, y_true, y_pred, kwargs)
    ("categorical_crossentropy", np.eye(5)[RNG.integers(0, 5, 8)], _probs(8, 5), {}),
    ("categorical_crossentropy", np.eye(5)[RNG.integers(0, 5, 8)], RNG.normal(size=(8, 5)),
     {"from_logits": True, "label_smoothing": 0.1}),
    ("categorical_crossentropy", np.eye(3)[[0, 1]], np.array([[0.5, 0.2, 0.0],
                                                              [2.0, 1.0, 1.0]]), {}),
    ("sparse_categorical_crossentropy", RNG.integers(0, 5, 8), _probs(8, 5), {}),
    ("sparse_categorical_crossentropy", RNG.integers(0, 5, 8), RNG.normal(size=(8, 5)),
     {"from_logits": True}),
    ("binary_crossentropy", RNG.integers(0, 2, (8, 1)), RNG.uniform(size=(8, 1)), {}),
    ("binary_crossentropy", RNG.integers(0, 2, (8, 3)), RNG.normal(size=(8, 3)) * 5,
     {"from_logits": True, "label_smoothing": 0.2}),
    ("binary_crossentropy", np.array([[1.0], [0.0]]), np.array([[1.0], [0.0]]), {}),
    ("mean_squared_error", RNG.normal(size=(8, 4)), RNG.normal(size=(8, 4)), {}),
]


@pytest.mark.keras
@pytest.mark.parametrize("name,y,p,kw", CASES)
def test_functions_and_classes_match_keras(name, y, p, kw):
    """Keras computes in float32 (relative rounding ~1e-7 per operation, a few
    dozen operations): 2e-5 relative, 1e-6 absolute for losses near 0."""
    keras = pytest.importorskip("keras")
    y, p = np.asarray(y, np.float32), np.asarray(p, np.float32)
    got = getattr(losses, name)(y, p, **kw)
    want = np.asarray(getattr(keras.losses, name)(y, p, **kw))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    cls = {"categorical_crossentropy": "CategoricalCrossentropy",
           "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
           "binary_crossentropy": "BinaryCrossentropy",
           "mean_squared_error": "MeanSquaredError"}[name]
    w = RNG.uniform(size=len(y)).astype(np.float32)
    np.testing.assert_allclose(getattr(losses, cls)(**kw)(y, p, sample_weight=w),
                               np.asarray(getattr(keras.losses, cls)(**kw)(y, p, w)),
                               rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("kind,from_logits,smoothing", [
    ("categorical_crossentropy", True, 0.1), ("categorical_crossentropy", False, 0.0),
    ("sparse_categorical_crossentropy", True, 0.0), ("binary_crossentropy", True, 0.1),
    ("binary_crossentropy", False, 0.0), ("mean_squared_error", False, 0.0)])
def test_gradients_match_finite_differences(kind, from_logits, smoothing):
    """Central differences in float64 with h = 1e-6: truncation ~h^2 * |f'''| ~1e-12
    and rounding ~1e-16 / h ~1e-10, far below the 1e-6 tolerance; outputs kept
    away from the clip at 1e-7 (where the derivative jumps)."""
    obj = losses.Objective(kind, from_logits, smoothing)
    n, k = 4, (1 if kind == "binary_crossentropy" and not from_logits else 3)
    t = np.eye(k, dtype=np.float32)[RNG.integers(0, k, n)] if k > 1 else \
        RNG.integers(0, 2, (n, 1)).astype(np.float32)
    out = RNG.normal(size=(n, k)) if from_logits or kind == "mean_squared_error" \
        else RNG.uniform(0.1, 0.9, (n, k))
    w = RNG.uniform(0.5, 2, n)
    _, g = obj.value_and_grad(t, out, w)
    num = np.zeros_like(out)
    h = 1e-6
    for idx in np.ndindex(out.shape):
        up, down = out.copy(), out.copy()
        up[idx] += h
        down[idx] -= h
        num[idx] = (obj.value_and_grad(t, up, w)[0] - obj.value_and_grad(t, down, w)[0]) \
            / (2 * h) / n
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6)


def _pair(activation="softmax", units=4):
    """Two models over separate copies of the same weights."""
    models = []
    for _ in range(2):
        aslnet.set_random_seed(3)
        models.append(Sequential([L.Input((6,)), L.Dense(8, activation="relu"),
                                  L.Dense(units, activation=activation)]))
    return models


def test_general_path_gives_train_step_s_update_for_cce():
    """The C calls of the general path (forward(training=True), backward(dy),
    apply_gradients) with dL/dp of the cross-entropy through the softmax's own
    backward equal the fused step: (p*sum(y) - y)/n either way, up to float32
    rounding of the two orders (~1e-7 relative per weight after one lr 0.5 step)."""
    a, b = _pair()
    x = RNG.normal(size=(10, 6)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 10)]
    for m in (a, b):
        m.compile(SGD(0.5), "categorical_crossentropy")
    la = a.train_on_batch(x, y)                       # fused: Net.train_step
    net = b._core()
    net.net.set_learning_rate(0.5)
    obj = losses.Objective("categorical_crossentropy")
    # from_logits False on a softmax output: dL/dp = -y / p / n (no clip inside [1e-7, 1))
    lb, _ = net.train_step_with(x, lambda out: obj.value_and_grad(y, out.reshape(10, -1)))
    assert np.isclose(la, lb / 10, rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert net.net.iterations == 1


@pytest.mark.keras
@pytest.mark.parametrize("loss,units,activation,labels", [
    ("bce_logits", 1, None, "binary"),
    ("cce_logits_smooth", 4, None, "onehot"),
    ("scce_logits", 4, None, "sparse"),
    ("cce_smooth", 4, "softmax", "onehot"),
    ("mse", 4, None, "onehot"),
])
def test_one_training_step_matches_keras(loss, units, activation, labels):
    """The same weights, batch and SGD step in Keras 3 and aslnet: the losses and
    the updated weights agree to float32 rounding (1e-5 relative)."""
    keras = pytest.importorskip("keras")
    make = {"bce_logits": lambda m: m.BinaryCrossentropy(from_logits=True),
            "cce_logits_smooth": lambda m: m.CategoricalCrossentropy(from_logits=True,
                                                                    label_smoothing=0.1),
            "scce_logits": lambda m: m.SparseCategoricalCrossentropy(from_logits=True),
            "cce_smooth": lambda m: m.CategoricalCrossentropy(label_smoothing=0.2),
            "mse": lambda m: m.MeanSquaredError()}[loss]
    ours = _pair(activation, units)[0]
    x = RNG.normal(size=(10, 6)).astype(np.float32)
    y = {"binary": RNG.integers(0, 2, (10, 1)).astype(np.float32),
         "onehot": np.eye(units, dtype=np.float32)[RNG.integers(0, units, 10)],
         "sparse": RNG.integers(0, units, 10)}[labels]
    kin = keras.Input((6,))
    kout = keras.layers.Dense(units, activation=activation)(
        keras.layers.Dense(8, activation="relu")(kin))
    theirs = keras.Model(kin, kout)
    theirs.set_weights(ours.get_weights())
    ours.compile(SGD(0.3), make(losses))
    theirs.compile(keras.optimizers.SGD(0.3), make(keras.losses))
    np.testing.assert_allclose(ours.train_on_batch(x, y), theirs.train_on_batch(x, y),
                               rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0),
                               theirs.evaluate(x, y, verbose=0), rtol=1e-5)


def _binary_data(n=64):
    x = RNG.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)


def test_a_linear_dense_1_with_binary_crossentropy_from_logits_trains():
    aslnet.set_random_seed(0)
    inp = L.Input((6,))
    model = Model(inp, L.Dense(1)(L.Dense(8, activation="relu")(inp)))
    model.compile(aslnet.optimizers.Adam(0.05),
                  aslnet.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[aslnet.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")])
    x, y = _binary_data()
    h = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    assert h.history["accuracy"][-1] >= 0.95
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] >= 0.95


def test_a_sigmoid_head_with_binary_crossentropy_trains():
    try:
        head = L.Dense(1, activation="sigmoid")
    except ValueError as e:
        pytest.skip(f"no sigmoid activation in this build yet ({e})")
    aslnet.set_random_seed(0)
    model = Sequential([L.Input((6,)), L.Dense(8, activation="relu"), head])
    model.compile(aslnet.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    x, y = _binary_data()
    h = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert h.history["accuracy"][-1] >= 0.95


def test_loss_settings_survive_save_and_load(tmp_path):
    m = _pair(None, 3)[0]
    m.compile("adam", losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1))
    assert m.loss["config"]["from_logits"] is True
    m.save(tmp_path / "m.h5")
    back = aslnet.models.load_model(tmp_path / "m.h5")
    assert back._loss_objective().from_logits and back._loss_objective().label_smoothing == 0.1


def test_refusals_name_the_problem_and_the_way_out():
    m = _pair(None, 3)[0]
    with pytest.raises(ValueError, match="Unsupported loss 'hinge'.*supports"):
        m.compile("adam", "hinge")
    with pytest.raises(NotImplementedError, match="Custom loss 'my_loss'.*cannot differentiate"):
        m.compile("adam", _my_loss())
    with pytest.raises(NotImplementedError, match="aslnet.losses.Huber is not supported"):
        m.compile("adam", aslnet.losses.Huber())
    m.compile("adam", "categorical_crossentropy")        # linear output, probabilities' CCE
    x, y = np.ones((2, 6), np.float32), np.eye(3, dtype=np.float32)[:2]
    with pytest.raises(ValueError, match="activation='softmax'.*from_logits=True"):
        m.fit(x, y, verbose=0)
    m.compile("adam", "binary_crossentropy")
    with pytest.raises(ValueError, match="one label per output unit"):
        m.fit(x, np.array([0, 1]), verbose=0)


def _my_loss():
    def my_loss(y_true, y_pred):
        return 0.0
    return my_loss
