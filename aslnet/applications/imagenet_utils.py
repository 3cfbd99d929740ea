"""Keras's ImageNet input preprocessing and decoding (``keras.applications.imagenet_utils``)."""
import numpy as np

__all__ = ["preprocess_input", "decode_predictions", "keras_class_name"]

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
    never modified in place.
    """
    if mode not in {"caffe", "tf", "torch"}:
        raise ValueError(f"Unknown mode {mode}")
    if data_format not in {None, "channels_last", "channels_first"}:
        raise ValueError(f"Unknown data_format {data_format}")
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
