"""``model.quantize("int8", calibration_data=x)``: int8 inference (csrc/quantize.c).

What it does.  Every fused convolution group of the model (``[ZeroPadding2D ->]
Conv2D/DepthwiseConv2D -> BatchNormalization [-> ReLU/ReLU6]``, all of MobileNet's trunk)
then runs as one oneDNN int8 convolution: the batch norm is folded into the kernel, which
is quantized per output channel (symmetric, ``max|w| / 127``, requantized by the core
whenever the weights change); activations are quantized per tensor with scales calibrated
on ``calibration_data`` (u8 for ReLU outputs, s8 otherwise), accumulated in int32, and a
group's output stays int8 when it only feeds the next group.  Pooling, Dense and every
other layer compute in float32 (the trunk's output is dequantized before pooling).

Calibration.  A float32 pass over ``calibration_data`` records the minimum and maximum of
every layer's input (the absolute maximum, not a percentile: MobileNet's activations are
bounded by ReLU6, its input by preprocessing to [-1, 1], so there are no outliers to clip,
and a clipped maximum would saturate exactly the large activations the ReLU6 range keeps).
Keras 3 quantizes activations dynamically, per batch, and needs no data; aslnet uses static
scales (a dynamic scale would cost a float32 pass per batch) and so requires
``calibration_data``: a few hundred representative inputs, e.g. training images.

The ImageNet models.  ``MobileNet``/``MobileNetV2(weights="imagenet")`` come from TFLite
files quantized by their training (quantization-aware: each ReLU6, projection and add
output has a learned uint8 range).  Their ``quantize("int8")`` needs no calibration data:
it takes those ranges (``pretrained.imagenet_output_ranges``) while the weights are the
loaded ones, and refuses once they changed (train, then calibrate on data).

A quantized model predicts and evaluates in int8; it does not train (``fit`` raises: train
the float32 model, then quantize).  ``save`` keeps it: the float32 weights as always, plus
the mode and the calibrated ranges (``state``; an h5 attribute, a member of the .keras
archive that Keras 3 ignores: Keras loads the float32 model), so that ``load_model`` gives
back the same int8 model, bit for bit, and ``aslnet serve`` serves it.  ``save_weights``
writes the float32 weights.
"""
import json

import numpy as np

from . import data_adapters as data

MODES = ("int8",)
KERAS_MODES = ("int8", "float8", "int4", "gptq")


def quantize(model, mode, calibration_data=None, batch_size=None, steps=None):
    """Turn ``model`` into an int8 inference model in place (see the module docstring)."""
    if mode not in MODES:
        known = " (a Keras 3 mode aslnet does not implement)" if mode in KERAS_MODES else ""
        raise ValueError(f"Invalid quantization mode {mode!r}{known}: aslnet supports "
                         f"model.quantize('int8', calibration_data=x)")
    if calibration_data is None:
        ranges = imagenet_ranges(model)
        if ranges is None:
            raise ValueError(
                "model.quantize('int8') needs calibration_data: aslnet quantizes activations "
                "with static per-tensor scales measured on sample inputs (Keras 3 quantizes "
                "them per batch).  Pass calibration_data=x, e.g. a few hundred training "
                "images, preprocessed as for predict (only aslnet.applications' ImageNet "
                "models, unchanged, need none: their TFLite files carry the ranges)")
        model._int8_ranges, model._quantization_mode = ranges, mode
        model._core()
        return
    network = model._core()
    x = model._single_input(calibration_data)
    n_steps = data.num_steps(x, batch_size, steps)
    seen = 0
    for xb, _, _ in data.batches(x, None, batch_size, False, n_steps, with_targets=False):
        xb = model._to_input(xb)
        network.net.calibrate(xb, reset=seen == 0)
        seen += len(xb)
    if seen == 0:
        raise ValueError("model.quantize: calibration_data holds no samples")
    ranges = network.net.ranges()
    if not np.all(np.isfinite(ranges)):
        raise ValueError("model.quantize: calibration_data gives non-finite activations "
                         "(NaN or Inf in the inputs or the weights)")
    model._int8_ranges = ranges
    model._quantization_mode = mode
    model._core()   # the network computes in int8 from now on


def imagenet_ranges(model):
    """The ranges of an aslnet.applications ImageNet model from its TFLite file
    (``pretrained.imagenet_output_ranges``: the ones its quantization-aware training
    learned), one row per core layer input; NaN rows (no TFLite tensor there, e.g. inside
    a fused group, or the float32 classifier) make a group that would read them run in
    float32.  None for other models; ValueError where the weights changed since loading."""
    source = getattr(model, "_imagenet_source", None)
    if source is None:
        return None
    from .. import pretrained
    from ..engine.network import _versions
    arch, weights_dir, versions = source
    changed = [layer.name for layer in model.layers if layer.weights and
               _versions(layer) != versions.get(layer.name)]
    if changed:
        raise ValueError(
            f"model.quantize('int8') without calibration_data uses the activation ranges of "
            f"the ImageNet TFLite file, which do not hold once the weights change: those of "
            f"{', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} changed since "
            "loading.  Pass calibration_data=x (a few hundred inputs, preprocessed as for "
            "predict)")
    known = pretrained.imagenet_output_ranges(arch, weights_dir)
    network = model._core()
    ranges = np.full((network.net.num_layers + 1, 2), np.nan, np.float32)
    ranges[0] = known[None]
    for name, r in known.items():
        if name in network.index:
            ranges[network.index[name][-1] + 1] = r
    return ranges


def state(model):
    """What ``save`` keeps of a quantized model (a JSON string), or None."""
    mode = getattr(model, "_quantization_mode", None)
    if mode is None:
        return None
    return json.dumps({"mode": mode, "ranges": np.asarray(model._int8_ranges).tolist()})


def restore(model, text, where):
    """Make the loaded ``model`` the quantized model ``state`` described; ModelFileError
    (naming the file ``where``) if the state does not fit it."""
    from ..saving.file_io import ModelFileError
    try:
        saved = json.loads(text)
        mode, ranges = saved["mode"], np.asarray(saved["ranges"], np.float32)
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{where}: unreadable quantization state ({e})") from e
    if mode not in MODES or ranges.ndim != 2 or np.any(np.isinf(ranges)):   # NaN: no range
        raise ModelFileError(f"{where}: quantization state of mode {mode!r} with "
                             f"{ranges.size} ranges is not one aslnet wrote")
    model._int8_ranges, model._quantization_mode = ranges, mode
    try:
        model._core()
    except ValueError as e:      # ranges of another architecture
        model._int8_ranges = model._quantization_mode = None
        model._net = None
        raise ModelFileError(f"{where}: its quantization state does not fit the model "
                             f"({e})") from e


def refuse_training(model):
    """``fit`` and ``train_on_batch`` on a quantized model: a clear error."""
    if getattr(model, "_quantization_mode", None) is not None:
        raise ValueError(
            f"model '{model.name}' was quantized to {model._quantization_mode} for inference "
            "(model.quantize): aslnet does not train quantized models.  Train the float32 "
            "model, then call quantize again")

