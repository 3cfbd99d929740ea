"""MobileNetV2: the architecture table, the converted ImageNet weights and the float64 NumPy
twin (tests/reference/numpy_mobilenet_v2.py) against two independent second opinions:

* TensorFlow Lite's interpreter running the quantized file itself.  Fed the same input, each
  of its 64 uint8 operators must give the twin's fused unit (conv + BN [+ ReLU6], add,
  pooling, logits) to within half a quantization step: the integer arithmetic is exact,
  the only rounding is the requantization of the output to its grid (|error| <= step / 2,
  clamped to the grid's range).  The slack on top, 2e-3 of a step, covers the requantization
  multiplier (31-bit fixed point in TFLite's kernels, float32 in XNNPACK's: relative
  <= 2^-23) and the twin's float32 dequantized weights (2^-24 per term), on values of at most
  ~256 steps: <= ~1e-4 of a step (measured <= 8.2e-5).  Run free (each operator on its own
  rounded input) the errors compound: only the top-1 class is compared then.
* Keras's own ``MobileNetV2`` with the converted weights loaded by ``set_weights``, in
  float32: embedding and logits within 1e-4 of their largest magnitude, probabilities within
  1e-5.  float32 rounds each of the ~50 layers' sums (up to 8,640 terms) by ~1e-6 relative;
  compounded through the network that stays near 1e-5 (measured: embedding 1.6e-6,
  logits 4.9e-7, probabilities 2.8e-7; random weights at odd sizes 5.2e-6).
"""
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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

from aslnet._tflite import read_tflite  # noqa: E402
from aslnet.applications import _mobilenet_v2_spec as spec  # noqa: E402
from aslnet.pretrained import V2_FILE, mobilenet_v2_head, mobilenet_v2_weights  # noqa: E402
from tests.reference.numpy_mobilenet_v2 import mobilenet_v2, random_weights, softmax  # noqa

try:  # keep TensorFlow light on a shared machine (fails once TF is running)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass

PHOTOS = ["cat", "bird", "grace_hopper", "parrot"]
STEP_SLACK = 2e-3       # of a quantization step, see the module docstring
REL = 1e-4              # float32 vs float64, of the largest magnitude
PROB_ATOL = 1e-5


@pytest.fixture(scope="module")
def v2_weights(shared_weights_dir):
    return mobilenet_v2_weights(shared_weights_dir)


@pytest.fixture(scope="module")
def photos(shared_weights_dir):
    return np.stack([np.load(shared_weights_dir / "reference" / f"{p}.input.npy")
                     for p in PHOTOS])


def keras_v2(weights, **kwargs):
    model = keras.applications.MobileNetV2(weights=None, **kwargs)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])
    return model


# --- the architecture table against Keras ----------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {},
    dict(alpha=0.35, input_shape=(161, 97, 3), classes=7, classifier_activation=None),
    dict(alpha=1.4, input_shape=(None, None, 3), include_top=False, pooling="max"),
    dict(alpha=0.75, input_shape=(128, 128, 3), include_top=False, pooling="avg"),
    dict(alpha=0.5, input_shape=(96, 96, 3), include_top=False),
])
def test_table_is_keras(kwargs):
    """Names, classes, what each layer reads, constructor arguments, weight and output
    shapes, parameter count: keras.applications.MobileNetV2 layer by layer."""
    model = keras.applications.MobileNetV2(weights=None, **kwargs)
    table = spec.layer_table(**kwargs)
    layers = model.layers[1:]          # after the InputLayer
    assert len(layers) == len(table)
    ours = {layer.name: s.name for layer, s in zip(layers, table)}
    ours[model.layers[0].name] = "input"
    for layer, s in zip(layers, table):
        if s.kind.startswith("Global"):  # Keras numbers auto-named layers per session
            assert layer.name.startswith(s.name)
        else:
            assert layer.name == s.name
        assert type(layer).__name__ == s.kind, s.name
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        assert tuple(ours[t._keras_history.operation.name] for t in inputs) == s.inputs
        config = layer.get_config()
        for key, value in s.config.items():
            got = config[key]
            if key == "padding" and s.kind == "ZeroPadding2D":
                got = tuple(tuple(p) for p in got)
            if key == "activation":     # Dense(activation=None) is stored as 'linear'
                value = value or "linear"
            assert got == value, (s.name, key)
        assert [tuple(w.shape) for w in layer.weights] == list(s.weight_shapes), s.name
        assert tuple(layer.output.shape[1:]) == s.output_shape, s.name
    assert model.count_params() == spec.count_params(table)


# --- the twin against TFLite's interpreter on the quantized file ----------------------------


@pytest.fixture(scope="module")
def interpreter(shared_weights_dir):
    with warnings.catch_warnings():    # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        it = tf.lite.Interpreter(model_path=str(shared_weights_dir / V2_FILE), num_threads=1,
                                 experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    return it


