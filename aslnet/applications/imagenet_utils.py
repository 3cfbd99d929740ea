"""Keras's ImageNet input preprocessing and decoding (``keras.applications.imagenet_utils``)."""
import numpy as np

from ..layers import KerasTensor, Rescaling

__all__ = ["preprocess_input", "decode_predictions", "keras_class_name", "obtain_input_shape",
           "default_size", "warn_224_weights"]

_CAFFE_MEAN = np.array([103.939, 116.779, 123.68])  # BGR
_TORCH_MEAN = np.array([0.485, 0.456, 0.406])
_TORCH_STD = np.array([0.229, 0.224, 0.225])


def preprocess_input(x, data_format=None, mode="caffe"):
    """Preprocess an RGB image (H, W, 3) or batch (N, H, W, 3) with values in [0, 255].

    mode: 'tf' scales to [-1, 1] (``x / 127.5 - 1``, MobileNet's); 'torch'
    scales to [0, 1] and normalises with ImageNet's mean and std; 'caffe'
    converts to BGR and subtracts ImageNet's mean.  data_format:
    'channels_last' (default) or 'channels_first'.  Integer input becomes
    float32, float input keeps its dtype; unlike Keras, the argument is
    never modified in place.  On a symbolic tensor (a layer's output, as
    ``x = preprocess_input(inputs)`` in a functional model) mode 'tf' adds
    the same computation as a ``Rescaling(1 / 127.5, offset=-1)`` layer.
    """
    if mode not in {"caffe", "tf", "torch"}:
        raise ValueError(f"Unknown mode {mode}")
    if data_format not in {None, "channels_last", "channels_first"}:
        raise ValueError(f"Unknown data_format {data_format}")
    if isinstance(x, KerasTensor):        # in a model, as TensorFlow's tutorial calls it
        if mode != "tf" or data_format == "channels_first":
            raise NotImplementedError(
                f"preprocess_input(mode={mode!r}) on a layer's output is not supported by "
                "aslnet (mode 'tf', MobileNet's, is: a Rescaling layer); apply it to the "
                "images (NumPy arrays or a dataset's map) instead")
        return Rescaling(1 / 127.5, offset=-1)(x)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    dtype = x.dtype
    if mode == "tf":
        return x / dtype.type(127.5) - dtype.type(1)
    channel_axis = -1 if data_format in (None, "channels_last") else x.ndim - 3
    shape = [1] * x.ndim
    shape[channel_axis] = 3
    if mode == "torch":
        return ((x / dtype.type(255) - _TORCH_MEAN.reshape(shape).astype(dtype))
                / _TORCH_STD.reshape(shape).astype(dtype))
    return np.flip(x, axis=channel_axis) - _CAFFE_MEAN.reshape(shape).astype(dtype)


def keras_class_name(label):
    """'tabby, tabby cat' -> 'tabby': the name Keras's imagenet_class_index gives a class
    (its first synonym, spaces as underscores)."""
    return label.split(",")[0].strip().replace(" ", "_")


def decode_predictions(preds, top=5, weights_dir=None):
    """Keras's ``decode_predictions``: for each row of ``preds`` (1000 ImageNet classes,
    Keras order) the ``top`` classes as ``(wordnet_id, name, score)``, best first, e.g.
    ``('n02124075', 'Egyptian_cat', 0.83)``.  The ids and names come from
    ``aslnet.pretrained.imagenet_synsets`` / ``imagenet_labels`` (``weights_dir``: the
    folder holding them, else found as the weights are)."""
    from .. import pretrained
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError("`decode_predictions` expects a batch of predictions (i.e. a 2D array "
                         f"of shape (samples, 1000)); got an array of shape {preds.shape}")
    synsets = pretrained.imagenet_synsets(weights_dir)
    labels = pretrained.imagenet_labels(weights_dir, files=pretrained.CLASS_INDEX_FILES)
    return [[(synsets[i], keras_class_name(labels[i]), float(row[i]))
             for i in np.argsort(row, kind="stable")[::-1][:top]] for row in preds]


def obtain_input_shape(input_shape, default_size, min_size, require_flatten, weights=None):
    """Keras's ``imagenet_utils.obtain_input_shape`` (channels_last): the model's input
    shape from the ``input_shape`` argument, with Keras's errors.  Without ``input_shape``:
    ``(default_size, default_size, 3)`` with a top (``require_flatten``), else
    ``(None, None, 3)``, a model of any input size."""
    import warnings
    if input_shape is not None:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
    if weights != "imagenet" and input_shape and len(input_shape) == 3:
        if input_shape[-1] not in {1, 3}:
            warnings.warn("This model usually expects 1 or 3 input channels. However, it was "
                          f"passed an input_shape with {input_shape[-1]} input channels.",
                          stacklevel=3)
        default_shape = (default_size, default_size, input_shape[-1])
    else:
        default_shape = (default_size, default_size, 3)
    if weights == "imagenet" and require_flatten:
        if input_shape is not None and input_shape != default_shape:
            raise ValueError("When setting `include_top=True` and loading `imagenet` weights, "
                             f"`input_shape` should be {default_shape}.  Received: "
                             f"input_shape={input_shape}")
        return default_shape
    if input_shape:
        if len(input_shape) != 3:
            raise ValueError("`input_shape` must be a tuple of three integers.")
        if input_shape[-1] != 3 and weights == "imagenet":
            raise ValueError(f"The input must have 3 channels; Received "
                             f"`input_shape={input_shape}`")
        if any(d is not None and d < min_size for d in input_shape[:2]):
            raise ValueError(f"Input size must be at least {min_size}x{min_size}; Received: "
                             f"input_shape={input_shape}")
    else:
        input_shape = default_shape if require_flatten else (None, None, 3)
    if require_flatten and None in input_shape:
        raise ValueError("If `include_top` is True, you should specify a static "
                         f"`input_shape`. Received: input_shape={input_shape}")
    return input_shape


def default_size(input_shape, sizes):
    """Keras's ``default_size`` of the applications: the rows of a square
    ``input_shape`` whose size has its own ImageNet weights, else 224."""
    if input_shape is None or len(input_shape) < 2:
        return 224
    rows, cols = input_shape[0], input_shape[1]
    return rows if rows == cols and rows in sizes else 224


def warn_224_weights(rows, cols, sizes, stacklevel=2):
    """Keras's warning, exactly when Keras gives it: the input size is unknown,
    not square or not one of ``sizes``; the 224x224 weights are loaded.  (At
    the other sizes of ``sizes`` Keras loads weights trained at that size,
    which aslnet does not have: it loads the 224 ones, silently as Keras.)"""
    import warnings
    if rows != cols or rows not in sizes:
        warnings.warn("`input_shape` is undefined or non-square, or `rows` is not in "
                      f"{list(sizes)}. Weights for input shape (224, 224) will be loaded as "
                      "the default.", stacklevel=stacklevel + 1)


def set_imagenet_weights(model, arch, named, weights_dir=None):
    """Set the ImageNet weights ``named`` (layer name -> weight list) on ``model``, and
    remember where they came from: ``model.quantize("int8")`` without calibration data then
    uses the activation ranges of the TFLite file (``pretrained.imagenet_output_ranges``)
    while the weights are these (``trainers.quantize``)."""
    from ..engine.network import _versions
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(named[layer.name])
    model._imagenet_source = (arch, weights_dir, {
        layer.name: _versions(layer)
        for layer in model.layers if layer.weights})
