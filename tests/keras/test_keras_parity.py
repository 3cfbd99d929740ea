"""Parity with Keras itself (Keras 3 on TensorFlow CPU).

The same small MobileNet v1 (alpha 0.25, 96x96x3, 10 classes, dropout 0) is
built in aslnet and in ``keras.applications.MobileNet``; aslnet's weights --
random kernels, random gamma/beta and moving statistics -- are copied into
Keras *by layer name* (Keras 3's MobileNet has no ``conv1_pad`` -- its conv1
pads "same" -- and no ``reshape_1``, so indices differ).  Then:

* inference: softmax outputs, logits and features agree;
* first training step from identical weights, with the tutorial's freezing
  (the last layers trainable, including trainable BatchNormalization --
  batch statistics and moving-average update -- and frozen BN in inference
  mode below): every gradient agrees element by element;
* 3 ``train_on_batch`` steps (batch 4; Adam, and SGD with Nesterov
  momentum), a 2-epoch ``fit`` (shuffle=False) and the tutorial's Dense
  head (cut at the pooled features, last 23 layers trainable): losses,
  history, every weight, moving statistic and optimizer slot agree;
* ``aslnet.utils.keras_export.to_keras`` builds the same Keras model
  (test_to_keras.py, with these helpers and tolerances).

Tolerances.  Both sides compute in float32 (unit roundoff u = 6e-8) and sum
in different orders, and which order oneDNN, OpenBLAS and TensorFlow take
depends on the CPU (AVX2, AVX-512, AMX kernels), so no bound here comes from
one machine's run; each is an argument, and the measured figures (AMD EPYC
Zen 4 with oneDNN's default kernels and with ONEDNN_MAX_CPU_ISA=AVX2, shown
with ``pytest -rP``) are only there to show the margin.  Training is compared
with a float64 twin of the Keras model (``_keras_dtype``): the exact Keras
trajectory up to 1e-16, so that Keras's own float32 rounding is not charged
to aslnet (on one run here Keras float32 was 6e-4 from its float64 twin in
relative L2 after a kink flip, aslnet 1.7e-5).

* forward: a dot product of K terms in float32 is off by at most K u of the
  sum of magnitudes (deterministic bound), typically sqrt(K) u (random
  rounding); 28 layers with K <= 256 (conv_pw_13) and BN keeping the gain
  per layer ~1 give ~28 x 16 x 6e-8 = 2.7e-5 typical, 4e-4 worst case,
  relative to the largest value.  LOGIT_REL = 1e-4 (between the two) for
  aslnet vs Keras; each side vs the float64 NumPy twin within half of it
  (measured 4.3e-6 and 9.1e-6).  Softmax outputs: dp_i = p_i (dz_i - p.dz)
  and |dz_i - p.dz| <= 2 (1 - p_i) max|dz|, so |dp_i| <= max|dz| / 2; with
  the logits within LOGIT_REL of max|z| <= 4 (asserted where it is
  measured: 2.9), SOFTMAX_ATOL = 2e-4; measured 3.7e-6.
* losses and history['loss']: loss = logsumexp(z) - z_true moves by at most
  2 max|dz|, and vs float64 max|dz| <= LOGIT_REL / 2 x max|z| (<= 4):
  LOSS_ATOL = 4e-4 absolute; measured <= 1.4e-5.
* first-step gradients (the Adam slots after one step: m = 0.1 g,
  v = 0.001 g^2, whose relative error is twice g's) vs float64: 2e-4 of
  each tensor's largest value, element by element.  The backward pass is
  the forward's transpose over the same depth and the same K, so its error
  is of the forward's order, 2.7e-5 typical, twice that for v: 5e-5; 2e-4
  leaves a factor 4 for gradients that are differences of nearly equal
  terms (BN in training mode).  Measured <= 3e-5 (vs Keras float32: 4.7e-5).  Only
  well posed without ReLU6 kink flips, see below (KINK_MARGIN = 1e-5 >
  the forward error at that depth, measured 1.3e-5 of the largest ~ 1e-5
  absolute).
* frozen layers: bit for bit unchanged on both sides.
* BN moving statistics: rtol 1e-4, atol 1e-5: they average batch
  statistics (rounded to ~K u, K = the 4 x H x W values summed, <= 2304 ->
  1.4e-4 worst, random 3e-6) of features that carry the forward error
  (2.7e-5 typical); measured <= 2.9e-6.
* trained weights and optimizer slots over several steps (TRAJ_REL): the
  update w_after - w_before and each slot tensor vs float64 within 1e-2 in
  relative L2.  Without kink flips the error is the gradients' (<= 5e-5, as
  above; measured 1.7e-5).  A kink flip (below) costs a tensor up to 1.2e-3
  in relative L2 (traced: the largest effect of one flip on the layers
  below it); with ~1e5 pre-activations of O(1) per step and a float32
  error of ~1e-5, a flip is expected about once in a few steps (the
  first-step batches' closest pre-activations lie 2.4e-5 and 8e-5 from a
  kink), so 1e-2 is the budget of 8 flips in these 3-6 steps.  The errors
  this test is for (a wrong momentum, bias correction, Nesterov term, BN
  statistic or gradient) change slots by O(1), >= 1e-1.  Element by
  element: within 1e-5 + 1e-4 |w| + FLIP_REL = 5e-2 x the tensor's largest
  update (SGD: a flip moves an element's gradient by up to 3e-2 of its
  tensor's largest, traced), or within 2 lr per step (Adam: each side moves
  an element by at most ~lr per step; see below).

Two float32 effects make per-element trajectories legitimately diverge; both
were traced on these very models (the per-step gradients, recomputed in
Keras from aslnet's own weights, agree to ~1e-5 except as follows):

* ReLU6 kink flips: ~1e5 pre-activations per step in the trainable part,
  O(1) in size, carry rounding errors of ~1e-6-1e-5; now and then one lies
  that close to 0 (e.g. 8.5e-6 from it in the Dense-head run, step 2,
  conv_dw_13_bn channel 86) and the two sides put it on different sides of
  the kink.  That element's gradient is passed by one side and not the
  other, and the difference propagates to every trainable layer below it
  (measured: up to 3e-2 of a tensor's largest gradient, 1.2e-3 in relative
  L2).  The first-step test checks that its batch has no pre-activation
  within 1e-5 of a kink, so that its element-wise comparison is well posed.
* Adam's normalisation: Adam moves each element by ~lr x m/sqrt(v), so an
  element whose gradient is tiny relative to its tensor's (BN beta of a
  channel whose ReLU6 never clips, feeding a conv + training-mode BN, has a
  zero gradient by shift invariance; dead channels likewise; and any small
  gradient after a kink flip) gets a +-lr step from rounding noise.  Only
  Adam's bound |dw| <= lr per step (bias-corrected, first steps) holds for
  those elements; the norms above show that the bulk agrees.
"""
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import contextlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.keras

try:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
except ImportError as exc:  # installed but broken, e.g. built against another NumPy
    pytest.skip(f"TensorFlow is installed but does not import: {exc}",
                allow_module_level=True)
if int(keras.__version__.split(".")[0]) < 3:
    pytest.skip(f"needs Keras 3, found {keras.__version__}", allow_module_level=True)

import aslnet  # noqa: E402
from aslnet import layers as L  # noqa: E402
from aslnet.applications.mobilenet import MobileNet  # noqa: E402
from aslnet.utils.keras_export import to_keras  # noqa: E402

try:  # keep TensorFlow light on a shared machine (fails once TF is running)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass

SHAPE, ALPHA, CLASSES, BATCH, SAMPLES = (96, 96, 3), 0.25, 10, 4, 12
TRAINABLE = 18          # the last 18 of 93 layers: from conv_dw_12 on
HEAD_TRAINABLE = 23     # the tutorial's Dense head: from conv_pw_10_bn on

SOFTMAX_ATOL = 2e-4
LOGIT_REL = 1e-4
LOSS_ATOL = 4e-4
W_RTOL, W_ATOL = 1e-4, 1e-5
GRAD_REL = 2e-4
TRAJ_REL = 1e-2
FLIP_REL = 5e-2
KINK_MARGIN = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    saved = aslnet.backend._num_threads
    aslnet.set_num_threads(1)
    yield
    aslnet.set_num_threads(saved)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1234)
    x = rng.uniform(-1, 1, (SAMPLES,) + SHAPE).astype(np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, SAMPLES)]
    return x, y


# -- building the pair ------------------------------------------------------

