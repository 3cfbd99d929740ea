"""Functional graphs with residual adds (``aslnet.layers.Add``) and models of any input
size, through the Python API: Keras's layer order, the C chain with ``source=``, configs,
summary, copies, the frozen-trunk boundary, and the gradients against finite differences
of a float64 twin."""
import copy
import io
import pickle
from contextlib import redirect_stdout

import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import clone_model, model_from_json
from tests.reference import numpy_ops


def _block_model(shape=(12, 12, 3), seed=0, classes=3):
    """conv -> BN -> ReLU6 -> [1x1 expand -> ReLU6 -> depthwise -> 1x1 project] + skip
    -> GAP -> Dense softmax: an inverted residual block in miniature."""
    aslnet.set_random_seed(seed)
    inp = L.Input(shape)
    x = L.Conv2D(4, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    skip = L.ReLU(6.0, name="stem_relu")(x)
    y = L.Conv2D(8, 1, name="expand")(skip)
    y = L.ReLU(6.0, name="expand_relu")(y)
    y = L.DepthwiseConv2D(3, padding="same", name="depthwise")(y)
    y = L.Conv2D(4, 1, name="project")(y)
    x = L.Add(name="add")([skip, y])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, activation="softmax", name="head")(x)
    model = aslnet.Model(inp, out)
    rng = np.random.default_rng(seed + 1)
    bn = model.get_layer("stem_bn")
    bn.set_weights([rng.uniform(0.8, 1.2, 4), rng.normal(1.0, 0.2, 4),
                    rng.normal(0, 0.1, 4), rng.uniform(0.5, 1.5, 4)])
    for name in ("stem", "expand", "project", "head"):
        layer = model.get_layer(name)
        k, b = layer.get_weights()
        layer.set_weights([k, rng.normal(0.3, 0.2, b.shape)])
    return model


NAMES = ["stem", "stem_bn", "stem_relu", "expand", "expand_relu", "depthwise", "project",
         "add", "gap", "head"]


def test_layers_in_keras_order_and_chain_with_source():
    model = _block_model()
    assert [l.name for l in model.layers[1:]] == NAMES
    network = model._core()
    assert network.adds == {network.first_op(model.get_layer("add")):
                            network.index["stem_relu"][-1]}
    add = model.get_layer("add")
    assert add.input_shape == [(None, 12, 12, 4), (None, 12, 12, 4)]
    assert add.output_shape == (None, 12, 12, 4)


def test_keras_order_ties_by_depth_first_walk():
    """Keras (keras/src/ops/function.py map_graph) orders by the longest path to the
    output, ties by a depth-first walk from the output, first input first: a block whose
    skip path has a layer of its own lists that layer after the long branch's first."""
    inp = L.Input((8, 8, 2))
    a = L.Conv2D(2, 1, name="a")(inp)
    long1 = L.Conv2D(2, 1, name="long1")(a)
    long2 = L.Conv2D(2, 1, name="long2")(long1)
    out = L.Add(name="add")([long2, a])
    model = aslnet.Model(inp, out)
    assert [l.name for l in model.layers[1:]] == ["a", "long1", "long2", "add"]


def test_parallel_branches_refused_when_built():
    inp = L.Input((8, 8, 2))
    a = L.Conv2D(2, 1, name="a")(inp)
    b1 = L.Conv2D(2, 1, name="b1")(a)
    b2 = L.Conv2D(2, 1, name="b2")(a)
    with pytest.raises(NotImplementedError, match="parallel branches"):
        aslnet.Model(inp, L.Add()([b1, b2]))


def test_add_call_errors():
    inp = L.Input((8, 8, 2))
    a = L.Conv2D(2, 1)(inp)
    b = L.Conv2D(3, 1)(inp)
    with pytest.raises(ValueError, match="list of 2 tensors"):
        L.Add()(a)
    with pytest.raises(ValueError, match="same shape"):
        L.Add()([a, b])
    with pytest.raises(TypeError, match="output of another aslnet layer"):
        L.Add()([a, np.zeros((1, 8, 8, 2))])
    with pytest.raises(NotImplementedError, match="merges the model's input"):
        aslnet.Model(inp, L.Add()([L.Conv2D(2, 1)(a), inp]))


