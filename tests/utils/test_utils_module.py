"""aslnet.utils has keras.utils's names that transfer-learning scripts use, behaving as Keras's."""
import numpy as np
import pytest
from PIL import Image

import aslnet
from aslnet import utils

NAMES = ["to_categorical", "load_img", "img_to_array", "array_to_img", "save_img",
         "image_dataset_from_directory", "set_random_seed"]


def test_keras_utils_names_are_here():
    import aslnet as keras
    for name in NAMES:
        assert callable(getattr(keras.utils, name)), name
        assert name in utils.__all__
    assert keras.data.AUTOTUNE == -1


@pytest.mark.keras
def test_same_results_as_keras_utils(tmp_path):
    try:
        keras = pytest.importorskip("keras")
    except ImportError as exc:
        pytest.skip(f"Keras does not import: {exc}")
    labels = np.array([[2], [0], [1], [2]])
    np.testing.assert_array_equal(utils.to_categorical(labels, 4),
                                  keras.utils.to_categorical(labels, 4))
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 9, (7, 5, 3)).astype(np.float32)
    ours, theirs = utils.array_to_img(x), keras.utils.array_to_img(x)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))   # scaled to 0..255
    utils.save_img(tmp_path / "a.png", x)
    keras.utils.save_img(tmp_path / "b.png", x)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")),
                                  np.asarray(Image.open(tmp_path / "b.png")))
    for kw in (dict(), dict(color_mode="grayscale"), dict(target_size=(3, 9))):
        a = utils.img_to_array(utils.load_img(tmp_path / "a.png", **kw))
        b = keras.utils.img_to_array(keras.utils.load_img(tmp_path / "a.png", **kw))
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_set_random_seed_makes_dataset_shuffles_reproducible():
    ds = aslnet.data.Dataset.from_tensor_slices(np.arange(30))
    orders = []
    for _ in range(2):
        utils.set_random_seed(11)
        shuffled = ds.shuffle(8)                      # no seed of its own
        orders.append([list(map(int, shuffled)) for _ in range(2)])
    assert orders[0] == orders[1] and orders[0][0] != orders[0][1]


def test_get_source_inputs_and_a_base_model_on_preprocessing_layers():
    """Keras's MobileNet(input_tensor=x), x computed from an Input (augmentation and
    rescaling in front): the model starts at that Input, its first layers are those."""
    from aslnet import layers as L
    from aslnet.applications import MobileNet, MobileNetV2
    from aslnet.utils import get_source_inputs
    inp = L.Input((64, 64, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(L.RandomFlip("horizontal")(inp))
    assert get_source_inputs(x) == [inp] and get_source_inputs(inp) == [inp]
    with pytest.raises(ValueError, match="takes a Keras tensor"):
        get_source_inputs(np.zeros(3))
    for make in (MobileNet, MobileNetV2):
        inp = L.Input((64, 64, 3))
        x = L.Rescaling(1 / 127.5, offset=-1)(L.RandomFlip("horizontal")(inp))
        model = make(input_tensor=x, include_top=False, weights=None, pooling="avg")
        assert model.input is inp
        assert [type(l).__name__ for l in model.layers[:3]] == ["InputLayer", "RandomFlip",
                                                               "Rescaling"]
        out = model.predict(np.zeros((1, 64, 64, 3), np.float32), verbose=0)
        assert out.shape == (1, model.output_shape[-1])


def test_preprocess_input_on_a_layer_output_is_a_rescaling_layer():
    """TensorFlow's tutorial: x = preprocess_input(inputs) inside a functional model."""
    from aslnet.applications import imagenet_utils, mobilenet, mobilenet_v2
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    for module in (mobilenet, mobilenet_v2):
        inp = aslnet.Input((8, 8, 3))
        model = aslnet.Model(inp, module.preprocess_input(inp))
        assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Rescaling"]
        # x / 127.5 - 1 against x * (1 / 127.5) - 1: one rounding apart (|x| <= 255)
        np.testing.assert_allclose(model.predict(images, verbose=0),
                                   module.preprocess_input(images), atol=4e-7)
    with pytest.raises(NotImplementedError, match="mode='caffe'.*apply it to the images"):
        imagenet_utils.preprocess_input(aslnet.Input((8, 8, 3)))
