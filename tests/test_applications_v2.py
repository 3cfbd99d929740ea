"""aslnet.applications.MobileNetV2 (and MobileNet v1 of any input size): Keras's layers,
order, counts, arguments and errors; the ImageNet model against the float64 twin on the
four reference photos; load_pretrained('mobilenet_v2')."""
import io
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

import aslnet
from aslnet import pretrained
from aslnet.applications import MobileNet, MobileNetV2, mobilenet_v2
from aslnet.applications import _mobilenet_v2_spec as spec
from tests.reference.numpy_mobilenet_v2 import mobilenet_v2 as twin
from tests.reference.numpy_mobilenet_v2 import softmax

PHOTOS = ["cat", "bird", "grace_hopper", "parrot"]
TOP1 = {"cat": "Egyptian_cat", "bird": "chickadee", "grace_hopper": "military_uniform",
        "parrot": "macaw"}


@pytest.fixture(scope="module")
def photos(shared_weights_dir):
    return np.stack([np.load(shared_weights_dir / "reference" / f"{p}.input.npy")
                     for p in PHOTOS])


@pytest.fixture(scope="module")
def imagenet_v2(shared_weights_dir):
    return MobileNetV2(weights_dir=shared_weights_dir)


def test_module_exports():
    assert mobilenet_v2.MobileNetV2 is MobileNetV2
    assert aslnet.applications.MobileNetV2 is MobileNetV2


@pytest.mark.parametrize("kw", [dict(), dict(include_top=False),
                                dict(include_top=False, pooling="max", alpha=0.35),
                                dict(input_shape=(200, 150, 3), include_top=False,
                                     pooling="avg", alpha=0.5),
                                dict(alpha=1.4, classes=10)])
def test_layers_are_the_spec_table(kw):
    """Names, classes, inputs and output shapes in Keras's order: the table checked
    against Keras layer by layer (tests/keras/test_mobilenet_v2_reference.py)."""
    model = MobileNetV2(weights=None, **kw)
    shape = model.input_shape[1:]
    table = spec.layer_table(kw.get("alpha", 1.0), input_shape=shape,
                             include_top=kw.get("include_top", True),
                             pooling=kw.get("pooling"), classes=kw.get("classes", 1000))
    got = model.layers[1:]
    assert [l.name for l in got][:-2] == [s.name for s in table][:-2]
    assert [type(l).__name__ for l in got] == [s.kind for s in table]
    assert [l.output_shape[1:] for l in got] == [s.output_shape for s in table]
    names = {l.name: s.name for l, s in zip(got, table)}
    for l, s in zip(got, table):
        reads = [t._layer.name for t in l.output._inputs]
        assert [names.get(r, "input") for r in reads] == list(s.inputs)
        assert [tuple(w.shape) for w in l.weights] == [tuple(w) for w in s.weight_shapes]
    assert model.count_params() == spec.count_params(table)


def test_summary_counts_as_keras():
    for kw, total, trainable in [(dict(), 3538984, 3504872),
                                 (dict(include_top=False), 2257984, 2223872)]:
        out = io.StringIO()
        with redirect_stdout(out):
            MobileNetV2(weights=None, **kw).summary()
        text = out.getvalue()
        assert f"Total params: {total:,}" in text
        assert f"Trainable params: {trainable:,}" in text
        assert "Connected to" in text
    out = io.StringIO()
    with redirect_stdout(out):
        MobileNetV2(weights=None, include_top=False).summary(line_length=150)
    assert "[(None, None, None, 3)]" in out.getvalue()      # (98 columns cut it, as Keras)
    assert "(None, None, None, 1280)" in out.getvalue()


def test_imagenet_against_float64_twin(imagenet_v2, photos, shared_weights_dir):
    """max |dprob| <= 1e-4 and the same top-5.  The argument: softmax is 1/2-Lipschitz
    from logits (inf-norm) to each probability, |dp_i| <= max_j |dz_j| / 2, and float32
    logits carry ~1e-6 relative rounding per layer over ~50 layers, O(1e-5) of their
    magnitude (~20): <= ~2e-4 of logit error gives <= 1e-4.  Measured 4.3e-6."""
    probs = imagenet_v2.predict(photos, verbose=0)
    _, logits = twin(pretrained.mobilenet_v2_weights(shared_weights_dir), photos)
    want = softmax(logits)
    assert np.abs(probs - want).max() <= 1e-4
    for p, q in zip(probs, want):
        assert list(np.argsort(-p)[:5]) == list(np.argsort(-q)[:5])
    decoded = mobilenet_v2.decode_predictions(probs, top=1, weights_dir=shared_weights_dir)
    assert [d[0][1] for d in decoded] == [TOP1[p] for p in PHOTOS]


