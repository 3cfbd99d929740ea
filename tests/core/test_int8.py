"""The int8 compute type (``Net.set_compute_dtype("int8")``, ``Net.calibrate``,
``Net.ranges``; csrc/quantize.c, csrc/network.c) against a NumPy emulation of what it
promises (tests/reference/int8.py): per-output-channel int8 weights of the folded group,
per-tensor u8/s8 activations from calibrated ranges, exact integer accumulation, float32
rescaling, bias and activation, requantization when a group only feeds the next one.

Tolerances.  The emulation quantizes the same float32 values with the same formula as the
core, and integer accumulation is exact in both, so a single group with a float32 output
differs only by float32 rescaling: ``sx * sw[o] * acc + b`` evaluated in float32 (a few
ulps, 2^-22 relative to the magnitudes) - RTOL = 1e-5 of the largest output.  Where a
group's output is requantized for the next group, a value within that float32 error of a
rounding boundary (x.5 LSB) may round to the other integer in the core than in the
emulation: one LSB (sy) on that element, which the next group multiplies by one weight
(at most max|w'| of its folded kernel).  Such a flip needs |y / sy - (k + 0.5)| < ~1e-6:
with a few thousand requantized values per chain, expected flips ~1e-2, so the chains are
held to ``flips * sy * max|w'|`` with flips = 2 at most, far below a wrong scale or a
skipped requantization (tens of LSBs over the output).  Without VNNI (ONEDNN_MAX_CPU_ISA=
AVX2) the core keeps u8 activations in [0, 127] (oneDNN's u8 x s8 pair sums are 16-bit
there), and for an s8 source oneDNN halves the weights (``scale_adjust``), which rounds
each weight by up to half an LSB: the bound then adds ``0.5 * sx * sw[o] * sum |xq|`` over
each output's receptive field (``_emulate``'s adjust).
int8 moves outputs by ~1e-2 of their range from float32 (asserted, so a float32 run
cannot pass).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.test_fusion import CHAIN, _pair, _reference, _rel
from tests.reference import int8 as q8
from tests.reference import numpy_ops as ref
from tests.reference.bfloat16 import fold

_core = pytest.importorskip("aslnet._core")

RTOL = 1e-5
INT8_MOVES = 1e-3   # int8 vs float32 differ by more than this (measured ~1e-2)
U8_MAX = 255 if _core.int8_vnni() else 127


def _groups(layers, stop):
    """Yield (i, k, end, act) for each group [i, end) of layers[:stop]: conv at k."""
    i = 0
    while i < stop:
        k = i + 1 if layers[i][0] == "zero_padding2d" else i
        if k + 1 < stop and layers[k][0] in ("conv2d", "depthwise_conv2d") \
                and layers[k + 1][0] == "batch_normalization":
            end, act = k + 2, None
            if end < stop and layers[end][0] == "activation" \
                    and layers[end][1]["activation"] in ("relu", "relu6"):
                act, end = layers[end][1]["activation"], end + 1
            yield i, k, end, act
            i = end
        else:
            yield i, None, i + 1, None
            i += 1


def _emulate(layers, params, ranges, x, stop=None):
    """(output, adjust) of the int8 path on layers [(kind, cfg)] with params {(i, j):
    array} and the core's ranges.  adjust: the largest error oneDNN's scale_adjust may add
    to one group's output (used only without VNNI, see the module docstring)."""
    stop = len(layers) if stop is None else stop
    h, q, adjust = np.asarray(x, np.float64), None, 0.0   # q: (ints, scale) or None
    groups = list(_groups(layers, stop))
    for n, (i, k, end, act) in enumerate(groups):
        if k is None:
            if q is not None:
                h, q = q[0] * q[1], None
            ps = [params[i, j] for j in range(4) if (i, j) in params]
            h, _ = ref.forward(layers[i][0], h, ps, layers[i][1], training=False)
            continue
        t, sx = q8.qparams(*ranges[i], U8_MAX)
        xq = q[0] if q is not None else q8.quantize(h, t, sx)
        if k > i:
            xq, _ = ref.forward("zero_padding2d", xq, [], layers[i][1])
        kind, ccfg = layers[k][0], dict(layers[k][1], use_bias=True)
        bias = params.get((k, 1)) if layers[k][1].get("use_bias", True) else None
        w, b = fold(params[k, 0], *[params[k + 1, j] for j in range(4)], bias=bias)
        wq, sw = q8.quantize_weights(w, len(b))

        def conv(a, wk, kind=kind, cfg=ccfg, oc=len(b)):
            return ref.forward(kind, a, [wk, np.zeros(oc)], cfg)[0]
        adjust = max(adjust, np.max(0.5 * sx * sw * conv(np.abs(xq), np.ones_like(wq))))
        nxt = groups[n + 1] if n + 1 < len(groups) else None
        if nxt is not None and nxt[1] is not None and nxt[0] == end:
            out = q8.qparams(*ranges[end], U8_MAX)
            q = q8.group(xq, sx, wq, sw, b, conv, act, out), np.float64(out[1])
        else:
            h, q = q8.group(xq, sx, wq, sw, b, conv, act), None
    if q is not None:
        h = q[0] * q[1]
    return h, adjust


