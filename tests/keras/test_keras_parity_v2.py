"""MobileNetV2 parity with Keras itself (Keras 3 on TensorFlow CPU), as
test_keras_parity.py does for v1: the ImageNet weights (alpha 1.0) in aslnet's
``MobileNetV2`` and in ``keras.applications.MobileNetV2`` (copied by layer name)

* give the same outputs: the 1000-class softmax on the four reference photos at 224, and
  the pooled features of ``include_top=False`` models at 200x150, both of a fixed size and
  of any size (``(None, None, 3)``, where Keras fixes the pads at ((0, 1), (0, 1)));
* after one Adam step of a new Dense head with the last blocks trainable (training-mode
  batch norm included, frozen batch norm below in inference mode; the add of block 15
  inside the trainable part, the trunk ending at block_14_add), at 224 and at 200x150 on a
  model of any size, the same loss, the same gradients (Adam's slots, element by element)
  and the same weights and moving statistics.  Measured: softmax 4.2e-6, features 1.5e-6
  of the largest, gradients 1.6e-5 of each tensor's largest, updates 8e-4 relative L2.

Tolerances are test_keras_parity.py's, argued there (float32, both sides summing in
other orders): softmax 1e-5 absolute, features 1e-4 of their largest, loss 3e-5, first-step
gradients 2e-4 of each tensor's largest element with no ReLU6 input within 1e-5 of a kink,
frozen weights bit for bit, moving statistics rtol 1e-4 / atol 1e-5, updated weights
within Adam's 2 lr bound and 5e-3 relative L2 of the update.  MobileNetV2 is deeper (52
batch norms, 17 adds) than the v1 of those tests, but float32 rounding grows with the
square root of the depth at most: the measured differences are printed (pytest -rP).
"""
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.keras

try:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
except ImportError as exc:  # installed but broken
    pytest.skip(f"TensorFlow is installed but does not import: {exc}",
                allow_module_level=True)
if int(keras.__version__.split(".")[0]) < 3:
    pytest.skip(f"needs Keras 3, found {keras.__version__}", allow_module_level=True)

import aslnet  # noqa: E402
from aslnet import layers as L  # noqa: E402
from aslnet.applications import MobileNetV2  # noqa: E402
from tests.keras.test_keras_parity import (GRAD_REL, KINK_MARGIN, LOSS_ATOL,  # noqa: E402
                                           SOFTMAX_ATOL, TRAJ_REL, W_ATOL, W_RTOL,
                                           _keras_slot, _kink_distance, _rel_l2, _report)

