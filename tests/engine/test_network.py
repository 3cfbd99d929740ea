"""CoreNetwork: weights changed from Python reach the C network; batched inference's per-image
early layers change no result."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model
from aslnet.optimizers import SGD, Adam

from tests.model_fixtures import _whole_batch, data, small_model, wide_model


def test_set_weights_after_predict_is_seen_by_the_core():
    model = small_model()
    x, _ = data()
    before = model.predict(x, verbose=0)
    dense = model.layers[-1]
    k, b = dense.get_weights()
    dense.set_weights([k * 2, b + 1])
    assert not np.allclose(model.predict(x, verbose=0), before)


def test_batched_inference_splits_and_changes_no_result(monkeypatch):
    from aslnet import backend
    monkeypatch.setattr(backend, "_num_threads", 2)    # (from 8 threads: no split)
    x = np.random.default_rng(2).normal(size=(6, 96, 96, 3)).astype(np.float32)
    model = wide_model()
    split_out = model.predict(x, batch_size=6, verbose=0)
    split = model._net.micro_split()
    assert split == model._net.first_op(model.layers[7])     # after conv_dw's ReLU
    assert model._net._early is not None
    whole = _whole_batch(model, lambda: model.predict(x, batch_size=6, verbose=0))
    np.testing.assert_array_equal(split_out, whole)
    assert _whole_batch(model, lambda: model._net.micro_split()) is None
    assert small_model()._core().micro_split() is None            # no large activation


def test_the_per_image_network_sees_trained_and_set_weights():
    x = np.random.default_rng(3).normal(size=(4, 96, 96, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    model = wide_model()
    model.compile(Adam(1e-2), "categorical_crossentropy")
    before = model.predict(x, verbose=0)
    model.train_on_batch(x, y)                 # moves the first conv (in the early part)
    after = model.predict(x, verbose=0)
    assert np.abs(after - before).max() > 1e-4
    np.testing.assert_array_equal(after, _whole_batch(model, lambda: model.predict(x,
                                                                                  verbose=0)))
    w = model.layers[1].get_weights()
    model.layers[1].set_weights([w[0] * 0.5])
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  _whole_batch(model, lambda: model.predict(x, verbose=0)))


def test_fit_with_the_split_trunk_equals_recomputing():
    """The frozen trunk's features computed through the per-image network, cached or
    not, train the tail to the same weights."""
    x = np.random.default_rng(4).normal(size=(12, 96, 96, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    runs = []
    for cache_bytes in (1 << 30, 0):
        model = wide_model().freeze(upto=-4)
        model.trunk_cache_bytes = cache_bytes
        model.compile(Adam(1e-2), "categorical_crossentropy")
        aslnet.set_random_seed(5)
        h = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        runs.append((h.history, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_inference_after_a_training_step_refolds_only_the_groups_that_moved():
    """Each fused conv + batch-norm group folds its batch norm into its weights once and
    keeps them until its own weights change: a training step of the tail leaves the frozen
    groups (here run by the per-image network) folded."""
    x = np.random.default_rng(6).normal(size=(4, 96, 96, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    model = wide_model().freeze(upto=-4)       # trains BN 8 (so group conv 7 + BN 8) and Dense
    conv1, dw, conv7 = (model.layers[i].name for i in (1, 4, 7))
    assert not model.layers[7].trainable and model.layers[8].trainable
    model.compile(Adam(1e-2), "categorical_crossentropy")
    model.predict(x, batch_size=4, verbose=0)
    before = model._net.fold_counts()
    assert before[conv1] >= 1 and before[dw] >= 1 and before[conv7] >= 1
    model.train_on_batch(x, y)
    model.predict(x, batch_size=4, verbose=0)
    after = model._net.fold_counts()
    assert after[conv1] == before[conv1] and after[dw] == before[dw]     # frozen: kept
    assert after[conv7] == before[conv7] + 1                             # its BN moved
    model.predict(x, batch_size=4, verbose=0)
    assert model._net.fold_counts() == after                             # nothing moved
    w = model.layers[1].get_weights()
    model.layers[1].set_weights(w)                                       # set from Python
    model.predict(x, batch_size=4, verbose=0)
    assert model._net.fold_counts()[conv1] == after[conv1] + 1
    assert model._net.fold_counts()[dw] == after[dw]


def _grows_again(residual):
    """Per-image outputs (floats): 2048 (large), 512 ("r"), 2048 (large again), 512
    ("inner"), 512 ("after"); with ``residual`` an Add joins "inner" and "r" before
    "after", a residual span around the second large output (as MobileNetV2's blocks)."""
    aslnet.set_random_seed(5)
    inp = L.Input((16, 16, 3))
    x = L.ReLU(6.0)(L.Conv2D(8, 3, padding="same")(inp))
    r = L.ReLU(6.0, name="r")(L.DepthwiseConv2D(3, strides=2, padding="same")(x))
    h = L.ReLU(6.0)(L.Conv2D(32, 1)(r))
    h = L.ReLU(6.0, name="inner")(L.Conv2D(8, 1)(h))
    if residual:
        h = L.Add(name="join")([h, r])
    h = L.ReLU(6.0, name="after")(h)
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(h))
    return Model(inp, out)


@pytest.mark.parametrize("residual, last", [(False, "inner"), (True, "after")])
def test_the_split_follows_the_last_large_output_outside_residual_spans(
        monkeypatch, residual, last):
    """The whole batch takes over only after the last large per-image output (one that
    grows again after a stride stays per image: not after "r"), and never inside a
    residual span (with the Add reading "r", not after "inner"); results unchanged."""
    from aslnet.engine import network
    monkeypatch.setattr(network, "MICRO_BYTES", 4096)        # 1024 floats
    model = _grows_again(residual)
    x = np.random.default_rng(6).normal(size=(5, 16, 16, 3)).astype(np.float32)
    split_out = model.predict(x, batch_size=5, verbose=0)
    names = [l.name for l in model.layers]
    assert model._net.micro_split() == model._net.first_op(model.layers[names.index(last) + 1])
    np.testing.assert_array_equal(split_out, _whole_batch(model, lambda: model.predict(
        x, batch_size=5, verbose=0)))


@pytest.mark.parametrize("threads, runs", [(1, [1] * 6), (2, [1] * 6), (4, [4, 2]),
                                           (16, [])])
def test_the_early_layers_run_micro_batches_by_thread_count(monkeypatch, threads, runs):
    """One image per run up to 2 threads, one per thread below 8 threads, from 8 threads no
    per-image part (the whole batch): the early network's batch sizes say so, and the
    result is the whole-batch network's."""
    from aslnet import backend
    from aslnet.engine import network
    x = np.random.default_rng(7).normal(size=(6, 96, 96, 3)).astype(np.float32)
    model = wide_model()
    seen = []
    real = network.CoreNetwork.early_network

    def spy(self, split, dtype):
        early = real(self, split, dtype)
        fwd = early.net.forward

        class Net:   # the C network, its batch sizes recorded
            def __getattr__(self, name):
                return getattr(early.net, name)

            def forward(self, xb, **kw):
                seen.append(len(xb))
                return fwd(xb, **kw)
        view = type("Early", (), {"net": Net()})()
        return view
    monkeypatch.setattr(network.CoreNetwork, "early_network", spy)
    monkeypatch.setattr(backend, "_num_threads", threads)
    out = model.predict(x, batch_size=6, verbose=0)
    assert seen == runs
    np.testing.assert_array_equal(out, _whole_batch(model, lambda: model.predict(
        x, batch_size=6, verbose=0)))