def _net(layers, shape, seed):
    rng = np.random.default_rng(seed)
    net = _core.Net(shape)
    params = {}
    for i, (k, c) in enumerate(layers):
        net.add(k, **c)
        for j, info in enumerate(net.params(i)):
            v = (rng.uniform(0.5, 2.0, info["shape"]) if k == "batch_normalization" and j in (0, 3)
                 else rng.normal(0, 0.5, info["shape"])).astype(np.float32)
            net.set_param(i, j, v)
            params[i, j] = v
    return net, params, rng


@pytest.mark.parametrize("shape, pad, kind, cfg", [
    ((8, 7, 4), None, "conv2d", dict(filters=6, kernel_size=3, strides=2, padding="same")),
    ((7, 8, 4), None, "depthwise_conv2d", dict(kernel_size=3, strides=2, padding="same")),
    ((6, 7, 3), ((1, 2), (0, 3)), "conv2d", dict(filters=4, kernel_size=3, padding="same")),
    ((6, 7, 3), ((2, 0), (1, 1)), "depthwise_conv2d", dict(kernel_size=5, strides=2,
                                                            depth_multiplier=3)),
    ((5, 5, 16), None, "conv2d", dict(filters=32, kernel_size=1)),
])
@pytest.mark.parametrize("act", ["relu6", None])
@pytest.mark.parametrize("signed", [True, False])
def test_one_group_is_the_int8_arithmetic(shape, pad, kind, cfg, act, signed):
    """A single group on a float32 input (quantized by the core: s8, or u8 for a
    non-negative input) with a float32 output: the emulation's, up to float32 rescaling."""
    layers = ([("zero_padding2d", dict(padding=pad))] if pad else []) + [
        (kind, dict(cfg, use_bias=True)), ("batch_normalization", {})] + (
        [("activation", dict(activation=act))] if act else [])
    net, params, rng = _net(layers, shape, 3)
    x = rng.normal(0, 2, (3, *shape)).astype(np.float32)
    if not signed:
        x = np.abs(x)
    y32 = net.forward(x)
    net.calibrate(x, reset=True)
    net.set_compute_dtype("int8")
    y8 = net.forward(x)
    want, adjust = _emulate(layers, params, net.ranges(), x)
    assert y8.shape == want.shape
    assert np.abs(y8 - want).max() <= RTOL * np.abs(want).max() + _vnni_slack(adjust)
    assert _rel(y32, want) > INT8_MOVES
    net.set_compute_dtype("float32")
    assert np.array_equal(net.forward(x), y32)      # back to float32, bit for bit