FEATURE_REL = 1e-4
CLASSES, BATCH = 5, 4
PHOTOS = ["cat", "bird", "grace_hopper", "parrot"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    saved = aslnet.backend._num_threads
    aslnet.set_num_threads(1)
    yield
    aslnet.set_num_threads(saved)


@pytest.fixture(scope="module")
def photos(shared_weights_dir):
    return np.stack([np.load(shared_weights_dir / "reference" / f"{p}.input.npy")
                     for p in PHOTOS]).astype(np.float32)


def _copy_by_name(model, kmodel):
    klayers = {l.name: l for l in kmodel.layers}
    with_weights = [l for l in model.layers if l.weights]
    assert {l.name for l in with_weights} == {l.name for l in kmodel.layers if l.weights}
    for layer in with_weights:
        klayers[layer.name].set_weights(layer.get_weights())
    for layer in model.layers[1:]:
        if layer.name in klayers:
            klayers[layer.name].trainable = layer.trainable


def _aslnet(shared_weights_dir, **kw):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MobileNetV2(weights_dir=shared_weights_dir, **kw)


def test_imagenet_outputs_match(photos, shared_weights_dir, request):
    model = _aslnet(shared_weights_dir)
    kmodel = keras.applications.MobileNetV2(weights=None)
    def names(m):          # (the pooling's automatic name depends on what came before)
        return [l.name if "pooling" not in l.name else type(l).__name__
                for l in m.layers[1:]]
    assert names(kmodel) == names(model)
    _copy_by_name(model, kmodel)
    p, k = model.predict(photos, verbose=0), kmodel.predict(photos, verbose=0)
    d = float(np.abs(p - k).max())
    assert d <= SOFTMAX_ATOL
    assert [list(np.argsort(-r)[:5]) for r in p] == [list(np.argsort(-r)[:5]) for r in k]
    _report(request, softmax_abs=d)


@pytest.mark.parametrize("any_size", [False, True])
def test_features_at_an_odd_size_match(photos, shared_weights_dir, any_size, request):
    shape = (None, None, 3) if any_size else (200, 150, 3)
    model = _aslnet(shared_weights_dir, input_shape=shape, include_top=False,
                    pooling="avg")
    kmodel = keras.applications.MobileNetV2(input_shape=shape, include_top=False,
                                            weights=None, pooling="avg")
    _copy_by_name(model, kmodel)
    x = photos[:, 12:212, 37:187]
    a, k = model.predict(x, verbose=0), kmodel.predict(x, verbose=0)
    d = float(np.abs(a - k).max()) / float(np.abs(k).max())
    assert d <= FEATURE_REL
    _report(request, feature_rel=d)


def _head_pair(shared_weights_dir, shape):
    """MobileNetV2 without top + pooling, a new Dense head; trainable from block_15_expand
    (blocks 15 and 16 with their batch norms in training mode, Conv_1, Conv_1_bn, the
    head); the same in Keras."""
    base = _aslnet(shared_weights_dir, input_shape=shape, include_top=False, pooling="avg")
    aslnet.set_random_seed(3)
    out = L.Dense(CLASSES, activation="softmax", name="head")(base.output)
    model = aslnet.Model(base.input, out)
    model.freeze("block_15_expand")
    # The ImageNet batch norms are folded (gamma 1, beta the bias, no statistics): in
    # training mode, batch statistics with those betas kill Conv_1_bn's ReLU6 (every
    # output 0, a uniform softmax, no gradient below the head).  The trainable ones get a
    # random gamma and a positive beta, so that training-mode batch norm passes gradients
    # (the frozen ones keep the ImageNet function).
    rng = np.random.default_rng(11)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization) and layer.trainable:
            gamma, beta, mean, var = layer.get_weights()
            c = gamma.size
            layer.set_weights([rng.uniform(0.6, 1.4, c), rng.normal(1.0, 0.3, c), mean, var])
    kbase = keras.applications.MobileNetV2(input_shape=shape, include_top=False,
                                           weights=None, pooling="avg")
    kout = keras.layers.Dense(CLASSES, activation="softmax", name="head")(kbase.output)
    kmodel = keras.Model(kbase.input, kout)
    _copy_by_name(model, kmodel)
    for layer in kmodel.layers:
        layer.trainable = model.get_layer(layer.name).trainable \
            if layer.name in {l.name for l in model.layers} else False
    return model, kmodel


# Batch norms whose beta has a zero gradient by shift invariance: a block's projection BN
# whose output (through the add) feeds a 1x1 convolution and then a training-mode batch norm,
# which removes any per-channel constant.  Both sides then hold rounding noise.
SHIFT_INVARIANT = {("block_15_project_BN", 1), ("block_16_project_BN", 1)}


def _compare_first_slots(model, kmodel):
    """Adam's slots after one step (m = 0.1 g, v = 0.001 g^2), element by element within
    GRAD_REL of each tensor's largest; the shift-invariant betas within GRAD_REL of the
    largest first moment of the model (zero up to rounding on both sides)."""
    klayers = {l.name: l for l in kmodel.layers}
    state = model.get_optimizer_state()
    assert state["iterations"] == int(kmodel.optimizer.iterations.numpy()) == 1
    pairs = {key: (va, _keras_slot(kmodel, klayers[key[0]].weights[key[1]], "adam", key[2]))
             for key, va in state["slots"].items()}
    top = {k: max(float(np.abs(vk).max()) for (n, j, s), (_, vk) in pairs.items() if s == k)
           for k in (0, 1)}
    worst = 0.0
    for (name, j, slot), (va, vk) in pairs.items():
        if (name, j) in SHIFT_INVARIANT:
            d = max(float(np.abs(va).max()), float(np.abs(vk).max())) / top[slot]
        else:
            d = float(np.abs(va - vk).max()) / float(np.abs(vk).max())
        assert d <= GRAD_REL, f"{name} weight {j} slot {slot}: {d:.3g}"
        worst = max(worst, d)
    return worst


