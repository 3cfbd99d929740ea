"""Nets of any input size (Net((None, None, 3))): shapes follow the input through every
layer kind (padding, strides, 'valid' and 'same', global pooling to 1x1, adds); the net
plans each input size once and keeps the plans; a fixed-size net built for each size
computes exactly the same.

Bitwise equality with the fixed nets: for one input size both nets create the same oneDNN
primitives (same shapes, ISA, thread count, 64-byte aligned buffers) and run the same
plain-C loops, and the parameters are the same, so every float operation is the same in
the same order; nothing about the dynamic net's bookkeeping touches the numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference.params import random_param

_core = pytest.importorskip("aslnet._core")

NB = dict(use_bias=False)
# a MobileNet-like trunk: v1's padded 'valid' stride-2 stem and a depthwise group, a v2
# inverted residual block with its add, a stride-2 depthwise, then pooling and a head
CHAIN = [
    ("zero_padding2d", dict(padding=((0, 1), (0, 1)))),                         # 0
    ("conv2d", dict(filters=8, kernel_size=3, strides=2, padding="valid", **NB)),  # 1
    ("batch_normalization", {}),                                                # 2
    ("activation", dict(activation="relu6")),                                   # 3
    ("conv2d", dict(filters=24, kernel_size=1, **NB)),                          # 4
    ("batch_normalization", {}),                                                # 5
    ("activation", dict(activation="relu6")),                                   # 6
    ("depthwise_conv2d", dict(kernel_size=3, padding="same", **NB)),            # 7
    ("batch_normalization", {}),                                                # 8
    ("activation", dict(activation="relu6")),                                   # 9
    ("conv2d", dict(filters=8, kernel_size=1, **NB)),                           # 10
    ("batch_normalization", {}),                                                # 11
    ("add", dict(source=3)),                                                    # 12
    ("depthwise_conv2d", dict(kernel_size=3, strides=2, padding="same", **NB)),  # 13
    ("batch_normalization", {}),                                                # 14
    ("activation", dict(activation="relu")),                                    # 15
    ("conv2d", dict(filters=16, kernel_size=3, strides=2, padding="valid")),    # 16
    ("global_average_pooling2d", {}),                                           # 17
    ("dense", dict(units=4, activation="softmax")),                             # 18
]
SIZES = [(32, 32), (96, 96), (128, 128), (160, 160), (224, 224), (200, 150)]


def _net(shape, params=None, chain=CHAIN, **kw):
    net = _core.Net(shape, **kw)
    for kind, cfg in chain:
        net.add(kind, **cfg)
    for (i, j), v in (params or {}).items():
        net.set_param(i, j, v)
    return net


def _params(seed=0):
    rng, net = np.random.default_rng(seed), _net((None, None, 3))
    return {(i, j): random_param(rng, p["name"], p["shape"], var_low=0.3)
            for i in range(net.num_layers) for j, p in enumerate(net.params(i))}


def _x(h, w, n=2, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, 3)).astype(np.float32)


def _expected_hw(h):
    h = (h + 1 - 3) // 2 + 1          # padded 'valid' 3x3/2
    h = -(-h // 2)                    # 'same' /2
    return (h - 3) // 2 + 1           # 'valid' 3x3/2


def test_shapes_follow_the_input_size():
    net = _net((None, None, 3))
    assert net.input_shape == (None, None, 3)
    assert net.output_shape(1) == (None, None, 8)
    assert net.output_shape(17) == (1, 1, 16) and net.output_shape(18) == (1, 1, 4)
    for h, w in SIZES:
        assert net.output_shape(16, input_size=(h, w)) == (_expected_hw(h), _expected_hw(w),
                                                           16)
    half = _net((None, 64, 3))             # only the height is free
    assert half.output_shape(3) == (None, 32, 8)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_any_size_equals_fixed_size_nets(training):
    params = _params()
    dyn = _net((None, None, 3), params)
    w = np.random.default_rng(2).normal(size=(2, 1, 1, 4)).astype(np.float32)
    for h, wd in SIZES + [(32, 32)]:
        fixed = _net((h, wd, 3), params)
        x = _x(h, wd)
        np.testing.assert_array_equal(dyn.forward(x, training=training),
                                      fixed.forward(x, training=training))
        np.testing.assert_array_equal(dyn.backward(w, need_dx=True),
                                      fixed.backward(w, need_dx=True))
        for i, j in ((1, 0), (10, 0), (16, 0), (18, 0)):
            np.testing.assert_array_equal(dyn.grad(i, j), fixed.grad(i, j))


def test_train_steps_at_alternating_sizes_equal_fixed_nets():
    """One optimizer across sizes: the same steps on fixed nets sharing the parameters."""
    params = _params()
    dyn = _net((None, None, 3), params)
    dyn.set_optimizer("adam", learning_rate=1e-2)
    y = np.eye(4, dtype=np.float32)[[1, 3]].reshape(2, 1, 1, 4)
    cur = dict(params)
    opt_state = None
    for step, (h, w) in enumerate([(32, 32), (96, 96), (32, 32), (200, 150)]):
        fixed = _net((h, w, 3), cur)
        fixed.set_optimizer("adam", learning_rate=1e-2)
        fixed.iterations = step
        if opt_state:
            for (i, j, k), v in opt_state.items():
                fixed.set_slot(i, j, k, v)
        x = _x(h, w, seed=step)
        assert dyn.train_step(x, y)[0] == fixed.train_step(x, y)[0]
        cur = {(i, j): fixed.get_param(i, j) for (i, j) in params}
        opt_state = {(i, j, k): fixed.slot(i, j, k) for (i, j) in params for k in (0, 1)
                     if fixed.slot(i, j, k) is not None}
        for key, v in cur.items():
            np.testing.assert_array_equal(dyn.get_param(*key), v)


def test_each_size_is_planned_once():
    net = _net((None, None, 3), _params())
    assert net.num_plans == 0 and net.planned_sizes == [] and net.input_size is None
    for h in (32, 96, 32, 96, 32):
        net.forward(_x(h, h))
    assert net.num_plans == 2
    assert sorted(net.planned_sizes) == [(32, 32), (96, 96)]
    assert net.input_size == (32, 32)
    net.forward(_x(32, 32, n=5))      # a new batch size re-plans, as for a fixed net
    assert net.num_plans == 3
    for k in range(20):               # at most 16 sizes kept, least recently used dropped
        net.forward(_x(40 + k, 40, n=1))
    assert len(net.planned_sizes) == 16 and (32, 32) not in net.planned_sizes


def test_forward_from_a_cached_trunk_at_any_size():
    params = _params()
    net = _net((None, None, 3), params)
    fixed = _net((96, 96, 3), params)
    x = _x(96, 96)
    trunk = net.forward(x, stop=4)
    assert trunk.shape == (2, 48, 48, 8)
    np.testing.assert_array_equal(net.forward(trunk, start=4), fixed.forward(x))
    net.forward(_x(32, 32))           # another size selected now: say which
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 16, 16, 8\)"):
        net.forward(trunk, start=4)
    np.testing.assert_array_equal(net.forward(trunk, start=4, input_size=(96, 96)),
                                  fixed.forward(x))
    fresh = _net((None, None, 3), params)
    with pytest.raises(ValueError, match="pass input_size"):
        fresh.forward(trunk, start=4)


def test_global_max_pooling_at_any_size():
    chain = [("conv2d", dict(filters=4, kernel_size=3, strides=2, padding="same")),
             ("global_max_pooling2d", {})]
    net = _net((None, None, 3), chain=chain)
    for h, w in SIZES:
        x = _x(h, w)
        conv = net.forward(x, stop=1)
        np.testing.assert_array_equal(net.forward(x), conv.max(axis=(1, 2), keepdims=True))


def test_sizes_too_small_and_bad_layers_are_refused():
    net = _net((None, None, 3), min_size=(32, 32))
    with pytest.raises(ValueError, match="input size 31x40 is below this network's minimum "
                                         "32x32"):
        net.forward(_x(31, 40))
    tiny = _net((None, None, 3))      # no minimum: the first layer that cannot take it
    with pytest.raises(ValueError, match=r"input size 8x8 does not fit this network: "
                                         r"layer 16: conv2d: input \(2, 2, 8\) is "
                                         r"smaller than kernel"):
        tiny.forward(_x(8, 8))
    with pytest.raises(ValueError, match="channels|shape"):
        tiny.forward(np.zeros((1, 32, 32, 4), np.float32))
    flat = _core.Net((None, None, 3))
    flat.add("conv2d", filters=2, kernel_size=1)
    with pytest.raises(ValueError, match="parameters depend on the input size"):
        flat.add("dense", units=3)
    flat.add("global_average_pooling2d")
    flat.add("dense", units=3)
    with pytest.raises(ValueError, match="input_shape"):
        _core.Net((None, None, None))
    fixed = _net((64, 64, 3))
    with pytest.raises(ValueError, match=r"\(batch, 64, 64, 3\)"):
        fixed.forward(_x(32, 32))
    assert fixed.output_shape(17, input_size=(64, 64)) == (1, 1, 16)
    with pytest.raises(ValueError, match="this network takes 64 x 64"):
        fixed.output_shape(17, input_size=(32, 32))