def test_any_size_trunk_against_twin(shared_weights_dir, photos):
    """include_top=False without input_shape: a (None, None, 3) trunk.  The twin pads TF
    "SAME"; Keras's size-agnostic model fixes the stride-2 pads at ((0, 1), (0, 1)) (spec
    module doc), the same wherever the feature maps are even: at 160x192 (160 -> 80 -> 40 ->
    20 -> 10, 192 -> ... -> 12) the fixed-size model equals the twin, and the any-size model
    equals the fixed one bit for bit.  (Odd sizes: tests/keras/test_keras_parity_v2.py.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = MobileNetV2(include_top=False, pooling="avg", weights_dir=shared_weights_dir)
        fixed = MobileNetV2(input_shape=(160, 192, 3), include_top=False, pooling="avg",
                            weights_dir=shared_weights_dir)
    assert free.input_shape == (None, None, None, 3)
    x = photos[:2, 32:192, 16:208]
    emb, _ = twin({k: v for k, v in pretrained.mobilenet_v2_weights(shared_weights_dir).items()
                   if k != "predictions"}, x)
    got = fixed.predict(x, verbose=0)
    # embedding ~4 in magnitude; float32 rounding as above: 1e-4 of the largest
    assert np.abs(got - emb).max() <= 1e-4 * np.abs(emb).max()
    np.testing.assert_array_equal(free.predict(x, verbose=0), got)


def test_keras_errors():
    with pytest.raises(ValueError, match="`classes` should be 1000"):
        MobileNetV2(classes=10)
    with pytest.raises(ValueError, match="at least 32x32"):
        MobileNetV2(input_shape=(31, 64, 3), include_top=False, weights=None)
    with pytest.raises(ValueError, match="3 channels"):
        MobileNetV2(input_shape=(64, 64, 1), include_top=False)
    with pytest.raises(ValueError, match="alpha must be one of"):
        MobileNetV2(alpha=0.6, include_top=False)
    with pytest.raises(ValueError, match="alpha=1.0 only.*weights=None"):
        MobileNetV2(alpha=0.5, include_top=False)
    with pytest.raises(ValueError, match=r"`input_shape` should be \(224, 224, 3\)"):
        MobileNetV2(input_shape=(200, 200, 3))
    with pytest.raises(ValueError, match="static `input_shape`"):
        MobileNetV2(input_shape=(None, None, 3), weights=None)
    with pytest.raises(ValueError, match="`weights` argument"):
        MobileNetV2(weights="nonexistent.h5")
    with pytest.raises(ValueError, match="pooling"):
        MobileNetV2(include_top=False, weights=None, pooling="sum")
    with pytest.raises(ValueError, match="Only `None` and `softmax`"):
        MobileNetV2(classifier_activation="relu")
    with pytest.raises(ValueError, match="below this network's minimum 32x32"):
        MobileNetV2(include_top=False, weights=None).predict(np.zeros((1, 16, 64, 3)))


@pytest.mark.parametrize("app, kw, warns", [
    (MobileNetV2, dict(include_top=False), True),                         # unknown size
    (MobileNetV2, dict(include_top=False, input_shape=(200, 150, 3)), True),  # not square
    (MobileNetV2, dict(include_top=False, input_shape=(200, 200, 3)), True),  # not listed
    (MobileNetV2, dict(include_top=False, input_shape=(96, 96, 3)), False),   # Keras: 96
    (MobileNetV2, dict(), False),
    (MobileNet, dict(include_top=False), True),
    (MobileNet, dict(include_top=False, input_shape=(96, 96, 3)), True),   # v1: no 96
    (MobileNet, dict(include_top=False, input_shape=(160, 160, 3)), False),
])
def test_224_weights_warning_exactly_when_keras_warns(app, kw, warns, shared_weights_dir):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        app(weights_dir=shared_weights_dir, **kw)
    got = [str(x.message) for x in w if "Weights for input shape (224, 224)" in str(x.message)]
    assert bool(got) == warns
    if warns:
        assert w[0].filename == __file__             # points at the caller, as Keras's


def test_mobilenet_v1_any_size(shared_weights_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = MobileNet(include_top=False, pooling="max", weights_dir=shared_weights_dir)
        fixed = MobileNet(input_shape=(128, 96, 3), include_top=False, pooling="max",
                          weights_dir=shared_weights_dir)
    assert free.input_shape == (None, None, None, 3)
    assert free.output_shape == (None, 1024)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 96, 3)).astype(np.float32)
    np.testing.assert_array_equal(free.predict(x, verbose=0), fixed.predict(x, verbose=0))
    with pytest.raises(ValueError, match="`classes` should be 1000"):
        MobileNet(classes=10)
    with pytest.raises(ValueError, match="depth multiplier must be 1"):
        MobileNet(depth_multiplier=2)


def test_load_pretrained_v2(shared_weights_dir):
    model = aslnet.load_pretrained("mobilenet_v2", num_classes=10,
                                   weights_dir=shared_weights_dir)
    assert model.output_shape == (None, 10)
    assert model.layers[-2].output_shape == (None, 1280)
    assert model.fine_tune_from == "block_9_expand"
    first = next(l for l in model.layers if l.trainable and l.weights)
    assert first.name == "block_15_expand"
    model.compile("adam", "categorical_crossentropy")
    network = model._core()
    # the trunk ends at the block edge: block_14_add (the block's input) is given
    assert model._trunk_start() == network.first_op(first)
    with pytest.raises(ValueError, match="available: 'mobilenet', 'mobilenet_v2'"):
        aslnet.load_pretrained("resnet")


def test_fine_tune_v2_runs(shared_weights_dir):
    """fine_tune on load_pretrained('mobilenet_v2') at a small any-size input: the head
    phase, then the unfreezing from block_9_expand with BN frozen."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = aslnet.load_pretrained("mobilenet_v2", num_classes=3,
                                       input_shape=(None, None, 3),
                                       weights_dir=shared_weights_dir)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (6, 64, 64, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(6) % 3]
    from aslnet.preprocessing.image import ImageDataGenerator
    flow = ImageDataGenerator().flow(x, y, batch_size=3, shuffle=False)
    model.fine_tune(flow, head_epochs=1, epochs=1, verbose=0)
    trainable = [l.name for l in model.layers if l.trainable and l.weights]
    assert trainable[0] == "block_9_expand"
    assert not any("BN" in n or "bn" in n for n in trainable)
