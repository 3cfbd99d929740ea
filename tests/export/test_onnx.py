"""ONNX export (``model.export(path, format="onnx")``) checked in ONNX Runtime
against ``model.predict``.

Tolerance 1e-4 (relative and absolute): both run the same float32 operations
on the same weights in different summation orders (ONNX Runtime's MLAS vs
oneDNN, BatchNormalization folded or not).  Each float32 dot product of
length K (<= 9 * 1024 here) rounds with relative error ~ sqrt(K) * 2**-24
~ 6e-6 in a random-walk bound; through MobileNet's 28 layers and a softmax
the outputs move by well under 1e-5 (we see ~1e-6), so 1e-4 flags any real
mistake (a wrong pad, channel order or missing bias moves outputs by 1e-2 or
more) without depending on a machine's instruction set."""
import numpy as np
import pytest

import aslnet
from aslnet import layers as L
from aslnet.models import Model, Sequential

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _fresh_names():
    aslnet.clear_session()
    aslnet.set_random_seed(1234)
    yield
    aslnet.clear_session()


def _run(path, x):
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _check(model, path, shape, batches=(1, 3), **kwargs):
    model.export(path, format="onnx", **kwargs)
    rng = np.random.default_rng(0)
    for n in batches:                                 # the batch dimension is dynamic
        x = rng.uniform(-1, 1, (n, *shape)).astype(np.float32)
        y = _run(path, x)
        np.testing.assert_allclose(y, model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
    return y


def _randomize_bn(model, seed=0):
    """Non-trivial moving statistics, so that BatchNormalization is checked."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.uniform(-.5, .5, c),
                               rng.uniform(-.5, .5, c), rng.uniform(0.5, 2, c)])


def every_layer_model():
    inp = L.Input((13, 11, 3))
    x = L.ZeroPadding2D(((0, 1), (2, 1)))(inp)
    x = L.Conv2D(6, 3, strides=2, padding="same", use_bias=False)(x)  # odd size: TF pads at end
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                          activation="relu")(x)
    x = L.Conv2D(8, 3, padding="valid", activation="relu6")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Dense(5, activation="relu")(x)               # on an image: per pixel
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Dropout(0.5)(x)
    x = L.Reshape((1, 5, 1))(x)                        # NHWC order, not NCHW's
    x = L.Dense(4)(x)
    x = L.Flatten()(x)
    x = L.Dense(7)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("softmax")(x)
    return Model(inp, x)


def test_every_layer_kind_matches_predict(tmp_path):
    model = every_layer_model()
    _randomize_bn(model)
    y = _check(model, tmp_path / "m.onnx", (13, 11, 3))
    assert y.shape == (3, 7)


def test_image_outputs_and_global_max_pooling(tmp_path):
    inp = L.Input((9, 9, 4))
    x = L.Conv2D(3, 1, padding="same")(inp)
    y = _check(Model(inp, x), tmp_path / "img.onnx", (9, 9, 4))
    assert y.shape == (3, 9, 9, 3)                     # NHWC out, as Keras
    aslnet.clear_session()
    inp = L.Input((9, 9, 4))
    x = L.GlobalMaxPooling2D()(L.DepthwiseConv2D(3)(inp))
    x = L.Dense(2, activation="softmax")(x)
    _check(Model(inp, x), tmp_path / "gmp.onnx", (9, 9, 4))


def test_sequential_and_opset_13(tmp_path):
    model = Sequential([L.Input((8, 8, 3)), L.Conv2D(4, 3), L.Flatten(),
                        L.Dense(3, activation="softmax")])
    _check(model, tmp_path / "s.onnx", (8, 8, 3), opset_version=13)
    assert onnx.load(str(tmp_path / "s.onnx")).opset_import[0].version == 13


@pytest.mark.slow
def test_the_fine_tuned_tutorial_model_matches_in_onnx_runtime(tmp_path, shared_weights_dir):
    model = aslnet.load_pretrained("mobilenet", num_classes=10, weights_dir=shared_weights_dir)
    model.compile(optimizer=aslnet.optimizers.Adam(1e-4), loss="categorical_crossentropy")
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (4, 224, 224, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[[1, 4, 6, 8]]
    for _ in range(3):                   # a few steps: trained head and BN statistics
        model.train_on_batch(x, y)
    out = _check(model, tmp_path / "mobilenet.onnx", (224, 224, 3), batches=(2,))
    assert out.shape == (2, 10)
    proto = onnx.load(str(tmp_path / "mobilenet.onnx"))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [224, 224, 3]


@pytest.mark.parametrize("arch", ["MobileNet", "MobileNetV2"])
def test_imagenet_trunks_of_any_size_match_in_onnx_runtime(tmp_path, shared_weights_dir, arch):
    """include_top=False without input_shape: a (None, None, 3) model whose ONNX
    graph keeps height and width symbolic; v2's residual Adds are in it."""
    from aslnet import applications
    model = getattr(applications, arch)(include_top=False, weights="imagenet",
                                        weights_dir=shared_weights_dir)
    assert model.input_shape == (None, None, None, 3)
    path = tmp_path / f"{arch}.onnx"
    for shape in ((96, 96, 3), (128, 160, 3)):        # one file serves every size
        out = _check(model, path, shape, batches=(2,))
        assert out.shape == (2, shape[0] // 32, shape[1] // 32, model.output_shape[-1])
        assert np.abs(out).max() > 0.1                # ImageNet features, not vanishing ones
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:3]] == ["batch", "height", "width"]


def test_imagenet_mobilenet_v2_classifier_matches_in_onnx_runtime(tmp_path, shared_weights_dir):
    from aslnet.applications import MobileNetV2
    model = MobileNetV2(weights="imagenet", weights_dir=shared_weights_dir)
    out = _check(model, tmp_path / "v2.onnx", (224, 224, 3), batches=(2,))
    assert out.shape == (2, 1000)
    np.testing.assert_allclose(out.sum(axis=1), 1, atol=1e-5)


def test_other_formats_and_arguments_are_refused(tmp_path):
    model = Sequential([L.Input((4,)), L.Dense(2)])
    with pytest.raises(NotImplementedError, match="format='onnx'"):
        model.export(tmp_path / "m")                   # Keras's default, tf_saved_model
    with pytest.raises(NotImplementedError, match="format='onnx'"):
        model.export(tmp_path / "m", format="litert")
    with pytest.raises(ValueError, match="opset"):
        model.export(tmp_path / "m.onnx", format="onnx", opset_version=11)
    with pytest.raises(TypeError, match="unexpected"):
        model.export(tmp_path / "m.onnx", format="onnx", dynamic_axes=True)
    assert not list(tmp_path.iterdir())


def test_a_layer_without_export_is_named(tmp_path):
    class Mystery(L.Layer):
        pass
    inp = L.Input((4,))
    model = Model(inp, Mystery(name="mystery")(L.Dense(2)(inp)))
    with pytest.raises(NotImplementedError, match="'mystery' \\(Mystery\\)"):
        model.export(tmp_path / "m.onnx", format="onnx")
