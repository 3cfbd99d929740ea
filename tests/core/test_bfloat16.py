"""The bfloat16 compute type (``Net.set_compute_dtype``; csrc/fusion.c, csrc/conv2d.c,
csrc/network.c), against a NumPy emulation of what it promises
(tests/reference/bfloat16.py): each fused group computes
``act(bf16(x) * bf16(w') + b')`` with the batch norm folded in float32, accumulating in
float32; a group's output is stored as bfloat16 when it only feeds the next group.  An
unfused convolution (one that trains) rounds x, w and its output gradient to bfloat16 and
gives float32 outputs and gradients.

Tolerances.  The emulation rounds the same values to bfloat16 as the core, so what is
left is float32 accumulation (~K * 2^-24 relative to the magnitudes summed, K <= 75
here): RTOL = 1e-4 relative to the largest output, as in test_fusion.py.  Where a
group's output is rounded to bfloat16 for the next group, a value within that
accumulation error of a rounding boundary may round to the other neighbour in the core
than in the emulation: one bfloat16 ulp (2^-8 relative) on that element, diluted in the
next group's sums (~2^-8 / K of the output).  Such a flip is rare (the accumulation error
is ~1e-7 of a value, a bfloat16 ulp ~4e-3: ~1 in 40,000 values; these chains have 2,400
rounded values) and measured differences here are 2e-8..1e-7, so CHAIN_RTOL = 2e-4 allows
a flip or two, yet fails if a group skipped a rounding (~1e-3).  bfloat16 itself moves
outputs by ~1e-3..1e-2 from float32 (asserted, so that a float32 run cannot pass for
bfloat16).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.test_fusion import CHAIN, _pair, _rel
from tests.reference import numpy_ops as ref
from tests.reference.bfloat16 import fold, to_bf16

_core = pytest.importorskip("aslnet._core")

pytestmark = pytest.mark.skipif(not _core.bfloat16_supported(),
                                reason="no native bfloat16: the CPU lacks AVX512_BF16, or "
                                "ONEDNN_MAX_CPU_ISA hides it")

RTOL = 1e-4
CHAIN_RTOL = 2e-4
BF16_MOVES = 1e-3     # bfloat16 vs float32 differ by more than this (measured ~1e-2)


def _emulate(layers, params, x, stop=None):
    """The bfloat16 policy on CHAIN-like layers [(kind, cfg)] with params {(i, j): array}:
    conv groups as documented above, everything else in float64."""
    stop = len(layers) if stop is None else stop
    h, i = np.asarray(x, np.float64), 0
    while i < stop:
        kind, cfg = layers[i]
        k = i + 1 if kind == "zero_padding2d" else i
        group = (k + 1 < stop and layers[k][0] in ("conv2d", "depthwise_conv2d")
                 and layers[k + 1][0] == "batch_normalization")
        if not group:
            ps = [params[i, j] for j in range(4) if (i, j) in params]
            h, _ = ref.forward(kind, h, ps, cfg, training=False)
            i += 1
            continue
        if k > i:
            h, _ = ref.forward("zero_padding2d", h, [], cfg)
        ccfg = layers[k][1]
        bias = params.get((k, 1)) if ccfg.get("use_bias", True) else None
        w, b = fold(params[k, 0], *[params[k + 1, j] for j in range(4)], bias=bias)
        h, _ = ref.forward(layers[k][0], to_bf16(h), [to_bf16(w), b],
                           dict(ccfg, use_bias=True), training=False)
        i = k + 2
        if i < stop and layers[i][0] == "activation":
            h, _ = ref.forward("activation", h, [], layers[i][1])
            i += 1
        nxt = i + 1 if i < stop and layers[i][0] == "zero_padding2d" else i
        if nxt + 1 < stop and layers[nxt][0] in ("conv2d", "depthwise_conv2d") \
                and layers[nxt + 1][0] == "batch_normalization":
            h = to_bf16(h)          # stored as bfloat16 for the next group
    return h


@pytest.mark.parametrize("shape, pad, kind, cfg", [
    ((8, 7, 4), None, "conv2d", dict(filters=6, kernel_size=3, strides=2, padding="same")),
    ((7, 8, 4), None, "depthwise_conv2d", dict(kernel_size=3, strides=2, padding="same")),
    ((6, 7, 3), ((1, 2), (0, 3)), "conv2d", dict(filters=4, kernel_size=3, padding="same")),
    ((6, 7, 3), ((2, 0), (1, 1)), "depthwise_conv2d", dict(kernel_size=5, strides=2,
                                                            depth_multiplier=3)),
    ((5, 5, 16), None, "conv2d", dict(filters=32, kernel_size=1)),
])
@pytest.mark.parametrize("act", ["relu6", None])
def test_one_group_is_the_bf16_arithmetic(shape, pad, kind, cfg, act):
    """A single group (float32 input rounded by the core, float32 output): equal to the
    emulation up to float32 accumulation, and unlike the float32 result."""
    layers = ([("zero_padding2d", dict(padding=pad))] if pad else []) + [
        (kind, dict(cfg, use_bias=True)), ("batch_normalization", {})] + (
        [("activation", dict(activation=act))] if act else [])
    rng = np.random.default_rng(3)
    net = _core.Net(shape)
    params = {}
    for i, (k, c) in enumerate(layers):
        net.add(k, **c)
        for j, info in enumerate(net.params(i)):
            v = (rng.uniform(0.5, 2.0, info["shape"]) if k == "batch_normalization" and j in (0, 3)
                 else rng.normal(0, 0.5, info["shape"])).astype(np.float32)
            net.set_param(i, j, v)
            params[i, j] = v
    x = rng.normal(0, 2, (3, *shape)).astype(np.float32)
    y32 = net.forward(x)
    net.set_compute_dtype("bfloat16")
    y16 = net.forward(x)
    want = _emulate(layers, params, x)
    assert y16.shape == want.shape
    assert _rel(y16, want) <= RTOL
    assert _rel(y32, want) > BF16_MOVES
    net.set_compute_dtype("float32")
    assert np.array_equal(net.forward(x), y32)      # back to float32, bit for bit


def _chain_params(seed):
    net, _, params, x = _pair(seed)
    return net, params, x


@pytest.mark.parametrize("stop", [4, 7, 10, len(CHAIN)])
def test_chain_stores_bf16_between_groups(stop):
    """Three groups, the first two passing bfloat16 to the next; the output of the last
    group (before pooling) or of the layer range is float32."""
    net, params, x = _chain_params(20)
    y32 = net.forward(x, stop=stop)
    net.set_compute_dtype("bfloat16")
    y16 = net.forward(x, stop=stop)
    want = _emulate(CHAIN, params, x, stop)
    assert _rel(y16, want) <= CHAIN_RTOL
    assert _rel(y32, want) > BF16_MOVES


def test_frozen_trunk_of_a_train_step_is_the_bf16_forward():
    """A training forward computes the frozen groups below the first trainable layer in
    bfloat16, exactly as an inference forward of the trunk does: a train step on x and one
    on that trunk output (start=7), from twin nets (same dropout seed), agree bit for bit;
    in float32 they differ."""
    y = np.eye(5, dtype=np.float32)[[0, 1, 2, 3]].reshape(4, 1, 1, 5)
    results = {}
    for dtype in ("bfloat16", "float32"):
        nets = [_chain_params(21)[0] for _ in range(2)]
        x = _chain_params(21)[2]
        for net in nets:
            for i in range(7):
                net.set_trainable(i, False)
            net.set_compute_dtype(dtype)
            net.set_optimizer("sgd", learning_rate=0.1)
        trunk = nets[1].forward(x, stop=7)
        a = nets[0].train_step(x, y)
        b = nets[1].train_step(trunk, y, start=7)
        assert a[0] == b[0] and np.array_equal(a[1], b[1])
        assert np.array_equal(nets[0].get_param(7, 0), nets[1].get_param(7, 0))
        results[dtype] = a[0], trunk
    assert results["bfloat16"][0] != results["float32"][0]
    assert _rel(results["bfloat16"][1], results["float32"][1]) > BF16_MOVES


def test_nan_input_propagates():
    net, params, x = _chain_params(22)
    net.set_compute_dtype("bfloat16")
    x = x.copy()
    x[1, 2, 2, 0] = np.nan
    y = net.forward(x)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2, 3]]).all()


def test_group_that_cannot_run_fused_reads_bf16_input_widened():
    """The middle group's folded parameters are not finite (gamma = inf), so it runs
    unfused in float32 after a group that wrote bfloat16 for it: its input is widened.
    Reading bfloat16 bits as float32 would be garbage; the result stays within bfloat16
    error of float32 (both run that group unfused)."""
    net, params, x = _chain_params(23)
    gamma = params[5, 0].copy()
    gamma[3] = np.inf
    net.set_param(5, 0, gamma)
    y32 = net.forward(x, stop=10)
    net.set_compute_dtype("bfloat16")
    y16 = net.forward(x, stop=10)
    assert np.isfinite(y32).all() and np.isfinite(y16).all()
    assert BF16_MOVES < _rel(y16, y32) < 5e-2


@pytest.mark.parametrize("kind, cfg, shape", [
    ("conv2d", dict(filters=24, kernel_size=1), (5, 5, 16)),
    ("conv2d", dict(filters=6, kernel_size=3, strides=2, padding="same"), (7, 6, 4)),
    ("depthwise_conv2d", dict(kernel_size=3, padding="same", depth_multiplier=2), (6, 6, 8)),
    ("depthwise_conv2d", dict(kernel_size=3, strides=2), (7, 7, 16)),
])
@pytest.mark.parametrize("act", ["linear", "relu6"])
def test_unfused_conv_trains_in_bf16(kind, cfg, shape, act):
    """An unfused convolution under bfloat16, forward (training) and backward: the output,
    the input gradient and the weight and bias gradients are the emulation's: x, w and
    dz = act'(z) * dy rounded to bfloat16, float32 results (float32 accumulation: RTOL)."""
    rng = np.random.default_rng(30)
    net = _core.Net(shape)
    net.add(kind, **cfg, use_bias=True, activation=act)
    params = {}
    for j, info in enumerate(net.params(0)):
        params[0, j] = rng.normal(0, 0.5, info["shape"]).astype(np.float32)
        net.set_param(0, j, params[0, j])
    x = rng.normal(0, 1.5, (3, *shape)).astype(np.float32)
    net.set_compute_dtype("bfloat16")
    y = net.forward(x, training=True)
    dy = rng.normal(0, 1, y.shape).astype(np.float32)
    dx = net.backward(dy, need_dx=True)
    grads = [net.grad(0, 0), net.grad(0, 1)]

    z, cache = ref.forward(kind, to_bf16(x), [to_bf16(params[0, 0]), params[0, 1]],
                           dict(cfg, activation="linear"))
    want_y = ref.act_forward(act, z)
    dz = ref.act_backward(act, z, want_y, dy)
    want_dx, want_grads = ref.backward(kind, to_bf16(dz), cache)
    assert _rel(y, want_y) <= RTOL
    assert _rel(dx, want_dx) <= RTOL
    for g, w in zip(grads, want_grads):
        assert _rel(g, w) <= RTOL

    net.set_compute_dtype("float32")                 # re-planned in float32
    net.forward(x, training=True)
    dx32 = net.backward(dy, need_dx=True)
    assert _rel(dx32, want_dx) > BF16_MOVES
    assert _rel(net.grad(0, 0), want_grads[0]) > BF16_MOVES


def test_unknown_compute_dtype():
    net, _, _ = _chain_params(25)
    with pytest.raises(ValueError, match="'float32', 'bfloat16' or 'int8'"):
        net.set_compute_dtype("float16")
