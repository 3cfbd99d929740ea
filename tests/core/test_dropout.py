"""Dropout (csrc/dropout.c): what the generic layer harness does not cover --
keep statistics, inverted scaling, mask reuse in backward, seeding, and
identity in inference."""

import numpy as np
import pytest

_core = pytest.importorskip("aslnet._core")

SHAPE = (8, 8, 16)


def _net(rate, seed=1, shape=SHAPE):
    net = _core.Net(shape)
    net.add("dropout", rate=rate, seed=seed)
    return net


def _x(n=64, shape=SHAPE, seed=0):
    # strictly nonzero inputs, so y == 0 identifies a dropped element
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, (n, *shape)).astype(np.float32)
    return x * rng.choice([-1.0, 1.0], x.shape).astype(np.float32)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_training_keep_fraction_and_scaling(rate):
    x = _x()
    y = _net(rate).forward(x, training=True)
    kept = y != 0
    total = kept.size
    # binomial: |fraction - (1 - rate)| within 5 standard deviations
    sd = np.sqrt(rate * (1 - rate) / total)
    assert abs(kept.mean() - (1 - rate)) < 5 * sd
    scale = np.float32(1) / (np.float32(1) - np.float32(rate))
    np.testing.assert_array_equal(y[kept], x[kept] * scale)


def test_backward_reuses_forward_mask():
    rate = 0.3
    x = _x(n=16)
    net = _net(rate)
    y = net.forward(x, training=True)
    dy = np.random.default_rng(5).normal(size=y.shape).astype(np.float32)
    dx = net.backward(dy, need_dx=True)
    scale = np.float32(1) / (np.float32(1) - np.float32(rate))
    np.testing.assert_array_equal(dx, np.where(y != 0, dy * scale, 0))
    # a second backward after the same forward gives the same result
    np.testing.assert_array_equal(net.backward(dy, need_dx=True), dx)


def test_masks_change_between_steps_and_follow_the_seed():
    x = _x(n=4)
    a, b = _net(0.5, seed=7), _net(0.5, seed=7)
    a1, a2 = a.forward(x, training=True), a.forward(x, training=True)
    assert not np.array_equal(a1 != 0, a2 != 0)
    b1, b2 = b.forward(x, training=True), b.forward(x, training=True)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    c1 = _net(0.5, seed=8).forward(x, training=True)
    assert not np.array_equal(a1 != 0, c1 != 0)


def test_mask_independent_of_thread_count():
    x = _x(n=64)  # large enough for the threaded loop
    a, b = _net(0.5, seed=3), _net(0.5, seed=3)
    a.set_num_threads(1)
    np.testing.assert_array_equal(a.forward(x, training=True),
                                  b.forward(x, training=True))


def test_inference_and_rate_zero_are_identity():
    x = _x(n=4)
    dy = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    net = _net(0.5)
    np.testing.assert_array_equal(net.forward(x, training=False), x)
    np.testing.assert_array_equal(net.backward(dy, need_dx=True), dy)
    net0 = _net(0.0)
    np.testing.assert_array_equal(net0.forward(x, training=True), x)
    np.testing.assert_array_equal(net0.backward(dy, need_dx=True), dy)


def test_inference_forward_after_training_forward_uses_no_mask():
    x = _x(n=4)
    dy = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    net = _net(0.5)
    net.forward(x, training=True)
    net.forward(x, training=False)
    np.testing.assert_array_equal(net.backward(dy, need_dx=True), dy)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, float("nan")])
def test_rate_out_of_range_rejected(rate):
    with pytest.raises(Exception, match="rate"):
        _net(rate)
