"""The random augmentation layers: structural and statistical checks (the
exact comparisons with Keras's warps are in test_keras_layers.py).

Identity outside training; flips exact; a rotation by a quarter turn of a
square image is np.rot90 (counter-clockwise, Keras's sign); contrast keeps
each channel's mean; seeded and reproducible, independent of the thread
count; each image of a batch draws its own transform; the frozen-trunk
cache of ``fit`` is off while an augmentation layer lies in the trunk.
"""
import numpy as np
import pytest

import aslnet
from aslnet import _core
from aslnet import layers as L
from aslnet.trainers import trunk_cache


def _net(kind, shape, **cfg):
    net = _core.Net(shape)
    net.add(kind, **cfg)
    return net


def _images(n=8, shape=(9, 9, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype(np.float32)


def test_identity_outside_training():
    x = _images()
    model = aslnet.models.Sequential([
        L.InputLayer(x.shape[1:]), L.RandomFlip(), L.RandomRotation(0.3), L.RandomZoom(0.2),
        L.RandomTranslation(0.2, 0.1), L.RandomContrast(0.5)])
    assert np.array_equal(model.predict(x, verbose=0), x)
    for kind, cfg in (("random_flip", {}), ("random_affine", dict(rotation=0.2)),
                      ("random_contrast", dict(contrast=0.4))):
        assert np.array_equal(_net(kind, x.shape[1:], **cfg).forward(x, training=False), x)


@pytest.mark.parametrize("mode, flip", [
    ("horizontal", lambda a: a[:, ::-1]), ("vertical", lambda a: a[::-1]),
    ("horizontal_and_vertical", lambda a: a[::-1, ::-1])])
def test_flips_are_exact_and_fair(mode, flip):
    x = _images(400, (4, 5, 2))
    y = _net("random_flip", x.shape[1:], mode=mode, seed=7).forward(x, training=True)
    flipped = np.array([np.array_equal(b, flip(a)) for a, b in zip(x, y)])
    same = np.array([np.array_equal(b, a) for a, b in zip(x, y)])
    assert (flipped | same).all()
    # P(flip) = 1/2: 400 draws lie within 4 standard deviations (10) of 200
    assert abs(flipped.sum() - 200) <= 40


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_quarter_turn_of_a_square_image_is_rot90(interpolation):
    x = _images(3, (8, 8, 2))
    for turn, k in ((0.25, 1), (-0.25, -1), (0.5, 2)):
        y = _net("random_affine", x.shape[1:], rotation=(turn, turn),
                 interpolation=interpolation).forward(x, training=True)
        # float32 cos/sin of the angle put sampling points within ~1e-6 px of a pixel
        # centre: bilinear weights off by that, times values <= 255
        np.testing.assert_allclose(y, np.rot90(x, k, axes=(1, 2)), atol=255 * 1e-5)


def test_contrast_keeps_each_channel_mean():
    x = _images(16, (6, 7, 3))
    lo, hi = 0.3, 0.6
    y = _net("random_contrast", x.shape[1:], contrast=(lo, hi), value_range=(-1e9, 1e9),
             seed=3).forward(x, training=True)
    mx, my = x.mean(axis=(1, 2), keepdims=True), y.mean(axis=(1, 2), keepdims=True)
    # means of 42 values ~128: float32 rounding ~42 * 2^-24 * 255 * few
    np.testing.assert_allclose(my, mx, atol=1e-3)
    f = ((y - mx) * (x - mx)).sum(axis=(1, 2, 3)) / ((x - mx) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(y, mx + f[:, None, None, None] * (x - mx), atol=1e-3)
    assert (f >= 1 - lo - 1e-6).all() and (f <= 1 + hi + 1e-6).all()
    assert len(np.unique(np.round(f, 5))) == len(f)        # one factor per image


def test_contrast_clips_to_value_range():
    x = _images(8)
    y = _net("random_contrast", x.shape[1:], contrast=(0.0, 1.0), seed=1).forward(
        x, training=True)
    assert y.min() >= 0 and y.max() <= 255 and (y == 255).any()


def test_seeded_reproducible_and_thread_independent():
    x = _images(6)

    def run(threads, seed=5):
        net = _net("random_affine", x.shape[1:], rotation=0.2, zoom_height=0.2,
                   shift_width=0.1, seed=seed)
        net.set_num_threads(threads)
        return net.forward(x, training=True), net.forward(x, training=True)

    a1, a2 = run(1)
    b1, b2 = run(2)
    assert np.array_equal(a1, b1) and np.array_equal(a2, b2)
    assert not np.array_equal(a1, a2)                # the state advances
    assert not np.array_equal(a1, run(1, seed=6)[0])
    same = np.repeat(x[:1], 6, axis=0)               # each image draws its own
    y = _net("random_affine", x.shape[1:], rotation=0.2, seed=1).forward(same, training=True)
    assert len({y[i].tobytes() for i in range(6)}) == 6


def test_set_random_seed_seeds_unseeded_layers():
    x = _images(4)

    def make():
        aslnet.utils.set_random_seed(11)
        m = aslnet.models.Sequential([L.InputLayer(x.shape[1:]), L.RandomFlip(),
                                      L.RandomRotation(0.2)])
        network = m._core()
        network.sync("float32")
        return network.net.forward(x, training=True)

    assert np.array_equal(make(), make())


def test_bad_factors_are_refused_with_the_rule():
    with pytest.raises(ValueError, match="factor.*out of range"):
        L.RandomRotation(1.5)
    with pytest.raises(ValueError, match=r"height_factor.*\(-1.0, 1.0\]"):
        L.RandomZoom(-1.0)
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        L.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="mode must be one of"):
        L.RandomFlip("diagonal")
    with pytest.raises(NotImplementedError, match="training=True"):
        L.RandomFlip()(L.Input((4, 4, 3)), training=True)


def test_frozen_trunk_cache_is_off_past_an_augmentation_layer():
    def model(*front):
        conv = L.Conv2D(4, 3, trainable=False)
        return aslnet.models.Sequential([L.InputLayer((8, 8, 3)), *front, conv,
                                         L.GlobalAveragePooling2D(), L.Dense(2, "softmax")])
    plain = model(L.Rescaling(1 / 255))
    assert trunk_cache.trunk_start(plain._layers[1:], plain._core()) > 0
    for aug in (L.RandomFlip(), L.RandomContrast(0.2), L.RandomTranslation(0.1, 0.1)):
        m = model(aug, L.Rescaling(1 / 255))
        assert trunk_cache.trunk_start(m._layers[1:], m._core()) == 0
    # and fit then runs the augmentation layer in training mode on every batch
    m = model(L.RandomFlip(seed=0))
    m.compile("adam", "categorical_crossentropy")
    x, y = _images(8, (8, 8, 3)), np.eye(2)[np.arange(8) % 2]
    m.fit(x, y, epochs=2, batch_size=4, verbose=0)
    network = m._core()
    assert network.net.layer_calls(network.first_op(m._layers[1]))[0] == 4
