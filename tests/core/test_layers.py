"""One table-driven harness for every layer kind of the C core (in the spirit of ggml's
test-backend-ops).

Each CASE builds a one-layer ``_core.Net`` with random parameters (``set_param``) and is
checked four ways:

(a) forward: C (float32) vs the NumPy float64 twin ``tests/reference/numpy_ops.py``;
(b) backward: C param gradients and dx (``need_dx=True``) vs the twin's analytic backward;
(c) the twin's analytic backward vs float64 central finite differences (tight, 1e-6);
    (b) + (c) together prove the C gradients against an independent derivative;
(d) float32 central finite differences of the C net itself on L = sum(r * y) for a few
    coordinates of x and of each weight vs the C gradient (loose, see FD32_RTOL).

Tolerances, (a) and (b).  The error metric is max|C - ref| / max|ref| over the tensor.
Float32 evaluation of a reduction over K terms has a worst-case relative error of about
K * eps32 (eps32 = 2^-24 ~ 6e-8 unit roundoff, the bound gamma_K of Higham's "Accuracy and
Stability of Numerical Algorithms", sec. 3.1), so each output of each case has a reduction
depth K (conv: kh*kw*cin; its kernel gradient: n*ho*wo; batch-norm statistics: n*h*w; ...,
see ``_depths``) and the tolerance is SAFETY * max(K, K_MIN) * eps32.  SAFETY = 8 covers the
few extra rounded operations around the reduction (bias, activation, exp in softmax, the
rsqrt of batch norm) and the inputs being rounded to float32 once; K_MIN = 16 covers the
element-wise ops (a handful of roundings each, and expf's few-ulp error).  Real errors are
far below these bounds (random rounding grows like sqrt(K)); the bound still fails any
wrong index, padding, stride or formula, which give errors of order 1.

Kinks.  relu/relu6 are not differentiable at 0 and 6 and global max pooling not at ties.
Data are drawn so that no pre-activation lies within KINK_MARGIN of 0 or 6 (rejection
sampling on the float64 pre-activation of the twin) and max-pool windows have distinct
values spaced 0.1 apart, so C float32 and the twin see the same branches and finite
differences never straddle a kink.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest

from tests.reference import numpy_ops as ref
from tests.reference.params import random_param

_core = pytest.importorskip("aslnet._core")

EPS32 = float(np.finfo(np.float32).eps) / 2   # unit roundoff 2^-24
SAFETY = 8
K_MIN = 16
KINK_MARGIN = 1e-3

# (c) float64 central differences: step 1e-5 gives truncation error ~h^2 * |f'''| ~ 1e-10
# and rounding error ~eps64 * |L| / h ~ 1e-10 for |L| ~ 10, both << the 1e-6 tolerance
# (relative to the largest gradient entry of the tensor).
FD64_STEP = 1e-5
FD64_RTOL = 1e-6
FD64_COORDS = 40   # coordinates checked per tensor (all of them when fewer)

# (d) float32 central differences of the C net: step h = 1e-2 * max(1, |theta|), the loss
# L = sum(r * y) summed in float64 from the float32 outputs, divided by the float32-rounded
# step.  Outputs that do not depend on the perturbed coordinate are recomputed bit-identically
# and cancel, so the rounding noise comes only from the A affected outputs, each rounded to at
# most ~K * eps32 * |y|: noise <= A * K * eps32 * |r y| / (2h).  The largest case here
# (training batch norm: A = K = n*h*w = 48) gives 48 * 48 * 6e-8 / 2e-2 ~ 7e-3 of the
# gradient scale in the worst case (random rounding: ~1e-5, which is what is measured).  The
# truncation error h^2 |f'''| / 6 is ~2e-5 for the smooth non-linear ops (batch norm,
# softmax) and 0 for the linear ones.  So 1e-2, relative to the largest |C gradient| of the
# tensor, is above the worst case and still fails any wrong gradient (errors of order 1).
FD32_STEP = 1e-2
FD32_RTOL = 1e-2
FD32_COORDS = 4


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    kind: str
    cfg: dict
    shape: tuple            # per-sample input (h, w, c)
    batch: int = 2
    training: bool = False  # the network's mode for forward
    trainable: bool = True
    data: str = "normal"    # "normal" | "kinkfree" (activation layer) | "distinct" (max pool)
    w_scale: float = 1.0    # kernels ~ N(0, w_scale^2 / fan_in)


def C(id, kind, shape, batch=2, **kw):
    opts = {k: kw.pop(k) for k in ("training", "trainable", "data", "w_scale") if k in kw}
    return Case(id, kind, kw, tuple(shape), batch, **opts)


CASES = [
    # ---- conv2d: 'same'/'valid', strides 1 and 2 on odd and even sizes, even kernels
    C("conv_3x3_same", "conv2d", (6, 6, 3), filters=4, kernel_size=3, padding="same"),
    C("conv_3x3_valid_nonsquare_b3", "conv2d", (7, 5, 2), 3, filters=3, kernel_size=3),
    C("conv_3x3_same_s2_odd", "conv2d", (7, 7, 3), filters=4, kernel_size=3, strides=2,
      padding="same"),
    C("conv_3x3_same_s2_even", "conv2d", (8, 8, 3), filters=4, kernel_size=3, strides=2,
      padding="same"),
    C("conv_3x3_valid_s2_odd", "conv2d", (7, 7, 3), filters=4, kernel_size=3, strides=2),
    C("conv_3x3_valid_s2_even_drops_last", "conv2d", (8, 8, 3), filters=4, kernel_size=3,
      strides=2, use_bias=False),
    C("conv_2x2_same_even_kernel", "conv2d", (5, 6, 3), filters=2, kernel_size=2,
      padding="same"),
    C("conv_4x4_same_s2_even_kernel", "conv2d", (7, 8, 2), filters=3, kernel_size=4,
      strides=2, padding="same"),
    C("conv_3x1_strides_2x1", "conv2d", (6, 5, 3), filters=2, kernel_size=(3, 1),
      strides=(2, 1), padding="same"),
    C("conv_1x1_nobias_b1", "conv2d", (5, 5, 8), 1, filters=6, kernel_size=1, use_bias=False),
    C("conv_1x1_on_1x1_preds", "conv2d", (1, 1, 8), 3, filters=10, kernel_size=1),
    C("conv_3x3_relu", "conv2d", (6, 6, 3), filters=4, kernel_size=3, padding="same",
      activation="relu"),
    C("conv_3x3_relu6", "conv2d", (6, 6, 3), filters=4, kernel_size=3, padding="same",
      activation="relu6", w_scale=6.0),
    C("conv_1x1_softmax", "conv2d", (3, 3, 4), filters=5, kernel_size=1, activation="softmax"),
    # ---- depthwise_conv2d
    C("dw_3x3_same", "depthwise_conv2d", (6, 6, 4), kernel_size=3, padding="same"),
    C("dw_3x3_valid_s2_odd", "depthwise_conv2d", (7, 7, 3), kernel_size=3, strides=2),
    C("dw_3x3_valid_s2_even_drops_last", "depthwise_conv2d", (8, 8, 3), 3, kernel_size=3,
      strides=2),
    C("dw_3x3_same_s2_nonsquare", "depthwise_conv2d", (7, 8, 3), kernel_size=3, strides=2,
      padding="same"),
    C("dw_3x3_dm2_bias", "depthwise_conv2d", (5, 5, 3), kernel_size=3, padding="same",
      depth_multiplier=2, use_bias=True),
    C("dw_2x2_same_even_kernel_b1", "depthwise_conv2d", (5, 4, 2), 1, kernel_size=2,
      padding="same"),
    C("dw_1x1_dm3_relu6", "depthwise_conv2d", (3, 3, 2), kernel_size=1, depth_multiplier=3,
      activation="relu6", w_scale=6.0),
    # ---- zero_padding2d
    C("pad_keras_mobilenet", "zero_padding2d", (5, 5, 3), padding=((0, 1), (0, 1))),
    C("pad_int", "zero_padding2d", (3, 4, 2), 1, padding=2),
    C("pad_sym_hw", "zero_padding2d", (3, 4, 2), 3, padding=(1, 2)),
    C("pad_asym", "zero_padding2d", (4, 3, 2), padding=((2, 0), (1, 3))),
    # ---- batch_normalization
    C("bn_train_b3", "batch_normalization", (4, 4, 5), 3, training=True),
    C("bn_train_b1_nonsquare", "batch_normalization", (3, 5, 2), 1, training=True,
      momentum=0.9, epsilon=1e-2),
    C("bn_infer", "batch_normalization", (4, 3, 5), training=False),
    C("bn_frozen_in_training", "batch_normalization", (4, 4, 3), training=True,
      trainable=False),
    # ---- activation
    C("act_linear", "activation", (3, 4, 5), activation="linear"),
    C("act_relu", "activation", (3, 4, 5), 3, activation="relu", data="kinkfree"),
    C("act_relu6", "activation", (3, 4, 5), activation="relu6", data="kinkfree"),
    C("act_softmax_channels", "activation", (2, 3, 7), activation="softmax"),
    C("act_softmax_b1", "activation", (1, 1, 10), 1, activation="softmax"),
    # ---- pooling
    C("gap", "global_average_pooling2d", (5, 4, 6), 3),
    C("gap_1x1", "global_average_pooling2d", (1, 1, 6)),
    C("gmp", "global_max_pooling2d", (5, 4, 6), 3, data="distinct"),
    # ---- dropout (inference: identity; training with rate 0: identity)
    C("dropout_infer", "dropout", (2, 3, 4), rate=0.5),
    C("dropout_rate0_training", "dropout", (2, 3, 4), training=True, rate=0.0),
    # ---- reshape
    C("reshape_to_vector", "reshape", (2, 2, 3), target_shape=(1, 1, 12)),
    C("reshape_spatial", "reshape", (4, 4, 2), 1, target_shape=(2, 8, 2)),
    # ---- dense
    C("dense_vector", "dense", (1, 1, 8), units=5),
    C("dense_flatten_relu_b3", "dense", (3, 2, 4), 3, units=6, activation="relu"),
    C("dense_relu6_nobias", "dense", (1, 1, 6), units=4, activation="relu6", use_bias=False,
      w_scale=6.0),
    # over 2^20 multiply-adds: asl_sgemm shares the product over the OpenMP team, by
    # columns of C (64 rows < 80 units) or by rows (96 rows >= 48 units); the backward
    # products split the other way (dW: 256 rows; dx: 256 columns)
    C("dense_split_by_columns", "dense", (1, 1, 256), 64, units=80),
    C("dense_split_by_rows", "dense", (2, 2, 64), 96, units=48),
    C("dense_softmax_b1", "dense", (2, 2, 3), 1, units=10, activation="softmax"),
]

KINDS = {c.kind for c in CASES}
assert KINDS == set(ref.OPS), f"cases miss layer kinds {set(ref.OPS) - KINDS}"


# ---------------------------------------------------------------- building a case


def _seed(case, attempt=0):
    return zlib.crc32(f"{case.id}/{attempt}".encode())


def _role(name):
    """Parameter role from its name; tolerant of a truncated 'depthwise_kernel' so that one
    naming bug (caught by test_param_names_and_shapes) does not mask every other check."""
    return "depthwise_kernel" if name.startswith("depthwise_k") else name


def _random_params(net, case, rng):
    return [random_param(rng, _role(info["name"]), info["shape"], w_scale=case.w_scale)
            for info in net.params(0)]


def _input(case, rng):
    shape = (case.batch, *case.shape)
    if case.data == "kinkfree":
        # |x| in [0.05, 9] and x not within 0.05 of 6
        mag = rng.uniform(0.05, 8.9, shape)
        mag = np.where(np.abs(mag - 6) < 0.05, mag + 0.1, mag)
        return (mag * rng.choice([-1.0, 1.0], shape)).astype(np.float32)
    if case.data == "distinct":
        # per (sample, channel): a permutation of h*w values spaced 0.1 apart
        n, h, w, c = shape
        vals = np.stack([rng.permutation(h * w) for _ in range(n * c)])  # (n*c, hw)
        vals = vals * 0.1 + rng.uniform(0, 0.01, vals.shape) - 0.05 * h * w
        return vals.reshape(n, c, h, w).transpose(0, 2, 3, 1).astype(np.float32)
    return rng.normal(0.3, 1.0, shape).astype(np.float32)


@dataclasses.dataclass
class Built:
    net: object
    params: list            # float32 arrays as set into the net
    x: np.ndarray           # float32 input
    r: np.ndarray           # float32 dy = projection of the loss L = sum(r * y)
    ref_training: bool      # the mode the layer really runs in


def _net(case):
    net = _core.Net(case.shape)
    assert net.add(case.kind, **case.cfg) == 0
    if not case.trainable:
        net.set_trainable(0, False)
    return net


def build(case) -> Built:
    """One-layer net with random params and input; data redrawn until kink-free."""
    ref_training = case.training and (case.trainable or case.kind != "batch_normalization")
    for attempt in range(200):
        rng = np.random.default_rng(_seed(case, attempt))
        net = _net(case)
        params = _random_params(net, case, rng)
        x = _input(case, rng)
        z = ref.pre_activation(case.kind, x, params, case.cfg, ref_training)
        act = case.cfg.get("activation", "linear")
        if z is not None and act in ("relu", "relu6"):
            dist = np.abs(z) if act == "relu" else np.minimum(np.abs(z), np.abs(z - 6))
            if dist.min() < KINK_MARGIN:
                continue
            if act == "relu6" and case.w_scale > 1 and not (z > 6).any():
                continue   # make sure the upper clip is exercised
        for j, p in enumerate(params):
            net.set_param(0, j, p)
        out = (case.batch, *net.output_shape(0))
        r = rng.normal(0, 1, out).astype(np.float32)
        return Built(net, params, x, r, ref_training)
    raise AssertionError(f"{case.id}: no kink-free data in 200 draws")


def _depths(case, net):
    """Reduction depth K of each output of the case (see the module docstring)."""
    n, (h, w, c) = case.batch, case.shape
    oh, ow, oc = net.output_shape(0)
    kind, cfg = case.kind, case.cfg
    if kind in ("conv2d", "depthwise_conv2d"):
        kh, kw = cfg.get("kernel_size", 1), cfg.get("kernel_size", 1)
        if not np.isscalar(kh):
            kh, kw = kh
        dm = cfg.get("depth_multiplier", 1)
        cin = c if kind == "conv2d" else 1
        cout = oc if kind == "conv2d" else dm
        k_y = kh * kw * cin + 1 + (oc if cfg.get("activation") == "softmax" else 0)
        return {"y": k_y, "dx": kh * kw * cout + (oc if cfg.get("activation") == "softmax" else 0),
                "kernel": n * oh * ow, "depthwise_kernel": n * oh * ow, "bias": n * oh * ow}
    if kind == "dense":
        soft = oc if cfg.get("activation") == "softmax" else 0
        return {"y": h * w * c + 1 + soft, "dx": oc + soft, "kernel": n, "bias": n}
    if kind == "batch_normalization":
        m = n * h * w
        return {"y": m, "dx": m, "gamma": m, "beta": m}
    if kind == "global_average_pooling2d":
        return {"y": h * w, "dx": 1}
    if kind == "activation" and cfg.get("activation") == "softmax":
        return {"y": c, "dx": c}
    return {"y": 1, "dx": 1}


def _tol(k):
    return SAFETY * max(k, K_MIN) * EPS32


def _rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.abs(want).max()
    return np.abs(got - want).max() / (scale if scale > 0 else 1.0)


def _ref_run(case, b: Built, params=None, x=None):
    params = b.params if params is None else params
    x = b.x if x is None else x
    return ref.forward(case.kind, x, params, case.cfg, b.ref_training)


def _weight_indices(net):
    return [j for j, info in enumerate(net.params(0)) if info["is_weight"]]


ids = [c.id for c in CASES]


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize("kind, shape, cfg, want", [
    ("conv2d", (5, 5, 3), dict(filters=4, kernel_size=(3, 2)),
     [("kernel", (3, 2, 3, 4), True), ("bias", (4,), True)]),
    ("conv2d", (5, 5, 3), dict(filters=4, use_bias=False), [("kernel", (1, 1, 3, 4), True)]),
    ("depthwise_conv2d", (5, 5, 3), dict(kernel_size=3, depth_multiplier=2),   # Keras: bias
     [("depthwise_kernel", (3, 3, 3, 2), True), ("bias", (6,), True)]),
    ("depthwise_conv2d", (5, 5, 3), dict(kernel_size=3, use_bias=False),
     [("depthwise_kernel", (3, 3, 3, 1), True)]),
    ("batch_normalization", (5, 5, 3), {},
     [("gamma", (3,), True), ("beta", (3,), True), ("moving_mean", (3,), False),
      ("moving_variance", (3,), False)]),
    ("dense", (2, 2, 3), dict(units=5), [("kernel", (12, 5), True), ("bias", (5,), True)]),
    ("zero_padding2d", (5, 5, 3), dict(padding=1), []),
    ("activation", (5, 5, 3), dict(activation="relu"), []),
    ("global_average_pooling2d", (5, 5, 3), {}, []),
    ("global_max_pooling2d", (5, 5, 3), {}, []),
    ("dropout", (5, 5, 3), dict(rate=0.2), []),
    ("reshape", (5, 5, 3), dict(target_shape=(1, 1, 75)), []),
], ids=lambda v: v if isinstance(v, str) else None)
def test_param_names_and_shapes(kind, shape, cfg, want):
    """Keras names, layouts and order; weights vs statistics; Keras defaults."""
    net = _core.Net(shape)
    net.add(kind, **cfg)
    got = [(p["name"], tuple(p["shape"]), p["is_weight"]) for p in net.params(0)]
    assert got == want
    if kind == "batch_normalization":   # gamma = 1, beta = 0, mean = 0, variance = 1
        for j, v in enumerate((1, 0, 0, 1)):
            assert np.array_equal(net.get_param(0, j), np.full(3, v, np.float32))


# ---------------------------------------------------------------- (a) forward


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_forward_matches_numpy(case):
    b = build(case)
    y = b.net.forward(b.x, training=case.training)
    y_ref, cache = _ref_run(case, b)
    assert y.dtype == np.float32 and y.shape == y_ref.shape
    k = _depths(case, b.net)["y"]
    err = _rel_err(y, y_ref)
    assert err <= _tol(k), f"{case.id}: forward rel err {err:.3g} > {_tol(k):.3g} (K={k})"
    if case.kind == "batch_normalization":
        # moving statistics: Keras update in training mode, untouched otherwise
        mm, mv = cache["new_moving"]
        m = case.batch * case.shape[0] * case.shape[1]
        for j, want in ((2, mm), (3, mv)):
            err = _rel_err(b.net.get_param(0, j), want)
            assert err <= _tol(m), f"{case.id}: moving stat {j} rel err {err:.3g}"
        if not b.ref_training:
            assert np.array_equal(b.net.get_param(0, 2), b.params[2])
            assert np.array_equal(b.net.get_param(0, 3), b.params[3])


# ---------------------------------------------------------------- (b) backward


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_backward_matches_numpy(case):
    b = build(case)
    b.net.forward(b.x, training=case.training)
    dx = b.net.backward(b.r, need_dx=True)
    _, cache = _ref_run(case, b)
    dx_ref, grads_ref = ref.backward(case.kind, b.r, cache)
    depths = _depths(case, b.net)
    err = _rel_err(dx, dx_ref)
    assert err <= _tol(depths["dx"]), f"{case.id}: dx rel err {err:.3g}"
    for j, info in enumerate(b.net.params(0)):
        g = b.net.grad(0, j)
        if not info["is_weight"] or not case.trainable:
            assert g is None, f"{case.id}: {info['name']} should have no gradient"
            continue
        assert g is not None, f"{case.id}: no gradient for {info['name']}"
        k = depths[_role(info["name"])]
        err = _rel_err(g, grads_ref[j])
        assert err <= _tol(k), f"{case.id}: d{info['name']} rel err {err:.3g} > {_tol(k):.3g}"


# ---------------------------------------------------------------- (c) twin vs float64 FD


def _coords(shape, count, rng):
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= count else rng.choice(size, count, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_numpy_backward_matches_finite_differences(case):
    b = build(case)
    x = b.x.astype(np.float64)
    params = [p.astype(np.float64) for p in b.params]
    r = b.r.astype(np.float64)

    def loss(x_, params_):
        return float((ref.forward(case.kind, x_, params_, case.cfg, b.ref_training)[0] * r).sum())

    _, cache = ref.forward(case.kind, x, params, case.cfg, b.ref_training)
    dx, grads = ref.backward(case.kind, r, cache)
    rng = np.random.default_rng(_seed(case, 1000))
    tensors = [("x", x, dx, None)] + [(f"param {j}", params[j], grads[j], j)
                                      for j in _weight_indices(b.net)]
    for name, t, g, j in tensors:
        scale = max(np.abs(g).max(), 1e-12)
        worst = 0.0
        for idx in _coords(t.shape, FD64_COORDS, rng):
            tp, tm = t.copy(), t.copy()
            tp[idx] += FD64_STEP
            tm[idx] -= FD64_STEP
            if j is None:
                fd = (loss(tp, params) - loss(tm, params)) / (2 * FD64_STEP)
            else:
                pp, pm = list(params), list(params)
                pp[j], pm[j] = tp, tm
                fd = (loss(x, pp) - loss(x, pm)) / (2 * FD64_STEP)
            worst = max(worst, abs(fd - g[idx]) / scale)
        assert worst <= FD64_RTOL, f"{case.id}: {name}: analytic vs FD rel err {worst:.3g}"


# ---------------------------------------------------------------- (d) C float32 FD


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_c_gradients_match_float32_finite_differences(case):
    b = build(case)
    net = b.net
    r64 = b.r.astype(np.float64)
    net.forward(b.x, training=case.training)
    dx = net.backward(b.r, need_dx=True)

    def loss(x_):
        return float((net.forward(x_, training=case.training).astype(np.float64) * r64).sum())

    # the twin screens coordinates: a step that would cross a kink of the float64 function
    # (its FD at the same step disagrees with its analytic gradient) is not used
    x64 = b.x.astype(np.float64)
    _, cache = ref.forward(case.kind, x64, b.params, case.cfg, b.ref_training)
    dx_ref, grads_ref = ref.backward(case.kind, r64, cache)

    def ref_loss(x_, params_):
        return float((ref.forward(case.kind, x_, params_, case.cfg, b.ref_training)[0]
                      * r64).sum())

    rng = np.random.default_rng(_seed(case, 2000))
    weights = _weight_indices(net) if case.trainable else []
    grads_c = {j: net.grad(0, j) for j in weights}
    for j in [None] + weights:
        t = b.x if j is None else b.params[j]
        g_c = dx if j is None else grads_c[j]
        g_ref = dx_ref if j is None else grads_ref[j]
        scale = max(np.abs(g_c).max(), 1e-12)
        checked = 0
        for idx in _coords(t.shape, 4 * FD32_COORDS, rng):
            h = FD32_STEP * max(1.0, abs(float(t[idx])))
            tp, tm = t.copy(), t.copy()
            tp[idx] += h
            tm[idx] -= h
            step = float(tp[idx]) - float(tm[idx])       # the float32-rounded step
            # screening with the float64 twin at the same points
            if j is None:
                fd_ref = (ref_loss(tp, b.params) - ref_loss(tm, b.params)) / step
            else:
                pp, pm = list(b.params), list(b.params)
                pp[j], pm[j] = tp, tm
                fd_ref = (ref_loss(b.x, pp) - ref_loss(b.x, pm)) / step
            # smooth and kink-free, the twin's FD error at this step is h^2 |f'''| / 6 <~ 2e-5
            # of the scale; a step across a kink is off by O(1): 1e-3 separates the two
            if abs(fd_ref - g_ref[idx]) > 1e-3 * max(np.abs(g_ref).max(), 1e-12):
                continue
            if j is None:
                fd = (loss(tp) - loss(tm)) / step
            else:
                net.set_param(0, j, tp)
                lp = loss(b.x)
                net.set_param(0, j, tm)
                lm = loss(b.x)
                net.set_param(0, j, t)
                fd = (lp - lm) / step
            err = abs(fd - float(g_c[idx])) / scale
            assert err <= FD32_RTOL, (
                f"{case.id}: {'x' if j is None else net.params(0)[j]['name']}{idx}: "
                f"C grad {float(g_c[idx]):.6g} vs float32 FD {fd:.6g} (rel {err:.3g})")
            checked += 1
            if checked == FD32_COORDS:
                break
        assert checked > 0, f"{case.id}: every coordinate was screened out"


# ---------------------------------------------------------------- dropout in training


def test_dropout_training_mask_scale_and_backward():
    rate, shape = 0.3, (2, 8, 8, 16)
    x = np.random.default_rng(0).uniform(1, 2, shape).astype(np.float32)   # no zeros
    net = _core.Net(shape[1:])
    net.add("dropout", rate=rate, seed=1234)
    y = net.forward(x, training=True)
    kept = y != 0
    # P(keep) = 0.7 over 2048 draws: 5 standard deviations = 5 * sqrt(.21 / 2048) ~ 0.05
    assert abs(kept.mean() - (1 - rate)) < 0.05
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=4 * EPS32)
    dy = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    dx = net.backward(dy, need_dx=True)
    np.testing.assert_allclose(dx, np.where(kept, dy / (1 - rate), 0), rtol=4 * EPS32)
    # the same seed gives the same mask; inference is the identity
    other = _core.Net(shape[1:])
    other.add("dropout", rate=rate, seed=1234)
    assert np.array_equal(other.forward(x, training=True) != 0, kept)
    assert np.array_equal(net.forward(x, training=False), x)


# ---------------------------------------------------------------- error paths


def _small_net():
    net = _core.Net((5, 5, 3))
    net.add("conv2d", filters=2, kernel_size=3, padding="same")
    return net


@pytest.mark.parametrize("bad", [
    np.zeros((2, 5, 4, 3), np.float32),        # wrong width
    np.zeros((2, 5, 5, 4), np.float32),        # wrong channels
    np.zeros((5, 5, 3), np.float32),           # missing batch axis
    np.zeros((0, 5, 5, 3), np.float32),        # empty batch
    np.zeros((2, 75), np.float32),             # flattened
], ids=["width", "channels", "no-batch", "empty", "flat"])
def test_wrong_input_shape_raises(bad):
    net = _small_net()
    expected = r"batch size must be in \[1" if len(bad) == 0 else r"\(batch, 5, 5, 3\)"
    with pytest.raises(ValueError, match=expected):
        net.forward(bad)


@pytest.mark.parametrize("bad", ["hello", np.full((1, 5, 5, 3), "a"), None, [[1, "x"]]],
                         ids=["str", "str-array", "None", "ragged-mixed"])
def test_non_numeric_input_raises(bad):
    net = _small_net()
    with pytest.raises((ValueError, TypeError)):
        net.forward(bad)


def test_other_dtypes_are_converted():
    net = _small_net()
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 3))
    y64 = net.forward(x)                               # float64 is cast to float32
    assert np.array_equal(y64, net.forward(x.astype(np.float32)))
    assert net.forward(np.ones((1, 5, 5, 3), np.int64)).dtype == np.float32
    assert net.forward(np.asfortranarray(x)).shape == (2, 5, 5, 2)   # non-contiguous


def test_wrong_dy_shape_raises():
    net = _small_net()
    net.forward(np.zeros((2, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="dy"):
        net.backward(np.zeros((2, 5, 5, 3), np.float32))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_nan_propagates_like_numpy(case):
    """A NaN in the input gives NaN exactly where the float64 twin (NumPy, which like
    TF/Keras propagates NaN through max/min/relu) gives NaN; backward does not crash."""
    b = build(case)
    x = b.x.copy()
    x[(0, *(s // 2 for s in case.shape))] = np.nan
    y = b.net.forward(x, training=case.training)
    y_ref, _ = _ref_run(case, b, x=x)
    assert np.isnan(y_ref).any()
    assert np.array_equal(np.isnan(y), np.isnan(y_ref)), (
        f"{case.id}: NaN at {np.isnan(y).sum()} outputs, twin at {np.isnan(y_ref).sum()}")
    assert b.net.backward(b.r, need_dx=True).shape == x.shape


def test_nan_input_through_a_chain_without_crash():
    net = _core.Net((4, 4, 2))
    net.add("conv2d", filters=3, kernel_size=3, padding="same")
    net.add("batch_normalization")
    net.add("global_max_pooling2d")
    net.add("dense", units=4, activation="softmax")
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype(np.float32)
    x[0, 1, 1, 0] = np.nan
    y = net.forward(x, training=False)
    assert np.isnan(y[0]).all()        # sample 0 is poisoned (NaN reaches every class) ...
    assert np.isfinite(y[1]).all()     # ... sample 1 is not (inference: no batch coupling)
    dx = net.backward(np.ones_like(y), need_dx=True)
    assert dx.shape == x.shape        # runs; values may be NaN
    y = net.forward(x, training=True)  # batch statistics couple the samples
    assert np.isnan(y).all()


def test_backward_before_forward_raises():
    net = _small_net()
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.zeros((2, 5, 5, 2), np.float32))
    # ... and after a change of trainable flags (the saved state is stale)
    net.forward(np.zeros((2, 5, 5, 3), np.float32), training=True)
    net.set_trainable(0, False)
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.zeros((2, 5, 5, 2), np.float32), need_dx=True)


def test_empty_net_raises():
    net = _core.Net((2, 2, 1))
    with pytest.raises(RuntimeError, match="no layers"):
        net.forward(np.zeros((1, 2, 2, 1), np.float32))


@pytest.mark.parametrize("shape, kind, cfg, match", [
    ((2, 2, 3), "conv2d", dict(filters=2, kernel_size=3), r"smaller than kernel.*'valid'"),
    ((4, 2, 3), "depthwise_conv2d", dict(kernel_size=3), r"smaller than kernel"),
    ((4, 4, 3), "reshape", dict(target_shape=(1, 1, 47)), r"cannot reshape.*48.*47"),
    ((4, 4, 3), "reshape", dict(target_shape=(0, 1, 48)), r"positive"),
    ((4, 4, 3), "dropout", dict(rate=1.0), r"rate must be in \[0, 1\)"),
    ((4, 4, 3), "dropout", dict(rate=-0.1), r"rate"),
    ((4, 4, 3), "activation", dict(activation="gelu"), r"unknown activation 'gelu'"),
    ((4, 4, 3), "dense", dict(units=3, activation="elu"), r"unknown activation 'elu'"),
    ((4, 4, 3), "conv2d", dict(filters=0, kernel_size=1), r"filters must be >= 1"),
    ((4, 4, 3), "conv2d", dict(filters=2, kernel_size=3, padding="full"), r"'valid' or 'same'"),
    ((4, 4, 3), "conv2d", dict(filters=2, kernel_size=1, strides=0), r"strides"),
    ((4, 4, 3), "depthwise_conv2d", dict(depth_multiplier=0), r"depth_multiplier"),
    ((4, 4, 3), "dense", dict(units=0), r"units must be >= 1"),
    ((4, 4, 3), "zero_padding2d", dict(padding=-1), r"negative padding"),
    ((4, 4, 3), "batch_normalization", dict(epsilon=0.0), r"epsilon"),
    ((4, 4, 3), "maxout", {}, r"unknown layer kind 'maxout'"),
], ids=["conv-kernel>input", "dw-kernel>input", "reshape-size", "reshape-zero",
        "dropout-1", "dropout-neg", "act-unknown", "dense-act-unknown", "conv-filters0",
        "conv-padding", "conv-stride0", "dw-dm0", "dense-units0", "pad-negative", "bn-eps0",
        "unknown-kind"])
def test_bad_layer_config_raises_value_error(shape, kind, cfg, match):
    net = _core.Net(shape)
    with pytest.raises(ValueError, match=match):
        net.add(kind, **cfg)
    assert net.num_layers == 0           # a failed add leaves the net unchanged and usable
    net.add("activation", activation="relu")
    assert net.forward(np.ones((1, *shape), np.float32)).shape == (1, *shape)


def test_unknown_keyword_raises_type_error():
    net = _core.Net((4, 4, 3))
    with pytest.raises(TypeError, match="kernal_size"):
        net.add("conv2d", filters=2, kernal_size=3)


def test_index_errors():
    net = _small_net()
    net.add("activation", activation="relu")
    assert len(net.params(-2)) == 2 and net.params(-1) == []
    for call in (lambda: net.params(2), lambda: net.params(-3), lambda: net.get_param(2, 0),
                 lambda: net.get_param(0, 2), lambda: net.get_param(1, 0),
                 lambda: net.get_param(0, -1), lambda: net.set_param(0, 5, np.zeros(2)),
                 lambda: net.grad(0, 2), lambda: net.slot(0, 3, 0),
                 lambda: net.set_trainable(7, False), lambda: net.layer_calls(2),
                 lambda: net.output_shape(5)):
        with pytest.raises(IndexError):
            call()


def test_set_param_wrong_shape_raises():
    net = _small_net()
    with pytest.raises(ValueError, match="kernel"):
        net.set_param(0, 0, np.zeros((3, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="bias"):
        net.set_param(0, 1, np.zeros(3, np.float32))
    net.set_param(0, 1, np.array([1.5, -2.0]))          # float64 is converted
    assert np.array_equal(net.get_param(0, 1), np.array([1.5, -2.0], np.float32))