@pytest.mark.parametrize("index, photo", list(enumerate(PHOTOS)))
def test_twin_is_tflite_operator_by_operator(interpreter, shared_weights_dir, v2_weights,
                                             photos, index, photo):
    model = read_tflite(shared_weights_dir / V2_FILE)
    ops = model.operators
    detail = interpreter.get_input_details()[0]
    scale, zero = detail["quantization"]
    q = np.clip(np.round(photos[index] / scale + zero), 0, 255).astype(np.uint8)
    interpreter.set_tensor(detail["index"], q[None])
    interpreter.invoke()

    def dequantized(t):
        quant = model.tensors[t].quantization
        s, z = float(quant.scale[0]), int(quant.zero_point[0])
        return (interpreter.get_tensor(t).astype(np.float64) - z) * s, s, ((0 - z) * s,
                                                                          (255 - z) * s)

    errors = []

    def feed(unit, value):   # the k-th unit of the twin is TFLite's operator k
        out, step, (lo, hi) = dequantized(ops[len(errors)].outputs[0])
        out = out.reshape(value.shape)
        errors.append((np.abs(out - np.clip(value, lo, hi)).max() / step, unit))
        return out

    weights = dict(v2_weights, predictions=list(mobilenet_v2_head(shared_weights_dir)))
    _, logits = mobilenet_v2(weights, (q.astype(np.float64) - zero) * scale, feed=feed)
    out, step, (lo, hi) = dequantized(ops[63].outputs[0])
    errors.append((np.abs(out.reshape(-1) - np.clip(logits, lo, hi)).max() / step,
                   "predictions"))
    assert len(errors) == 64 and [op.opcode for op in ops[64:]] == ["RESHAPE", "SOFTMAX"]
    worst = max(errors)
    assert worst[0] <= 0.5 + STEP_SLACK, worst

    free_probs = interpreter.get_tensor(model.outputs[0])[0]      # uint8, 1/256 steps
    _, free_logits = mobilenet_v2(weights, photos[index])
    assert np.argmax(free_probs) == np.argmax(free_logits)        # 1001 classes both


# --- the twin against Keras with the converted weights -------------------------------------


def test_keras_with_converted_weights_is_twin(v2_weights, photos):
    model = keras_v2(v2_weights)
    features = keras.Model(model.input, model.layers[-2].output)
    probs = model(photos, training=False).numpy()
    embedding_k = features(photos, training=False).numpy()
    embedding, logits = mobilenet_v2(v2_weights, photos)
    assert np.abs(embedding_k - embedding).max() <= REL * np.abs(embedding).max()
    kernel, bias = (a.astype(np.float64) for a in v2_weights["predictions"])
    logits_k = embedding_k @ kernel + bias
    assert np.abs(logits_k - logits).max() <= REL * np.abs(logits).max()
    np.testing.assert_allclose(probs, softmax(logits), rtol=0, atol=PROB_ATOL)
    assert [int(i) for i in probs.argmax(axis=1)] == [285, 19, 652, 88]


@pytest.mark.parametrize("alpha, shape", [(0.35, (97, 75, 3)), (0.5, (64, 33, 3))])
def test_keras_at_odd_sizes_is_twin(alpha, shape):
    """Keras's correct_pad at a known odd size pads as the twin's TF "SAME" (random
    weights, 7 classes, no softmax)."""
    weights = random_weights(alpha=alpha, classes=7, seed=1)
    model = keras_v2(weights, alpha=alpha, input_shape=shape, classes=7,
                     classifier_activation=None)
    images = np.random.default_rng(2).uniform(-1, 1, (2,) + shape).astype(np.float32)
    _, logits = mobilenet_v2(weights, images)
    assert np.abs(model(images, training=False).numpy() - logits).max() <= (
        REL * np.abs(logits).max())


def test_keras_size_agnostic_model_pads_as_if_even():
    """What a (None, None, 3) model must copy: Keras fixes ((0, 1), (0, 1)) before each
    stride-2 depthwise layer, so at 64x64 (even all the way down to 4x4) it is the static
    model, and where a map is odd it differs from "SAME" (97: 49 -> pad to 50 -> 24 rows,
    "SAME" gives 25)."""
    weights = random_weights(alpha=0.35, classes=7, seed=3)
    model = keras_v2({k: v for k, v in weights.items() if k != "predictions"}, alpha=0.35,
                     input_shape=(None, None, 3), include_top=False, pooling=None)
    images = np.random.default_rng(4).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    trace = {}
    mobilenet_v2(weights, images, trace)
    out = model(images, training=False).numpy()
    assert np.abs(out - trace["out_relu"]).max() <= REL * np.abs(trace["out_relu"]).max()
    odd = np.random.default_rng(4).uniform(-1, 1, (1, 97, 97, 3)).astype(np.float32)
    trace = {}
    mobilenet_v2(weights, odd, trace)
    assert model(odd, training=False).shape[1:3] == (3, 3)
    assert trace["out_relu"].shape[1:3] == (4, 4)
