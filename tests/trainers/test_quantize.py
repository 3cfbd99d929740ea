"""``model.quantize("int8", calibration_data=x)`` (aslnet/trainers/quantize.py): the Keras
API on the int8 core.  The arithmetic itself is proven in tests/core/test_int8.py against
tests/reference/int8.py; here: what the model does (predict and evaluate in int8 with
static scales, refusals with the way out), and, on the shared MobileNet v1 weights, the
whole int8 network against the NumPy emulation and the float32 top-1 classes.
"""
import json

import numpy as np
import pytest

import aslnet
from aslnet import _core
from tests.model_fixtures import data, small_model, wide_model


def _rel(a, b):
    return np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max()


def test_predict_runs_int8_after_quantize():
    """predict changes by int8 error (not 0: int8 runs; small: the same function), the
    model's layers and weights are untouched, and predict_on_batch / evaluate agree."""
    model = small_model()
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = data(n=16)
    before = [w.copy() for w in model.get_weights()]
    p32 = model.predict(x, verbose=0)
    model.quantize("int8", calibration_data=x)
    p8 = model.predict(x, verbose=0)
    assert 1e-4 < _rel(p8, p32) < 0.1
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    np.testing.assert_array_equal(model.predict_on_batch(x), p8)
    loss = model.evaluate(x, y, verbose=0)[0]
    want = -np.mean(np.sum(y * np.log(p8), axis=1))
    assert loss == pytest.approx(want, rel=1e-5)


def test_static_scales_make_each_sample_independent_of_its_batch():
    """Scales are calibrated once, not per batch: an image's int8 output is the same at any
    batch size (and the per-image split of batched inference is not used in int8).  The
    int8 groups are exact; pooling and Dense in float32 may round differently per batch
    size (~1e-7), where per-batch scales would move outputs by int8 error (~1e-3)."""
    model = wide_model()
    x = np.random.default_rng(2).normal(size=(5, 96, 96, 3)).astype(np.float32)
    model.quantize("int8", calibration_data=x)
    whole = model.predict(x, batch_size=5, verbose=0)
    one = np.concatenate([model.predict(x[i:i + 1], verbose=0) for i in range(5)])
    np.testing.assert_allclose(whole, one, rtol=1e-6, atol=0)


def test_calibration_data_in_batches_covers_all_of_it():
    """Ranges are widened over every batch of calibration_data (batch_size), so batching
    it differently gives the same quantized model."""
    x, _ = data(n=12)
    a, b = small_model(), small_model()
    a.quantize("int8", calibration_data=x)
    b.quantize("int8", calibration_data=x, batch_size=5)
    np.testing.assert_array_equal(a._int8_ranges, b._int8_ranges)
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))


def test_weights_set_after_quantize_are_requantized():
    """The int8 kernels follow the float32 weights (requantized when they change)."""
    model = small_model()
    x, _ = data(n=8)
    model.quantize("int8", calibration_data=x)
    p = model.predict(x, verbose=0)
    conv = model.layers[2]
    conv.set_weights([conv.get_weights()[0] * -1])
    assert not np.allclose(model.predict(x, verbose=0), p)


@pytest.mark.parametrize("mode", ["float8", "int4", "int16", None])
def test_other_modes_are_refused(mode):
    model = small_model()
    with pytest.raises(ValueError, match="aslnet supports model.quantize\\('int8'"):
        model.quantize(mode, calibration_data=data(n=4)[0])


def test_calibration_data_is_required():
    with pytest.raises(ValueError, match="needs calibration_data"):
        small_model().quantize("int8")


def test_quantized_model_does_not_train(tmp_path):
    model = small_model()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = data(n=8)
    model.quantize("int8", calibration_data=x)
    with pytest.raises(ValueError, match="does not train quantized models.*Train the float32"):
        model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="does not train quantized models"):
        model.train_on_batch(x, y)
    model.save_weights(tmp_path / "m.weights.h5")     # the float32 weights
    fresh = small_model(seed=1)
    fresh.load_weights(tmp_path / "m.weights.h5")
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_saved_quantized_model_loads_quantized(tmp_path, suffix):
    """save keeps the mode and the calibrated ranges: the loaded model predicts in int8,
    bit for bit as before saving (not the float32 model's outputs), and refuses training."""
    model = small_model()
    x, y = data(n=8)
    p32 = model.predict(x, verbose=0)
    model.quantize("int8", calibration_data=x)
    p8 = model.predict(x, verbose=0)
    model.save(tmp_path / f"m{suffix}")
    loaded = aslnet.models.load_model(tmp_path / f"m{suffix}", compile=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), p8)
    assert not np.array_equal(p8, p32)
    loaded.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="does not train quantized models"):
        loaded.fit(x, y, epochs=1, verbose=0)
    plain = small_model()
    plain.save(tmp_path / f"f{suffix}")              # a float32 model stays float32
    np.testing.assert_array_equal(
        aslnet.models.load_model(tmp_path / f"f{suffix}", compile=False).predict(x, verbose=0),
        plain.predict(x, verbose=0))