def test_config_round_trip_and_clone(tmp_path):
    model = _block_model()
    cfg = model.get_config()
    add = next(e for e in cfg["layers"] if e["name"] == "add")
    assert add["inbound_nodes"] == [[["stem_relu", 0, 0, {}], ["project", 0, 0, {}]]]
    for m in (clone_model(model), model_from_json(model.to_json()),
              aslnet.Model.from_config(cfg)):
        assert [l.name for l in m.layers] == [l.name for l in model.layers]
        m.set_weights(model.get_weights())
        x = np.random.default_rng(3).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
        np.testing.assert_array_equal(m.predict_on_batch(x), model.predict_on_batch(x))
    model.save(tmp_path / "m.h5")
    loaded = aslnet.load_model(tmp_path / "m.h5")
    x = np.random.default_rng(4).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))


def test_copies_and_pickles():
    model = _block_model()
    x = np.random.default_rng(5).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    want = model.predict_on_batch(x)
    for m in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(m.predict_on_batch(x), want)


def test_summary_connected_to_column():
    model = _block_model()
    out = io.StringIO()
    with redirect_stdout(out):
        model.summary()
    lines = out.getvalue().splitlines()
    assert "Connected to" in lines[2] and len(lines[1]) == 98
    row = next(i for i, l in enumerate(lines) if l.startswith("add (Add)"))
    assert lines[row].rstrip().endswith("stem_relu[0][0]")
    assert lines[row + 1].strip() == "project[0][0]"
    assert "Total params: " + f"{model.count_params():,}" in out.getvalue()