@pytest.mark.parametrize("kind, cfg", [
    ("conv2d", dict(filters=6, kernel_size=3, padding="same")),
    ("depthwise_conv2d", dict(kernel_size=3, padding="same")),
])
def test_weights_already_on_a_grid_stay_on_it(kind, cfg):
    """A kernel whose folded weights lie on a grid coarser than max|w| / 127 (a TFLite
    file's uint8 weights: integers up to 90 times a step, times the batch norm's scale per
    channel) is quantized onto that grid exactly, not rounded a second time: the twin's
    dequantized weights are the folded ones to float32 rounding, the core computes what
    the twin does, and the old rule (max|w| / 127) would have moved them by up to half a
    step."""
    layers = [(kind, dict(cfg, use_bias=False)), ("batch_normalization", {}),
              ("activation", dict(activation="relu6"))]
    net, params, rng = _net(layers, (6, 6, 4), 11)
    w = (rng.integers(-90, 91, params[0, 0].shape) * 0.0125).astype(np.float32)
    w.reshape(-1, w.shape[-1] if kind == "conv2d" else w.shape[2])[0] = 90 * 0.0125
    net.set_param(0, 0, w)
    params[0, 0] = w
    folded, b = fold(w, *[params[1, j] for j in range(4)], bias=None)
    wq, sw = q8.quantize_weights(folded, len(b))
    flat = folded.reshape(-1, len(b))
    assert np.abs(wq.reshape(flat.shape) * sw - flat).max() <= 1e-6 * np.abs(flat).max()
    old = np.abs(flat).max(0) / np.float32(127)
    assert np.abs(np.rint(flat / old) * old - flat).max() > 0.2 * old.max()
    x = np.abs(rng.normal(0, 1, (2, 6, 6, 4))).astype(np.float32)
    net.calibrate(x, reset=True)
    net.set_compute_dtype("int8")
    want, _ = _emulate(layers, params, net.ranges(), x)
    assert np.abs(net.forward(x) - want).max() <= RTOL * np.abs(want).max()


def test_input_quantization_rounds_ties_to_even_and_saturates():
    """The core's quantization of a float32 input (quantize.c's quantize_input) is
    round-half-to-even then saturate, as the emulation's np.rint and clip: every input lies
    exactly halfway between two integers of the scale (sx = 1/4, a power of two, so x / sx
    is exact), and a second image at three times the calibrated range saturates.  u8 (a
    non-negative input): oneDNN keeps u8 weights exact, so one flipped tie (a whole LSB
    times a weight) stands far above RTOL."""
    layers = [("depthwise_conv2d", dict(kernel_size=1, use_bias=True)),
              ("batch_normalization", {})]
    shape = (4, 4, 8)
    net, params, _ = _net(layers, shape, 7)
    k = np.arange(int(np.prod(shape))) % U8_MAX
    x = ((k + 0.5) * 0.25).astype(np.float32).reshape(1, *shape)
    x.flat[-1] = U8_MAX * 0.25                      # the range's top: sx = 1/4 exactly
    net.calibrate(x, reset=True)
    assert net.ranges()[0, 1] == U8_MAX * 0.25
    net.set_compute_dtype("int8")
    xs = np.concatenate([x, 3 * x])
    y8 = net.forward(xs)
    want, _ = _emulate(layers, params, net.ranges(), xs)
    assert np.abs(y8 - want).max() <= RTOL * np.abs(want).max()


def _vnni_slack(adjust):
    """The scale_adjust bound where oneDNN may use it (no VNNI), else 0."""
    return 0.0 if _core.int8_vnni() else adjust


def _chain(seed):
    net, _, params, x = _pair(seed)
    return net, params, x