def test_quantization_state_that_does_not_fit_is_a_model_file_error(tmp_path):
    import h5py
    from aslnet.saving.file_io import ModelFileError
    model = small_model()
    model.quantize("int8", calibration_data=data(n=4)[0])
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "a") as f:
        state = json.loads(f.attrs["aslnet_quantization"])
        f.attrs["aslnet_quantization"] = json.dumps({**state, "ranges": state["ranges"][:-1]})
    with pytest.raises(ModelFileError, match="quantization state does not fit"):
        aslnet.models.load_model(tmp_path / "m.h5", compile=False)



IMAGES = ["cat", "bird", "grace_hopper", "parrot"]


@pytest.mark.slow
@pytest.mark.parametrize("ranges", ["calibrated", "tflite"])
def test_mobilenet_v1_int8_groups_are_the_emulation(shared_weights_dir, ranges):
    """Each of MobileNet v1's 27 int8 groups (the shared ImageNet weights, calibrated on
    the reference photos) is the NumPy emulation's (tests/reference/int8.py) on the
    integers the core fed it: the core's float output of the group before (a forward
    that stops there), requantized as the core does.  Tolerance as in
    tests/core/test_int8.py: float32 rescaling (RTOL) plus two flipped LSBs of the input.
    (A whole-network comparison cannot be tight: each flip shifts up to 1024 values of
    the next layer by a fraction of an LSB, some of which flip in turn, and over 27
    layers the two runs drift apart by ~1e-2 of the embedding.)  ``tflite``: quantized
    without calibration data, on the ranges of the TFLite file."""
    from aslnet.applications.mobilenet import MobileNet
    from aslnet.pretrained import mobilenet_v1_weights
    from tests.reference import int8 as q8
    ref = shared_weights_dir / "reference"
    x = np.stack([np.load(ref / f"{s}.input.npy") for s in IMAGES[:2]]).astype(np.float32)
    mobile = MobileNet(weights_dir=shared_weights_dir)
    mobile.quantize("int8", **({"calibration_data": x} if ranges == "calibrated" else {}))
    net = mobile._core()
    weights = mobilenet_v1_weights(shared_weights_dir)
    vnni, u8_max = _core.int8_vnni(), 255 if _core.int8_vnni() else 127
    qp = {name: q8.qparams(*mobile._int8_ranges[net.index[name][0]], u8_max)
          for name, *_ in q8.mobilenet_v1_groups()}
    prev = None
    for first, conv, pad, fn, last in q8.mobilenet_v1_groups():
        t, sx = qp[first]
        xq = q8.quantize(x, t, sx) if prev is None else np.clip(
            np.rint(prev / np.float64(sx)), *q8.LIMITS[t])
        got = net.net.forward(x, stop=net.index[last][-1] + 1)
        want = q8.mobilenet_v1_group(weights, xq, t, sx, conv, pad, fn, vnni=vnni)
        w = np.abs(weights[conv][0]).max()
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max() + 2 * sx * w, first
        prev = got.astype(np.float64)


@pytest.mark.slow
def test_mobilenet_v1_int8_keeps_the_top1(shared_weights_dir):
    """MobileNet v1 (the shared ImageNet weights) calibrated on the four reference photos:
    the top-1 classes are float32's and the reference's, and int8 moves the pooled
    embedding from float32 by less than 0.3 of its largest value and by more than 3e-3:
    a float32 run differs by ~1e-6, while rounding one u8 tensor to 255 steps alone moves
    values by up to half a step, 2e-3 of its range, and int8 rounds 27 of them (measured
    with the weight-grid rule of 62f8bcc: down to 2.3e-2 with VNNI, 7.3e-2..1.9e-1
    without)."""
    from aslnet.applications.mobilenet import MobileNet
    ref = shared_weights_dir / "reference"
    x = np.stack([np.load(ref / f"{s}.input.npy") for s in IMAGES]).astype(np.float32)
    mobile = MobileNet(weights_dir=shared_weights_dir)
    emb = aslnet.Model(mobile.input, mobile.layers[-6].output)
    e32 = emb.predict(x, verbose=0).reshape(len(IMAGES), -1)
    p32 = mobile.predict(x, verbose=0)
    emb.quantize("int8", calibration_data=x)
    mobile.quantize("int8", calibration_data=x)
    e8 = emb.predict(x, verbose=0).reshape(len(IMAGES), -1)
    for g, f in zip(e8, e32):
        assert 3e-3 < _rel(g, f) < 0.3
    top5 = json.loads((ref / "top5.json").read_text())
    p8 = mobile.predict(x, verbose=0)
    names = ["cat.bmp", "bird.bmp", "grace_hopper.bmp", "parrot.jpg"]
    for a, b, name in zip(p8, p32, names):
        assert int(np.argmax(a)) == int(np.argmax(b)) == top5[name][0][0] - 1