def test_trunk_boundary_at_the_block_edge():
    """Training only ``project`` (inside the residual span): the C core refuses a start
    whose adds read below start - 1, so the trunk ends at the block's input (stem_relu)."""
    model = _block_model()
    model.freeze("project")
    model.compile("adam", "categorical_crossentropy")
    network = model._core()
    assert model._trunk_start() == network.first_op(model.get_layer("expand"))
    x = np.random.default_rng(6).uniform(-1, 1, (8, 12, 12, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    ref = copy.deepcopy(model)
    ref.trunk_cache_bytes = 0                       # no cache: the same steps recomputed
    h1 = model.fit(x, y, epochs=3, batch_size=4, shuffle=False, verbose=0)
    h2 = ref.fit(x, y, epochs=3, batch_size=4, shuffle=False, verbose=0)
    assert h1.history["loss"] == h2.history["loss"]
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)


# The float64 twin of _block_model as the C core's chain (written out here, not taken from
# aslnet): ops with Keras-layout weights, the add reading op 2 (stem_relu).
TWIN = [("conv2d", dict(filters=4, kernel_size=3, padding="same")),
        ("batch_normalization", {}),
        ("activation", dict(activation="relu6")),
        ("conv2d", dict(filters=8, kernel_size=1)),
        ("activation", dict(activation="relu6")),
        ("depthwise_conv2d", dict(kernel_size=3, padding="same")),
        ("conv2d", dict(filters=4, kernel_size=1)),
        ("add", dict(source=2)),
        ("global_average_pooling2d", {}),
        ("dense", dict(units=3, activation="softmax"))]


def _twin_loss(params, x, y):
    outs, _ = numpy_ops.graph_forward(TWIN, params, x)
    return float(-np.mean(np.sum(y * np.log(outs[-1].reshape(y.shape)), axis=1)))


@pytest.mark.parametrize("size", [(12, 12), (13, 9)])
def test_gradients_against_finite_differences(size):
    """Every parameter gradient of one train step (all layers trainable but the frozen BN)
    against central differences of the float64 twin's loss.  Step 1e-6 in float64: the
    truncation error is ~h^2 |f'''| ~ 1e-12 and the rounding error ~1e-16 |L| / h ~ 1e-10,
    so the differences are exact to ~1e-9; aslnet's float32 gradient carries ~1e-7 relative
    rounding per operation over a few dozen sums (~1e-6 of the largest element), so 1e-4
    of each tensor's largest element is float32 rounding with margin, far below any
    semantic error (a missed add path changes gradients by O(1)).  The any-size model
    (None, None, 3) is checked at an odd, non-square size."""
    model = _block_model(shape=(None, None, 3), seed=2)
    model.get_layer("stem_bn").trainable = False
    opt = aslnet.optimizers.SGD(1e-3)
    model.compile(opt, "categorical_crossentropy")
    y = np.eye(3)[[0, 2]]
    by_op = {i: l for i, l in enumerate(["stem", "stem_bn", None, "expand", None,
                                         "depthwise", "project", None, None, "head"])}
    params = [model.get_layer(by_op[i]).get_weights() if by_op[i] else []
              for i in range(len(TWIN))]
    relus = [i for i, (kind, _) in enumerate(TWIN) if kind == "activation"]

    def kink_margin(x):
        outs, _ = numpy_ops.graph_forward(TWIN, params, x)
        return min(np.min(np.minimum(np.abs(outs[i - 1]), np.abs(outs[i - 1] - 6)))
                   for i in relus)
    # data with every ReLU6 input >= 1e-5 from a kink: float32 rounding (~1e-6 here) and
    # the differences' steps (h times an input, ~1e-6) cannot cross one
    for seed in range(100):
        x = np.random.default_rng(seed).uniform(-1, 1, (2,) + size + (3,)).astype(np.float32)
        if kink_margin(x) >= 1e-5:
            break
    else:
        pytest.fail("no batch away from the kinks")
    model.train_on_batch(x, y)
    network = model._core()
    h = 1e-6
    checked = 0
    for i, name in by_op.items():
        if name is None or name == "stem_bn":
            continue
        for j, w in enumerate(params[i]):
            g = network.net.grad(network.holder(model.get_layer(name)), j).reshape(w.shape)
            fd = np.zeros(w.shape)
            flat = [p.astype(np.float64) for p in params[i]]
            for k in range(w.size):
                for sign in (1, -1):
                    q = [p.copy() for p in flat]
                    q[j].flat[k] += sign * h
                    trial = params[:i] + [q] + params[i + 1:]
                    fd.flat[k] += sign * _twin_loss(trial, x, y) / (2 * h)
            scale = np.abs(fd).max()
            assert scale > 1e-6, f"{name}[{j}]: no gradient to check"
            assert np.abs(g - fd).max() <= 1e-4 * scale, (name, j, np.abs(g - fd).max(), scale)
            checked += w.size
    assert checked > 250


def test_any_size_model_predicts_and_fits_across_sizes():
    """A (None, None, 3) model equals fixed-size models with the same weights at each
    size, bit for bit (same primitives, same order); fit alternates sizes."""
    model = _block_model(shape=(None, None, 3))
    assert model.input_shape == (None, None, None, 3)
    assert model.get_layer("add").output_shape == (None, None, None, 4)
    rng = np.random.default_rng(8)
    for size in [(12, 12), (20, 9), (12, 12), (33, 40)]:
        x = rng.uniform(-1, 1, (2,) + size + (3,)).astype(np.float32)
        fixed = _block_model(shape=size + (3,))
        fixed.set_weights(model.get_weights())
        np.testing.assert_array_equal(model.predict(x, verbose=0), fixed.predict(x, verbose=0))
    assert sorted(model._net.net.planned_sizes) == [(12, 12), (20, 9), (33, 40)]
    model.compile("adam", "categorical_crossentropy")
    y = np.eye(3, dtype=np.float32)[[0, 1]]
    for size in [(16, 16), (24, 18)]:
        x = rng.uniform(-1, 1, (2,) + size + (3,)).astype(np.float32)
        model.fit(x, y, epochs=2, verbose=0)
    with pytest.raises(ValueError, match=r"expects input shape \(None, None, None, 3\)"):
        model.predict(np.zeros((1, 12, 12, 4), np.float32), verbose=0)


def test_any_size_trunk_cache_per_size():
    """The frozen-trunk cache of a model of any input size: filled at the first batch's
    size; the same results as without a cache; data of another size turns it off."""
    model = _block_model(shape=(None, None, 3))
    model.freeze("head")
    model.compile("adam", "categorical_crossentropy")
    ref = copy.deepcopy(model)
    ref.trunk_cache_bytes = 0
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (6, 14, 10, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(6) % 3]
    h1 = model.fit(x, y, epochs=3, batch_size=3, shuffle=False, verbose=0)
    h2 = ref.fit(x, y, epochs=3, batch_size=3, shuffle=False, verbose=0)
    assert h1.history["loss"] == h2.history["loss"]
    from aslnet.trainers.trunk_cache import TrunkCache
    cache = TrunkCache(4, None)
    feats = np.ones((2, 7, 5, 4), np.float32)
    cache.store([0, 1], feats, (14, 10))
    assert cache.has([0, 1]) and cache.input_size == (14, 10)
    cache.store([2, 3], np.ones((2, 3, 2, 4), np.float32), (6, 4))
    assert not cache.has([0, 1])                      # off: never features of another size