@pytest.mark.parametrize("stop", [3, 4, 7, 10, len(CHAIN)])
def test_chain_requantizes_between_groups(stop):
    """Three groups, the first two passing u8 to the next; the last group's output (before
    pooling) or the layer range's is float32; pooling, dropout and dense run float32."""
    net, params, x = _chain(20)
    y32 = net.forward(x, stop=stop)
    net.calibrate(x, reset=True)
    net.set_compute_dtype("int8")
    y8 = net.forward(x, stop=stop)
    ranges = net.ranges()
    want, adjust = _emulate(CHAIN, params, ranges, x, stop)
    # one flipped LSB of a requantized value, times the largest folded weight after it
    flip = 0.0
    for i, k, end, _ in _groups(CHAIN, stop):
        if k is not None and i > 0:
            w, _ = fold(params[k, 0], *[params[k + 1, j] for j in range(4)],
                        bias=params.get((k, 1)))
            flip = max(flip, q8.qparams(*ranges[i], U8_MAX)[1] * np.abs(w).max())
    assert np.abs(y8 - want).max() <= RTOL * np.abs(want).max() + 2 * flip + _vnni_slack(
        adjust) * 4
    assert _rel(y32, want) > INT8_MOVES


def test_calibration_records_each_layers_float32_range():
    """ranges()[i] is (min, max) of layer i's input over every calibrated batch (reset
    starts over); the last row is the output's: the float32 reference's values."""
    net, params, x = _chain(21)
    assert np.all(np.isinf(net.ranges()))          # nothing recorded yet
    net.calibrate(x[:2], reset=True)
    net.calibrate(x[2:])
    got = net.ranges()
    assert got.shape == (len(CHAIN) + 1, 2)
    for i in range(len(CHAIN) + 1):
        h = x.astype(np.float64) if i == 0 else _reference(params, x, i)
        np.testing.assert_allclose(got[i], [h.min(), h.max()], rtol=1e-4, atol=1e-6)
    net.calibrate(x[:1] * 0.5, reset=True)
    np.testing.assert_array_equal(net.ranges()[0], [x[0].min() * 0.5, x[0].max() * 0.5])


def test_uncalibrated_int8_runs_float32():
    """Without ranges no group can be quantized: the int8 net computes the float32 result
    bit for bit."""
    net, _, x = _chain(22)
    y32 = net.forward(x)
    net.set_compute_dtype("int8")
    assert np.array_equal(net.forward(x), y32)


def test_ranges_round_trip_and_shape_check():
    net, _, x = _chain(23)
    net.calibrate(x, reset=True)
    r = net.ranges()
    other, _, _ = _chain(23)
    other.ranges(r)
    assert np.array_equal(other.ranges(), r)
    for n in (net, other):
        n.set_compute_dtype("int8")
    assert np.array_equal(net.forward(x), other.forward(x))
    with pytest.raises(ValueError, match=r"shape \(14, 2\)"):
        other.ranges(r[:-1])


def test_group_that_cannot_run_int8_reads_its_input_dequantized():
    """The middle group's folded parameters are not finite (gamma = inf): it runs unfused
    in float32 after a group that wrote u8 for it, so its input is dequantized (reading
    u8 bytes as float32 would be garbage); the result stays within int8 error of float32.
    (Channel 3, 0 or 6 after relu6 depending on the sign of an input difference that int8
    error may flip, gets zero weights in the next conv.)"""
    net, params, x = _chain(24)
    gamma = params[5, 0].copy()
    gamma[3] = np.inf
    net.set_param(5, 0, gamma)
    kernel = params[7, 0].copy()
    kernel[:, :, 3, :] = 0
    net.set_param(7, 0, kernel)
    y32 = net.forward(x, stop=10)
    net.calibrate(x, reset=True)
    net.set_compute_dtype("int8")
    y8 = net.forward(x, stop=10)
    assert np.isfinite(y32).all() and np.isfinite(y8).all()
    assert INT8_MOVES < _rel(y8, y32) < 0.1


def test_training_forward_stays_float32():
    """int8 is an inference path: a train step under 'int8' is the float32 one."""
    y = np.eye(5, dtype=np.float32)[[0, 1, 2, 3]].reshape(4, 1, 1, 5)
    out = []
    for dtype in ("float32", "int8"):
        net, _, x = _chain(25)
        net.calibrate(x, reset=True)
        net.set_compute_dtype(dtype)
        net.set_optimizer("sgd", learning_rate=0.1)
        out.append(net.train_step(x, y))
    assert out[0][0] == out[1][0] and np.array_equal(out[0][1], out[1][1])