def _randomize(model, x, rng):
    """Non-trivial weights: every BN gets random gamma, beta and moving
    statistics near (not at) the real statistics of its input on ``x``, so
    that activations stay in range through 27 conv layers; biases random."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            feats = aslnet.Model(model.input, layer.input).predict_on_batch(x)
            feats = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
            mean, var = feats.mean(0), feats.var(0)
            c = mean.size
            layer.set_weights([rng.uniform(0.6, 1.4, c), rng.normal(0.1, 0.3, c),
                               mean + 0.2 * np.sqrt(var) * rng.normal(size=c),
                               var * rng.uniform(0.7, 1.4, c) + 0.01])
        elif isinstance(layer, L.Conv2D) and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 2, rng.normal(0, 0.2, bias.shape)])


def _aslnet_mobilenet(x, seed=0):
    aslnet.set_random_seed(seed)
    model = MobileNet(alpha=ALPHA, input_shape=SHAPE, weights=None, classes=CLASSES,
                      dropout=0.0)
    _randomize(model, x, np.random.default_rng(seed + 1))
    return model


def _copy_by_name(model, kmodel):
    """aslnet -> Keras weights and trainable flags, by layer name."""
    klayers = {l.name: l for l in kmodel.layers}
    with_weights = {l.name for l in model.layers if l.weights}
    assert with_weights == {l.name for l in kmodel.layers if l.weights}
    for layer in model.layers:
        if layer.name in klayers:
            if layer.weights:
                klayers[layer.name].set_weights(layer.get_weights())
            klayers[layer.name].trainable = layer.trainable


@contextlib.contextmanager
def _keras_dtype(dtype):
    """Keras layers built inside compute and store in ``dtype``."""
    saved = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(saved[0])
        keras.config.set_dtype_policy(saved[1])


def _keras_mobilenet(model, dtype="float32"):
    """Keras's own MobileNet with ``model``'s weights and trainable flags."""
    with _keras_dtype(dtype):
        kmodel = keras.applications.MobileNet(input_shape=SHAPE, alpha=ALPHA, weights=None,
                                              classes=CLASSES, dropout=0.0)
    _copy_by_name(model, kmodel)
    return kmodel


def _keras_dense_head(model, dtype="float32"):
    """The tutorial's Dense-head model in Keras, ``model``'s weights and flags."""
    with _keras_dtype(dtype):
        kbase = keras.applications.MobileNet(input_shape=SHAPE, alpha=ALPHA, weights=None,
                                             include_top=False, pooling="avg")
        gap = next(l for l in kbase.layers
                   if isinstance(l, keras.layers.GlobalAveragePooling2D))
        kout = keras.layers.Dense(CLASSES, activation="softmax", name="head")(gap.output)
        kmodel = keras.Model(kbase.input, kout)
    _copy_by_name(model, kmodel)
    return kmodel


def _optimizers(kind, lr=None):
    if kind == "adam":
        lr = 1e-3 if lr is None else lr
        return aslnet.optimizers.Adam(lr), keras.optimizers.Adam(lr)
    lr = 0.01 if lr is None else lr
    return (aslnet.optimizers.SGD(lr, momentum=0.9, nesterov=True),
            keras.optimizers.SGD(lr, momentum=0.9, nesterov=True))


def _compile_pair(model, kmodel, kind, lr=None, k64=None):
    opt, kopt = _optimizers(kind, lr)
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    kmodel.compile(optimizer=kopt, loss="categorical_crossentropy")
    if k64 is not None:
        k64.compile(optimizer=_optimizers(kind, lr)[1], loss="categorical_crossentropy")
    return opt.learning_rate


def _snapshot(model):
    return {l.name: l.get_weights() for l in model.layers if l.weights}


# -- comparisons --------------------------------------------------------------

def _keras_slot(kmodel, kvar, kind, slot):
    kopt = kmodel.optimizer
    i = kopt._get_variable_index(kvar)
    if kind == "adam":
        return (kopt._momentums if slot == 0 else kopt._velocities)[i].numpy()
    return kopt.momentums[i].numpy()


def _rel_l2(a, k):
    norm = float(np.linalg.norm(k))
    return float(np.linalg.norm(a - k)) / norm if norm else float(np.abs(a).max())


def _compare_slots(model, kmodel, kind, elementwise=False):
    """Optimizer state (linear in the gradients) of every trainable weight.
    ``elementwise``: each element within GRAD_REL of its tensor's largest;
    else each tensor within TRAJ_REL in relative L2.  Returns the worst."""
    klayers = {l.name: l for l in kmodel.layers}
    state = model.get_optimizer_state()
    assert state["iterations"] == int(kmodel.optimizer.iterations.numpy())
    assert state["slots"], "no optimizer slots: nothing was trained"
    worst = 0.0
    for (name, j, slot), va in state["slots"].items():
        vk = _keras_slot(kmodel, klayers[name].weights[j], kind, slot)
        what = f"{name} weight {j} slot {slot}"
        if elementwise:
            scale = float(np.abs(vk).max())
            d = float(np.abs(va - vk).max()) / scale if scale else float(np.abs(va).max())
            assert d <= GRAD_REL, f"{what}: {d:.3g} of the largest"
        else:
            d = _rel_l2(va, vk)
            assert d <= TRAJ_REL, f"{what}: relative L2 {d:.3g}"
        worst = max(worst, d)
    return worst


def _compare_weights(model, kmodel, before, kind, lr, steps):
    """Every weight and moving statistic of ``model`` vs its Keras twin
    after ``steps`` training steps (see the module doc).  Returns the
    largest differences found."""
    klayers = {l.name: l for l in kmodel.layers}
    out = {"update_rel_l2": 0.0, "weight_abs": 0.0, "moving_stat_abs": 0.0}
    for layer in model.layers:
        if not layer.weights:
            continue
        k = klayers[layer.name]
        for var, wa, wk, w0 in zip(layer.weights, layer.get_weights(), k.get_weights(),
                                   before[layer.name]):
            what = f"{var.name} ({'trainable' if layer.trainable else 'frozen'})"
            if not layer.trainable:     # frozen: untouched on both sides, bit for bit
                np.testing.assert_array_equal(wa, w0, err_msg=what)
                np.testing.assert_array_equal(wk, w0, err_msg=what)
                continue
            diff = np.abs(wa - wk)
            if not var.trainable:       # BN moving statistics (batch stats, momentum)
                assert not np.array_equal(wa, w0), f"{what}: moving statistic not updated"
                np.testing.assert_allclose(wa, wk, rtol=W_RTOL, atol=W_ATOL, err_msg=what)
                out["moving_stat_abs"] = max(out["moving_stat_abs"], float(diff.max()))
                continue
            ua, uk = wa - w0, wk - w0
            rel = _rel_l2(ua, uk)
            assert rel <= TRAJ_REL, f"{what}: updates differ by {rel:.3g} in relative L2"
            if kind == "adam":
                bound = W_ATOL + 2 * lr * steps
                assert diff.max() <= bound, f"{what}: {diff.max():.3g} beyond Adam's bound"
            else:
                tol = W_ATOL + W_RTOL * np.abs(wk) + FLIP_REL * float(np.abs(uk).max())
                np.testing.assert_array_less(diff, tol + 1e-12, err_msg=what)
            out["update_rel_l2"] = max(out["update_rel_l2"], rel)
            out["weight_abs"] = max(out["weight_abs"], float(diff.max()))
    return out


def _kink_distance(kmodel, xb):
    """Smallest distance to 0 or 6 of the ReLU6 inputs in the trainable part
    of ``kmodel`` on batch ``xb``, in training mode (moving statistics are
    restored afterwards)."""
    first = next(i for i, l in enumerate(kmodel.layers) if l.trainable and l.weights)
    relus = [l for l in kmodel.layers[first:] if isinstance(l, keras.layers.ReLU)]
    probe = keras.Model(kmodel.input, [l.input for l in relus])
    saved = [l.get_weights() for l in kmodel.layers]
    outs = probe(xb, training=True)
    for l, w in zip(kmodel.layers, saved):
        l.set_weights(w)
    return min(float(np.min(np.minimum(np.abs(z), np.abs(z - 6)))) for z in outs)


def _report(request, **values):
    """Measured differences, shown with ``pytest -rP`` / ``-s``."""
    print(f"\n{request.node.name}: " + ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))


# -- semantics both sides are meant to share -------------------------------------

def test_keras_defaults_aslnet_assumes():
    kmodel = keras.applications.MobileNet(input_shape=SHAPE, alpha=ALPHA, weights=None,
                                          classes=CLASSES, dropout=0.0)
    bns = [l for l in kmodel.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 27
    assert all(l.momentum == 0.99 and l.epsilon == 1e-3 for l in bns)
    assert L.BatchNormalization().momentum == 0.99 and L.BatchNormalization().epsilon == 1e-3
    assert keras.optimizers.Adam().epsilon == aslnet.optimizers.Adam().epsilon == 1e-7
    assert keras.backend.epsilon() == 1e-7
    # Keras 3: conv1 pads "same", no conv1_pad, no reshape_1 (aslnet follows tf.keras 2)
    names = [l.name for l in kmodel.layers]
    assert "conv1_pad" not in names and "reshape_1" not in names
    assert kmodel.get_layer("conv1").padding == "same"
    # so the tutorial's cut ``layers[-6]`` is the pooled (None, 256) features in
    # aslnet / tf.keras 2, but the 4-D conv_pw_13_relu in Keras 3
    assert len(kmodel.layers) == 91 and kmodel.layers[-6].name == "conv_pw_13_relu"
    model = MobileNet(alpha=ALPHA, input_shape=SHAPE, weights=None, classes=CLASSES)
    assert len(model.layers) == 93 and model.layers[-6].output.shape == (None, 256)


# -- inference ---------------------------------------------------------------------

def test_predictions_match(data, request):
    x, _ = data
    model = _aslnet_mobilenet(x)
    kmodel = _keras_mobilenet(model)
    p = model.predict(x, batch_size=BATCH, verbose=0)
    pk = kmodel.predict(x, batch_size=BATCH, verbose=0)
    assert p.shape == pk.shape == (SAMPLES, CLASSES)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert p.max() > 0.3 and p.min() < 0.03, "outputs too uniform to test anything"
    d_soft = float(np.abs(p - pk).max())
    assert d_soft <= SOFTMAX_ATOL

    diffs = {}
    for name in ("conv_dw_6_relu", "conv_pw_13_relu", "reshape_2"):  # reshape_2: logits
        f = aslnet.Model(model.input, model.get_layer(name).output).predict_on_batch(x)
        fk = keras.Model(kmodel.input, kmodel.get_layer(name).output).predict(x, verbose=0)
        scale = float(np.abs(fk).max())
        diffs[name] = float(np.abs(f - fk).max()) / scale
        assert diffs[name] <= LOGIT_REL, (name, diffs[name])

    # which side is closer to float64?  (both: rounding only)
    from tests.reference.numpy_mobilenet import mobilenet_v1
    _, ref = mobilenet_v1({l.name: l.get_weights() for l in model.layers if l.weights}, x)
    logits = aslnet.Model(model.input, model.get_layer("reshape_2").output).predict_on_batch(x)
    klogits = keras.Model(kmodel.input, kmodel.get_layer("reshape_2").output).predict(
        x, verbose=0)
    scale = float(np.abs(ref).max())
    d_a, d_k = (float(np.abs(v - ref).max()) / scale for v in (logits, klogits))
    assert d_a <= LOGIT_REL / 2 and d_k <= LOGIT_REL / 2, (d_a, d_k)
    assert scale <= 4, "logits this large need a looser SOFTMAX_ATOL"
    _report(request, softmax_abs=d_soft, **{f"{k}_rel": v for k, v in diffs.items()},
            aslnet_vs_f64_rel=d_a, keras_vs_f64_rel=d_k)


# -- training ----------------------------------------------------------------------

def _train_pair(model, kmodel, data, kind, lr=None, steps=3, k64=None):
    """``steps`` train_on_batch on aslnet, its Keras twin and, if given, the
    float64 Keras twin; losses as (aslnet, keras[, keras float64]) tuples."""
    x, y = data
    lr = _compile_pair(model, kmodel, kind, lr, k64)
    before = _snapshot(model)
    losses = []
    for s in range(steps):
        xb, yb = x[s * BATCH:(s + 1) * BATCH], y[s * BATCH:(s + 1) * BATCH]
        step = (model.train_on_batch(xb, yb), kmodel.train_on_batch(xb, yb))
        if k64 is not None:
            step += (k64.train_on_batch(xb.astype(np.float64), yb.astype(np.float64)),)
        losses.append(step)
    return before, lr, losses


def _classifier_pair(x):
    """MobileNet with its own classifier, the last 18 layers trainable
    (conv_dw_12 on: depthwise and 1x1 convs, 4 trainable BN, conv_preds;
    23 frozen BN below)."""
    model = _aslnet_mobilenet(x)
    model.freeze(-TRAINABLE)
    trainable = [l for l in model.layers if l.trainable and l.weights]
    assert {type(l) for l in trainable} == {L.Conv2D, L.DepthwiseConv2D,
                                            L.BatchNormalization}
    assert any(isinstance(l, L.BatchNormalization) and not l.trainable
               for l in model.layers)
    kmodel = _keras_mobilenet(model)
    assert len(kmodel.trainable_weights) == len(model.trainable_weights) == 14
    return model, kmodel


def _dense_head_pair(x):
    """The tutorial's model in both: MobileNet cut at the pooled features, a
    new Dense(10, softmax), all but the last 23 layers frozen."""
    mobile = _aslnet_mobilenet(x)
    feats = mobile.layers[-6].output          # global_average_pooling2d, (None, 256)
    aslnet.set_random_seed(7)
    out = L.Dense(CLASSES, activation="softmax", name="head")(feats)
    model = aslnet.Model(mobile.input, out)
    model.get_layer("head").set_weights([model.get_layer("head").get_weights()[0],
                                         np.random.default_rng(8).normal(0, .2, CLASSES)])
    model.freeze(-HEAD_TRAINABLE)
    assert [l.name for l in model.layers if l.trainable and l.weights][0] == "conv_pw_10_bn"

    kmodel = _keras_dense_head(model)
    # Keras's last 23 layers are the same layers (Keras only lacks conv1_pad, up front)
    assert [l.name for l in kmodel.layers[-HEAD_TRAINABLE:-2]] == \
        [l.name for l in model.layers[-HEAD_TRAINABLE:-2]]
    assert [l.name for l in kmodel.layers if l.trainable and l.weights][0] == "conv_pw_10_bn"
    return model, kmodel


_PAIRS = {"classifier": (_classifier_pair, _keras_mobilenet, 1e-3),
          "dense_head": (_dense_head_pair, _keras_dense_head, 1e-4)}


def _keras_slot_gap(kmodel, k64, kind):
    """Largest relative L2 gap of Keras float32's optimizer slots from the
    float64 twin's (reported only: Keras's own float32 rounding, kink flips
    included, for scale)."""
    worst = 0.0
    for v32, v64 in zip(kmodel.trainable_weights, k64.trainable_weights):
        for slot in (0, 1) if kind == "adam" else (0,):
            worst = max(worst, _rel_l2(_keras_slot(kmodel, v32, kind, slot),
                                       _keras_slot(k64, v64, kind, slot)))
    return worst


@pytest.mark.parametrize("which", sorted(_PAIRS))
def test_first_step_gradients_match(data, which, request):
    """One Adam step from identical weights: m = 0.1 g and v = 0.001 g^2 of
    every trainable weight, element by element, against Keras in float64."""
    x, y = data
    make, twin, lr = _PAIRS[which]
    model, kmodel = make(x)
    k64 = twin(model, "float64")
    kink = _kink_distance(k64, x[:BATCH].astype(np.float64))
    assert kink >= KINK_MARGIN, (
        f"a ReLU6 input lies {kink:.2g} from a kink: float32 rounding may put it on "
        "either side, so element-wise gradients are ill-posed for this batch")
    before, lr, losses = _train_pair(model, kmodel, data, "adam", lr=lr, steps=1, k64=k64)
    d_loss = abs(losses[0][0] - losses[0][2])
    assert d_loss <= LOSS_ATOL, losses
    d_grad = _compare_slots(model, k64, "adam", elementwise=True)
    d = _compare_weights(model, k64, before, "adam", lr, steps=1)
    d_keras = _compare_slots(model, kmodel, "adam", elementwise=True)   # both float32
    _report(request, kink_distance=kink, loss_abs=d_loss, grad_rel_max=d_grad,
            grad_rel_max_vs_keras32=d_keras, **d)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_train_on_batch_matches(data, kind, request):
    model, kmodel = _classifier_pair(data[0])
    k64 = _keras_mobilenet(model, "float64")
    before, lr, losses = _train_pair(model, kmodel, data, kind, k64=k64)
    d_loss = max(abs(a - r) for a, _, r in losses)
    assert d_loss <= LOSS_ATOL, losses
    d_slot = _compare_slots(model, k64, kind)
    d = _compare_weights(model, k64, before, kind, lr, steps=3)
    _report(request, loss_abs=d_loss, slot_rel_l2=d_slot,
            keras32_slot_rel_l2=_keras_slot_gap(kmodel, k64, kind), **d)


def test_fit_matches(data, request):
    x, y = data
    model, kmodel = _classifier_pair(x)
    k64 = _keras_mobilenet(model, "float64")
    lr = _compile_pair(model, kmodel, "adam", k64=k64)
    before = _snapshot(model)
    h = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    hk = kmodel.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    h64 = k64.fit(x.astype(np.float64), y.astype(np.float64), batch_size=BATCH, epochs=2,
                  shuffle=False, verbose=0)
    la, lk, l64 = (np.array(v.history["loss"]) for v in (h, hk, h64))
    assert la.shape == lk.shape == l64.shape == (2,)
    d_loss = float(np.abs(la - l64).max())
    assert d_loss <= LOSS_ATOL, (la, l64)
    d_slot = _compare_slots(model, k64, "adam")
    d = _compare_weights(model, k64, before, "adam", lr, steps=2 * SAMPLES // BATCH)
    _report(request, loss_abs=d_loss, keras32_loss_abs=float(np.abs(lk - l64).max()),
            slot_rel_l2=d_slot, keras32_slot_rel_l2=_keras_slot_gap(kmodel, k64, "adam"), **d)


def test_dense_head_matches(data, request):
    model, kmodel = _dense_head_pair(data[0])
    k64 = _keras_dense_head(model, "float64")
    before, lr, losses = _train_pair(model, kmodel, data, "adam", lr=1e-4, k64=k64)
    d_loss = max(abs(a - r) for a, _, r in losses)
    assert d_loss <= LOSS_ATOL, losses
    d_slot = _compare_slots(model, k64, "adam")
    d = _compare_weights(model, k64, before, "adam", lr, steps=3)
    p, p64 = model.predict_on_batch(data[0]), k64.predict(data[0].astype(np.float64),
                                                          verbose=0)
    d_pred = float(np.abs(p - p64).max())
    assert d_pred <= SOFTMAX_ATOL
    _report(request, loss_abs=d_loss, slot_rel_l2=d_slot, pred_after_abs=d_pred,
            keras32_slot_rel_l2=_keras_slot_gap(kmodel, k64, "adam"), **d)


# -- categorical cross-entropy at saturation ------------------------------------------

def _saturated_pair():
    """A softmax so confident that p(true class) ~ 1e-26 < 1e-7."""
    inp = L.Input((4,))
    model = aslnet.Model(inp, L.Dense(3, activation="softmax", name="d")(inp))
    model.get_layer("d").set_weights([np.array([[30, 0, -30]] + [[0, 0, 0]] * 3, np.float32),
                                      np.zeros(3, np.float32)])
    model.compile(optimizer=aslnet.optimizers.SGD(0.1), loss="categorical_crossentropy")
    kmodel = to_keras(model)
    x, y = np.array([[1, 0, 0, 0]], np.float32), np.array([[0, 0, 1]], np.float32)
    return model, kmodel, x, y


def test_saturated_cce_gradients_match():
    """Both take the fused softmax + cross-entropy gradient p - y (Keras
    computes the loss from the softmax's logits), so the update agrees even
    where the probability is below the 1e-7 clip."""
    model, kmodel, x, y = _saturated_pair()
    model.train_on_batch(x, y)
    kmodel.train_on_batch(x, y)
    for wa, wk in zip(model.get_weights(), kmodel.get_weights()):
        np.testing.assert_allclose(wa, wk, rtol=1e-6, atol=1e-6)


def test_saturated_cce_loss_value():
    model, kmodel, x, y = _saturated_pair()
    la, lk = model.train_on_batch(x, y), kmodel.train_on_batch(x, y)
    assert lk == pytest.approx(60.0, rel=1e-5)   # Keras: from logits
    assert la == pytest.approx(lk, rel=1e-5)     # aslnet: from the softmax, unclipped