def _compare_first_weights(model, kmodel, before, lr):
    """test_keras_parity.py's weight comparison after one Adam step, but the
    shift-invariant betas, whose Adam step is +-lr of rounding noise on each side: for
    those only Adam's bound (|dw| <= lr per step, so the sides within 2 lr)."""
    klayers = {l.name: l for l in kmodel.layers}
    out = {"update_rel_l2": 0.0, "weight_abs": 0.0, "moving_stat_abs": 0.0}
    for layer in model.layers:
        for j, (var, wa, wk, w0) in enumerate(zip(layer.weights, layer.get_weights(),
                                                  klayers[layer.name].get_weights()
                                                  if layer.weights else [],
                                                  before.get(layer.name, []))):
            if not layer.trainable:
                np.testing.assert_array_equal(wa, w0, err_msg=var.name)
                np.testing.assert_array_equal(wk, w0, err_msg=var.name)
                continue
            diff = float(np.abs(wa - wk).max())
            if not var.trainable:                            # moving statistics
                assert not np.array_equal(wa, w0), f"{var.name}: not updated"
                np.testing.assert_allclose(wa, wk, rtol=W_RTOL, atol=W_ATOL, err_msg=var.name)
                out["moving_stat_abs"] = max(out["moving_stat_abs"], diff)
                continue
            assert diff <= W_ATOL + 2 * lr, f"{var.name}: {diff:.3g} beyond Adam's bound"
            if (layer.name, j) not in SHIFT_INVARIANT:
                rel = _rel_l2(wa - w0, wk - w0)
                assert rel <= TRAJ_REL, f"{var.name}: updates differ by {rel:.3g}"
                out["update_rel_l2"] = max(out["update_rel_l2"], rel)
                out["weight_abs"] = max(out["weight_abs"], diff)
    return out


@pytest.mark.parametrize("shape, size", [((224, 224, 3), (224, 224)),
                                         ((None, None, 3), (200, 150))])
def test_first_step_of_a_new_head_matches(photos, shared_weights_dir, shape, size, request):
    model, kmodel = _head_pair(shared_weights_dir, shape)
    # A batch of two photos (mirrored or not) with no ReLU6 input of the trainable part
    # within 1e-5 of a kink, where float32 rounding could put it on either side (see
    # test_keras_parity.py): element-wise gradients are then well posed.
    crops = photos[:, :size[0], :size[1]]
    for i, j, flip in [(i, j, f) for f in (False, True) for i in range(4) for j in range(i)]:
        x = np.ascontiguousarray(crops[[i, j], :, ::-1] if flip else crops[[i, j]])
        kink = _kink_distance(kmodel, x)
        if kink >= KINK_MARGIN:
            break
    else:
        pytest.fail("no batch of two photos away from the ReLU6 kinks")
    y = np.eye(CLASSES, dtype=np.float32)[[0, 3]]
    lr = 1e-3
    model.compile(optimizer=aslnet.optimizers.Adam(lr), loss="categorical_crossentropy")
    kmodel.compile(optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy")
    before = {l.name: l.get_weights() for l in model.layers if l.weights}
    la, lk = model.train_on_batch(x, y), float(kmodel.train_on_batch(x, y))
    assert abs(la - lk) <= LOSS_ATOL, (la, lk)
    assert abs(la - np.log(CLASSES)) > 1e-2                 # not a uniform (dead) output
    g = model.get_optimizer_state()["slots"][("block_15_expand", 0, 0)]
    assert np.abs(g).max() > 1e-6                           # gradients reach block 15
    d_grad = _compare_first_slots(model, kmodel)
    d = _compare_first_weights(model, kmodel, before, lr)
    assert d_grad <= GRAD_REL
    _report(request, kink_distance=kink, loss_abs=abs(la - lk), grad_rel_max=d_grad, **d)