@pytest.mark.slow
def test_mobilenet_v2_int8_keeps_the_top1(shared_weights_dir):
    """MobileNetV2: linear bottleneck outputs are s8, an add's inputs are float32 (the
    source kept, the next group quantizes its float input); the reference photos keep
    their float32 top-1 class."""
    from aslnet.applications.mobilenet_v2 import MobileNetV2
    ref = shared_weights_dir / "reference"
    x = np.stack([np.load(ref / f"{s}.input.npy") for s in IMAGES]).astype(np.float32)
    model = MobileNetV2(weights_dir=shared_weights_dir)
    p32 = model.predict(x, verbose=0)
    model.quantize("int8", calibration_data=x)
    p8 = model.predict(x, verbose=0)
    assert 1e-3 < _rel(p8, p32)
    np.testing.assert_array_equal(p8.argmax(1), p32.argmax(1))


def _group_rows(model):
    """Range rows read at each fused group's input and output: (first op of the conv, or
    of the ZeroPadding2D before it; the op after its BatchNormalization, or after the ReLU
    that follows)."""
    net, layers = model._core(), model.layers
    rows = []
    for k, layer in enumerate(layers):
        if type(layer).__name__ not in ("Conv2D", "DepthwiseConv2D") or \
                type(layers[k + 1]).__name__ != "BatchNormalization":
            continue
        first = layers[k - 1] if type(layers[k - 1]).__name__ == "ZeroPadding2D" else layer
        last = layers[k + 2] if type(layers[k + 2]).__name__ == "ReLU" else layers[k + 1]
        rows += [net.index[first.name][0], net.index[last.name][-1] + 1]
    return rows


@pytest.mark.parametrize("arch", ["mobilenet", "mobilenet_v2"])
def test_imagenet_models_quantize_on_their_tflite_ranges(shared_weights_dir, arch):
    """An ImageNet model of aslnet.applications quantizes without calibration data: the
    input row is the TFLite input's uint8 range (scale 1/128, zero point 128: [-1,
    127/128]), each ReLU6 output's is [0, 255 x its scale] = [0, 6] to the file's rounding,
    every fused group's input and output has a range (so every group runs int8), the rest
    are NaN; the reference photos keep their float32 top-1 class; and a save/load round trip
    keeps those ranges, NaN included."""
    from aslnet.applications import MobileNet, MobileNetV2
    ctor = {"mobilenet": MobileNet, "mobilenet_v2": MobileNetV2}[arch]
    ref = shared_weights_dir / "reference"
    x = np.stack([np.load(ref / f"{s}.input.npy") for s in IMAGES]).astype(np.float32)
    model = ctor(weights_dir=shared_weights_dir)
    p32 = model.predict(x, verbose=0)
    model.quantize("int8")
    r, net = model._int8_ranges, model._core()
    np.testing.assert_array_equal(r[0], [-1.0, 127 / 128])
    relus = [l.name for l in model.layers if type(l).__name__ == "ReLU"]
    assert len(relus) >= 27
    for name in relus:
        lo, hi = r[net.index[name][-1] + 1]
        assert lo == 0 and abs(hi - 6) < 1e-3, name
    rows = _group_rows(model)
    assert len(rows) >= 2 * 27 and np.all(np.isfinite(r[rows]))
    assert np.isnan(r).any()                       # e.g. inside the groups
    p8 = model.predict(x, verbose=0)
    assert 1e-3 < _rel(p8, p32)
    np.testing.assert_array_equal(p8.argmax(1), p32.argmax(1))


def test_tflite_ranges_round_trip_through_save(shared_weights_dir, tmp_path):
    from aslnet.applications import MobileNetV2
    model = MobileNetV2(weights_dir=shared_weights_dir, include_top=False, pooling="avg",
                        input_shape=(96, 96, 3))
    model.quantize("int8")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    model.save(tmp_path / "q.keras")
    back = aslnet.models.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(back._int8_ranges, model._int8_ranges)   # NaN == NaN here
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


def test_tflite_ranges_are_refused_once_the_weights_change(shared_weights_dir):
    """After set_weights (or training) the file's ranges no longer describe the network:
    ValueError naming the layer and the way out (calibration_data), which then works."""
    from aslnet.applications import MobileNet
    model = MobileNet(weights_dir=shared_weights_dir, include_top=False, pooling="avg",
                      input_shape=(128, 128, 3))
    layer = model.get_layer("conv_pw_3")
    layer.set_weights([w * 1.5 for w in layer.get_weights()])
    with pytest.raises(ValueError, match="conv_pw_3 changed since loading.*calibration_data"):
        model.quantize("int8")
    x = np.random.default_rng(0).uniform(-1, 1, (4, 128, 128, 3)).astype(np.float32)
    model.quantize("int8", calibration_data=x)
    assert np.all(np.isfinite(model._int8_ranges))
