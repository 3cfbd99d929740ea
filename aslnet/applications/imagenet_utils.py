"""Keras's ImageNet input preprocessing (``keras.applications.imagenet_utils``)."""
import numpy as np

__all__ = ["preprocess_input"]

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
