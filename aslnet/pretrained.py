"""ImageNet-pretrained MobileNet v1 and v2 (alpha 1.0, 224) weights in Keras layer names and
layouts.

The weights come from the quantization-aware-trained TFLite models of the public
``google-coral/test_data`` repository, dequantized to float32 (see ``aslnet._tflite``).
Batch normalization is folded into those convolutions (kernel and bias, no statistics);
``bn_init`` of :func:`mobilenet_v1_weights` / :func:`mobilenet_v2_weights` chooses how Keras's
batch-norm layers are filled.

Weight files are found like Keras finds its own: :func:`resolve_weights_dir` looks at an
explicit folder, then the cache ``$ASLNET_HOME/weights`` (default
``~/.cache/aslnet/weights``), then a folder named by ``$ASLNET_WEIGHTS``, and else downloads
the files into the cache (base URL ``$ASLNET_WEIGHTS_URL``, default the pinned GitHub
commit), verifying SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from aslnet import _core
from aslnet._tflite import TFLiteModel, read_tflite

__all__ = [
    "BN_EPSILON", "BLOCK_STRIDES", "BN_LAYERS", "WEIGHT_FILES", "DEFAULT_WEIGHTS_URL",
    "WeightsNotFoundError", "WeightsIntegrityError", "weights_cache_dir", "resolve_weights_dir",
    "mobilenet_v1_weights", "imagenet_head", "imagenet_labels", "folded_bn", "bn_from_stats",
    "V2_FILE", "V2_WEIGHT_FILES", "mobilenet_v2_weights", "mobilenet_v2_head",
    "SYNSETS_FILE", "CLASS_INDEX_FILES", "imagenet_synsets", "imagenet_output_ranges",
]

log = logging.getLogger(__name__)

BN_EPSILON = 1e-3
"""Epsilon of Keras MobileNet's BatchNormalization layers."""

BLOCK_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
"""Depthwise stride of each of MobileNet v1's 13 depthwise-separable blocks."""

BN_LAYERS = ("conv1_bn",) + tuple(f"conv_{kind}_{k}_bn" for k in range(1, len(BLOCK_STRIDES) + 1)
                                  for kind in ("dw", "pw"))
"""Names of the batch-norm layers, in network order."""

EMBEDDING_FILE = "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
HEAD_FILE = "mobilenet_v1_1.0_224_quant_head_layers.tflite"
LABELS_FILE = "imagenet_labels.txt"

WEIGHT_FILES = {
    EMBEDDING_FILE: "f409ef4f73fcbb9667841965623c5c8524aac33d41b9bf5f3667161fb4a76319",
    HEAD_FILE: "65a88984b258c6f3c99d7573acac8cf85bd747293d83d51fafc1c2fb6d632286",
    LABELS_FILE: "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
}
"""The files MobileNet v1 needs, with their SHA-256 (the default set of each function that
takes ``files``)."""

V2_FILE = "mobilenet_v2_1.0_224_quant.tflite"
V2_WEIGHT_FILES = {
    V2_FILE: "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
    LABELS_FILE: WEIGHT_FILES[LABELS_FILE],
}
"""The files MobileNet v2 needs (same repository and commit), with their SHA-256."""

SYNSETS_FILE = "imagenet_synsets.txt"
CLASS_INDEX_FILES = {
    SYNSETS_FILE: "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15",
    LABELS_FILE: WEIGHT_FILES[LABELS_FILE],
}
"""Keras's class index (WordNet id and name of each class): the WordNet ids of the 1000
ILSVRC-2012 classes in Keras order, one a line (not in the download repository: found in
the folder given, the cache or ``$ASLNET_WEIGHTS`` only), and the labels."""

DEFAULT_WEIGHTS_URL = ("https://raw.githubusercontent.com/google-coral/test_data/"
                       "104342d2d3480b3e66203073dac24f4e2dbb4c41")

_DOWNLOAD_TIMEOUT_S = 60


class WeightsNotFoundError(FileNotFoundError):
    """The weight files are neither available locally nor downloadable."""


class WeightsIntegrityError(ValueError):
    """A weight file is present but its SHA-256 is not the expected one."""


# ---------------------------------------------------------------------------------------------
# Finding the files


def weights_cache_dir() -> Path:
    """The download cache, ``$ASLNET_HOME/weights`` (default ``~/.cache/aslnet/weights``)."""
    return Path(os.environ.get("ASLNET_HOME") or "~/.cache/aslnet").expanduser() / "weights"


def resolve_weights_dir(explicit: str | os.PathLike | None = None, *,
                        files: Mapping[str, str] = WEIGHT_FILES) -> Path:
    """Return a folder holding all of ``files`` (name -> SHA-256; default
    :data:`WEIGHT_FILES`, v1's; :data:`V2_WEIGHT_FILES` for v2), verified by SHA-256.

    Order: ``explicit`` (if given it must hold the files: no fallback), the cache
    :func:`weights_cache_dir`, the folder ``$ASLNET_WEIGHTS`` (each used if it holds all the
    files), then a download of the files missing from the cache, or corrupt there, into the
    cache.  Raises :class:`WeightsIntegrityError` for a file with a wrong hash in ``explicit``
    or ``$ASLNET_WEIGHTS`` (folders of the user's: never overwritten) and
    :class:`WeightsNotFoundError` when the files can be neither found nor fetched.
    """
    if explicit is not None:
        folder = Path(explicit).expanduser()
        missing = _missing_files(folder, files)
        if missing:
            raise WeightsNotFoundError(
                f"{folder} lacks the MobileNet weight files {', '.join(missing)}")
        return folder
    cache = weights_cache_dir()
    missing, corrupt = _check_files(cache, files)
    if not missing and not corrupt:
        return cache
    if os.environ.get("ASLNET_WEIGHTS"):
        folder = Path(os.environ["ASLNET_WEIGHTS"]).expanduser()
        if not _missing_files(folder, files):
            return folder
    for name in corrupt:        # the cache is aslnet's: a bad file there is fetched again
        log.warning("%s has the wrong SHA-256 (an interrupted copy or another version); "
                    "downloading it again", cache / name)
    _download(missing + corrupt, cache, files)
    return cache


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_files(folder: Path, files: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Names of the needed files (absent from ``folder``, there with a wrong SHA-256)."""
    missing, corrupt = [], []
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            missing.append(name)
        elif _sha256(path) != expected:
            corrupt.append(name)
    return missing, corrupt


def _missing_files(folder: Path, files: Mapping[str, str]) -> list[str]:
    """Names of the needed files absent from ``folder``; raise if a present one is corrupt
    (a folder of the user's: never overwritten)."""
    missing, corrupt = _check_files(folder, files)
    if corrupt:
        path = folder / corrupt[0]
        raise WeightsIntegrityError(
            f"{path} has the wrong SHA-256 (expected {files[corrupt[0]]}); the file is "
            f"corrupt or not the expected version: delete or replace it")
    return missing


def _download(names: list[str], dest: Path, files: Mapping[str, str]) -> None:
    """Download ``names`` into ``dest``, each verified and then atomically renamed in place."""
    base = (os.environ.get("ASLNET_WEIGHTS_URL") or DEFAULT_WEIGHTS_URL).rstrip("/")
    for name in names:
        url = f"{base}/{name}"
        log.info("downloading %s", url)
        try:
            dest.mkdir(parents=True, exist_ok=True)
            _fetch(url, dest / name, files[name])
        except (OSError, http.client.HTTPException) as e:
            raise WeightsNotFoundError(
                f"MobileNet weights not found locally and the download of {url} failed ({e}). "
                f"Needed files: {', '.join(files)} (from {DEFAULT_WEIGHTS_URL}). Put them "
                f"in {dest}, or in a folder named by $ASLNET_WEIGHTS, or pass the folder "
                f"explicitly") from e


def _fetch(url: str, dest: Path, sha256: str) -> None:
    """Download ``url`` to ``dest`` if its SHA-256 matches (temp file in its folder, rename)."""
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        data = response.read()  # raises IncompleteRead on a cut connection
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise WeightsIntegrityError(
            f"{url}: downloaded file has SHA-256 {digest}, expected {sha256}; not used")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# Batch-norm initialisations


def folded_bn(bias: np.ndarray) -> list[np.ndarray]:
    """Keras BN weights ``[gamma, beta, moving_mean, moving_variance]`` that add ``bias``.

    ``gamma = 1, beta = bias, mean = 0, variance = 1 - epsilon``: in inference mode the
    layer computes ``x + bias`` exactly (``variance + epsilon`` rounds to 1 in float32).
    """
    bias = np.asarray(bias, np.float32)
    return [np.ones_like(bias), bias.copy(), np.zeros_like(bias),
            np.full_like(bias, 1.0 - BN_EPSILON)]


def bn_from_stats(bias: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> list[np.ndarray]:
    """Keras BN weights that add ``bias`` in inference mode and carry measured statistics.

    ``mean``/``variance`` are the per-channel statistics of the layer's input;
    ``gamma = sqrt(variance + epsilon), beta = bias + mean`` keeps the function ``x + bias``.
    """
    bias, mean, variance = (np.asarray(a, np.float64) for a in (bias, mean, variance))
    if not bias.shape == mean.shape == variance.shape:
        raise ValueError(f"shapes differ: bias {bias.shape}, mean {mean.shape}, "
                         f"variance {variance.shape}")
    return [a.astype(np.float32) for a in
            (np.sqrt(variance + BN_EPSILON), bias + mean, mean, variance)]


# ---------------------------------------------------------------------------------------------
# Weights


def _ohwi_to_hwio(kernel: np.ndarray) -> np.ndarray:
    """TFLite conv kernel (out, h, w, in) -> Keras Conv2D kernel (h, w, in, out)."""
    return np.ascontiguousarray(kernel.transpose(1, 2, 3, 0))


def _depthwise_to_keras(kernel: np.ndarray) -> np.ndarray:
    """TFLite depthwise kernel (1, h, w, C), multiplier 1 -> Keras (h, w, C, 1)."""
    return np.ascontiguousarray(kernel[0, :, :, :, None])


def _structure_error(model: TFLiteModel, msg: str, version: str = "v1") -> ValueError:
    return ValueError(f"{model.path}: not the expected MobileNet {version} layout: {msg}")


def _conv_params(model: TFLiteModel, index: int, opcode: str,
                 stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of operator ``index`` after checking its type, stride and activation."""
    op = model.operators[index]
    o = op.options
    if op.opcode != opcode:
        raise _structure_error(model, f"operator {index} is {op.opcode}, expected {opcode}")
    if ((o.get("stride_h"), o.get("stride_w")) != (stride, stride) or o.get("padding") != "SAME"
            or o.get("fused_activation") != "RELU6" or o.get("depth_multiplier", 1) != 1):
        raise _structure_error(model, f"operator {index} ({opcode}) has options {o}")
    if index > 0 and op.inputs[0] != model.operators[index - 1].outputs[0]:
        raise _structure_error(model, f"operator {index} does not follow operator {index - 1}")
    kernel, bias = (model.tensors[t].data for t in op.inputs[1:3])
    if kernel is None or bias is None:
        raise _structure_error(model, f"operator {index} has no constant kernel and bias")
    _check_keras_padding(model, index, stride, kernel.shape[1:3])
    return kernel, bias


def _check_keras_padding(model: TFLiteModel, index: int, stride: int, kernel_hw) -> None:
    """TFLite pads each convolution 'SAME'; Keras's MobileNet pads a stride-2 one with
    ``ZeroPadding2D(((0, 1), (0, 1)))`` and 'valid' (stride 1: 'same').  The two compute the
    same only where TF's 'same' rule (the C core's, ``_core.conv_geometry``) pads 0 before
    and 1 after on this operator's input: true at even sizes (224 -> 112), not at odd ones."""
    shape = model.tensors[model.operators[index].inputs[0]].shape
    if stride == 1 or len(shape) != 4:
        return
    for size, k in zip(shape[1:3], kernel_hw):
        if _core.conv_geometry(size, k, stride, "same")[1:] != (0, 1):
            raise _structure_error(model, f"operator {index}: 'SAME' padding of a size-{size} "
                                   "input is not Keras's ZeroPadding2D((0, 1)) + 'valid'")


def _bn_weights(name: str, bias: np.ndarray, bn_init) -> list[np.ndarray]:
    if isinstance(bn_init, str):
        return folded_bn(bias)
    mean, variance = bn_init[name]
    return bn_from_stats(bias, mean, variance)


def mobilenet_v1_weights(path_dir: str | os.PathLike | None = None, *,
                         bn_init: str | Mapping = "folded") -> dict[str, list[np.ndarray]]:
    """Keras MobileNet v1 weights: layer name -> weight list in Keras order and layout (float32).

    Layers: ``conv1`` [kernel (3,3,3,32)], ``conv1_bn``, then per block k = 1..13
    ``conv_dw_k`` [depthwise kernel (3,3,C,1)], ``conv_dw_k_bn``, ``conv_pw_k``
    [kernel (1,1,Cin,Cout)], ``conv_pw_k_bn``, and ``conv_preds`` [kernel (1,1,1024,1000),
    bias (1000,)] with the background class dropped. Each ``*_bn`` is
    [gamma, beta, moving_mean, moving_variance] (epsilon :data:`BN_EPSILON`).

    ``path_dir``: folder with the files, resolved by :func:`resolve_weights_dir`.
    ``bn_init``: ``'folded'`` (:func:`folded_bn`), or a mapping from every BN layer name to
    the measured ``(mean, variance)`` of its input (:func:`bn_from_stats`). Either way the
    network computes the same function in inference mode.
    """
    if isinstance(bn_init, str):
        if bn_init != "folded":
            raise ValueError(f"bn_init must be 'folded' or a mapping of statistics: {bn_init!r}")
    else:
        missing = [name for name in BN_LAYERS if name not in bn_init]
        if missing:
            raise ValueError(f"bn_init lacks statistics for {missing}")
    folder = resolve_weights_dir(path_dir)
    model = read_tflite(folder / EMBEDDING_FILE)
    if len(model.operators) != 2 + 2 * len(BLOCK_STRIDES):
        raise _structure_error(model, f"{len(model.operators)} operators")

    kernel, bias = _conv_params(model, 0, "CONV_2D", 2)
    weights = {"conv1": [_ohwi_to_hwio(kernel)], "conv1_bn": _bn_weights("conv1_bn", bias, bn_init)}
    for k, stride in enumerate(BLOCK_STRIDES, start=1):
        kernel, bias = _conv_params(model, 2 * k - 1, "DEPTHWISE_CONV_2D", stride)
        weights[f"conv_dw_{k}"] = [_depthwise_to_keras(kernel)]
        weights[f"conv_dw_{k}_bn"] = _bn_weights(f"conv_dw_{k}_bn", bias, bn_init)
        kernel, bias = _conv_params(model, 2 * k, "CONV_2D", 1)
        if kernel.shape[1:3] != (1, 1):
            raise _structure_error(model, f"pointwise kernel of block {k} is {kernel.shape}")
        weights[f"conv_pw_{k}"] = [_ohwi_to_hwio(kernel)]
        weights[f"conv_pw_{k}_bn"] = _bn_weights(f"conv_pw_{k}_bn", bias, bn_init)
    if model.operators[-1].opcode != "AVERAGE_POOL_2D":
        raise _structure_error(model, f"last operator is {model.operators[-1].opcode}")

    head_kernel, head_bias = _read_head(folder)
    weights["conv_preds"] = [np.ascontiguousarray(head_kernel[..., 1:]), head_bias[1:].copy()]
    return weights


def _read_head(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    model = read_tflite(folder / HEAD_FILE)
    if not model.operators:
        raise _structure_error(model, "no operators")
    op = model.operators[0]
    if op.opcode != "CONV_2D" or op.options.get("fused_activation") != "NONE":
        raise _structure_error(model, f"first operator is {op.opcode} {op.options}")
    kernel, bias = (model.tensors[t].data for t in op.inputs[1:3])
    if kernel is None or bias is None or kernel.shape[1:3] != (1, 1):
        raise _structure_error(model, "the classifier is not a 1x1 convolution with bias")
    return _ohwi_to_hwio(kernel), bias


def imagenet_head(path_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 1001-class classifier (class 0 = background): kernel (1,1,1024,1001), bias (1001,)."""
    return _read_head(resolve_weights_dir(path_dir))


def imagenet_labels(path_dir: str | os.PathLike | None = None, *,
                    include_background: bool = False,
                    files: Mapping[str, str] = WEIGHT_FILES) -> list[str]:
    """ImageNet class names in Keras order (1000), or the 1001 of TFLite ('background' first).

    ``files``: the set :func:`resolve_weights_dir` looks for (the labels are in each)."""
    path = resolve_weights_dir(path_dir, files=files) / LABELS_FILE
    labels = path.read_text(encoding="utf-8").splitlines()
    if len(labels) != 1001 or labels[0] != "background":
        raise ValueError(f"{path}: expected 1001 labels starting with 'background'")
    return labels if include_background else labels[1:]


# ---------------------------------------------------------------------------------------------
# MobileNet v2


def mobilenet_v2_weights(path_dir: str | os.PathLike | None = None, *,
                         bn_init: str | Mapping = "folded") -> dict[str, list[np.ndarray]]:
    """Keras MobileNetV2 (alpha 1.0) weights: layer name -> weight list in Keras order and
    layout (float32), for every layer with weights, in ``model.layers`` order.

    Layers and shapes are those of ``aslnet.applications._mobilenet_v2_spec.layer_table()``:
    ``Conv1`` [kernel (3,3,3,32)], ``bn_Conv1``, then per block ``expand`` [(1,1,C,tC)]
    (blocks 1..16), ``depthwise`` [(3,3,tC,1)], ``project`` [(1,1,tC,C')], each followed by
    its ``*_BN``; ``Conv_1`` [(1,1,320,1280)], ``Conv_1_bn`` and ``predictions``
    [kernel (1280,1000), bias (1000,)] with the background class dropped.  Keras's
    convolutions have no bias: the folded bias goes to the batch norm after it, as
    :func:`mobilenet_v1_weights` does; ``bn_init`` is ``'folded'`` (:func:`folded_bn`) or a
    mapping from every batch-norm name to the measured ``(mean, variance)`` of its input
    (:func:`bn_from_stats`; ``aslnet.models.recalibrate_batch_norm`` measures them on a
    built model).  Either way the network computes the TFLite graph's function in inference
    mode, with every tensor the float32 dequantized value.

    ``path_dir``: folder with :data:`V2_WEIGHT_FILES`, resolved by :func:`resolve_weights_dir`.
    The graph is checked operator by operator against Keras's layer list (types, strides,
    "SAME" padding, fused ReLU6, the residual adds' inputs, kernel shapes): a file of another
    layout is a ``ValueError`` naming the operator.
    """
    from .applications._mobilenet_v2_spec import bn_layer_names
    if isinstance(bn_init, str):
        if bn_init != "folded":
            raise ValueError(f"bn_init must be 'folded' or a mapping of statistics: {bn_init!r}")
    else:
        missing = [name for name in bn_layer_names() if name not in bn_init]
        if missing:
            raise ValueError(f"bn_init lacks statistics for {missing}")
    weights, _, _ = _read_v2(resolve_weights_dir(path_dir, files=V2_WEIGHT_FILES), bn_init)
    return weights


def mobilenet_v2_head(path_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MobileNet v2's 1001-class classifier as a Dense layer (class 0 = background):
    kernel (1280, 1001), bias (1001,)."""
    _, head, _ = _read_v2(resolve_weights_dir(path_dir, files=V2_WEIGHT_FILES), "folded")
    return head


def _read_v2(folder: Path, bn_init) -> tuple[dict[str, list[np.ndarray]], tuple, dict]:
    """Walk the TFLite graph along Keras's layer table; (Keras weights, 1001-class head,
    the quantized output ranges of the layers whose output a TFLite tensor holds)."""
    from .applications._mobilenet_v2_spec import layer_table
    model = read_tflite(folder / V2_FILE)

    def fail(msg):
        return _structure_error(model, msg, "v2")

    if len(model.inputs) != 1 or model.tensors[model.inputs[0]].shape != (1, 224, 224, 3):
        raise fail("the input is not one (1, 224, 224, 3) image")
    table = layer_table()
    ops = iter(enumerate(model.operators))
    tensor_of = {"input": model.inputs[0]}     # Keras layer name -> TFLite tensor it equals
    weights: dict[str, list[np.ndarray]] = {}
    bias = head = None

    def next_op(opcode, spec):
        try:
            index, op = next(ops)
        except StopIteration:
            raise fail(f"the graph ends before Keras's layer {spec.name}") from None
        if op.opcode != opcode:
            raise fail(f"operator {index} is {op.opcode}, expected {opcode} for {spec.name}")
        sources = {tensor_of[name] for name in spec.inputs}
        if set(op.inputs[:len(spec.inputs)]) != sources:
            raise fail(f"operator {index} ({opcode}) does not read what Keras's {spec.name} "
                       f"reads ({', '.join(spec.inputs)})")
        tensor_of[spec.name] = op.outputs[0]
        return index, op

    for k, spec in enumerate(table):
        if spec.kind in ("Conv2D", "DepthwiseConv2D", "Dense"):
            opcode = "DEPTHWISE_CONV_2D" if spec.kind == "DepthwiseConv2D" else "CONV_2D"
            index, op = next_op(opcode, spec)
            stride = spec.config.get("strides", (1, 1))[0]
            relu = k + 2 < len(table) and table[k + 2].kind == "ReLU"
            o = op.options
            if ((o["stride_h"], o["stride_w"]) != (stride, stride) or o["padding"] != "SAME"
                    or o["fused_activation"] != ("RELU6" if relu else "NONE")
                    or o.get("depth_multiplier", 1) != 1
                    or (o.get("dilation_h", 1), o.get("dilation_w", 1)) != (1, 1)):
                raise fail(f"operator {index} ({opcode}, Keras's {spec.name}) has options {o}")
            kernel, bias = (model.tensors[t].data for t in op.inputs[1:3])
            if kernel is None or bias is None:
                raise fail(f"operator {index} has no constant kernel and bias")
            if spec.kind == "DepthwiseConv2D":
                kernel = _depthwise_to_keras(kernel)
            else:
                kernel = _ohwi_to_hwio(kernel)
            if spec.kind == "Dense":    # 1x1 conv (1, 1, 1280, 1001) -> Dense, background dropped
                kernel = kernel[0, 0]
                head = (kernel, bias)
                kernel, bias = np.ascontiguousarray(kernel[:, 1:]), bias[1:].copy()
                weights[spec.name] = [kernel, bias]
            else:
                weights[spec.name] = [kernel]
            if tuple(kernel.shape) != spec.weight_shapes[0]:
                raise fail(f"operator {index}: kernel of {spec.name} is {kernel.shape} in Keras's "
                           f"layout, expected {spec.weight_shapes[0]}")
        elif spec.kind == "BatchNormalization":
            weights[spec.name] = _bn_weights(spec.name, bias, bn_init)
            tensor_of[spec.name] = tensor_of[spec.inputs[0]]
        elif spec.kind in ("ReLU", "ZeroPadding2D"):    # fused into the conv; padding: "SAME"
            tensor_of[spec.name] = tensor_of[spec.inputs[0]]
        elif spec.kind == "Add":
            index, op = next_op("ADD", spec)
            if op.options.get("fused_activation", "NONE") != "NONE":
                raise fail(f"operator {index} (ADD, {spec.name}) has options {op.options}")
        elif spec.kind == "GlobalAveragePooling2D":
            index, op = next_op("AVERAGE_POOL_2D", spec)
            size = model.tensors[op.inputs[0]].shape[1:3]
            if ((op.options["filter_h"], op.options["filter_w"]) != tuple(size)
                    or op.options["padding"] != "VALID"):
                raise fail(f"operator {index} is not a global average pooling: {op.options}")
        else:
            raise fail(f"no TFLite counterpart for Keras's {spec.kind} {spec.name}")
    rest = [op.opcode for _, op in ops]
    if rest != ["RESHAPE", "SOFTMAX"]:
        raise fail(f"the graph ends with {rest} after the classifier, expected RESHAPE, SOFTMAX")
    # a conv's TFLite output is after its fused batch norm and ReLU6: it is the output of
    # the ReLU, or of the batch norm where no ReLU follows (a projection)
    ends = {spec.name for k, spec in enumerate(table) if spec.kind in ("ReLU", "Add") or (
        spec.kind == "BatchNormalization" and (k + 1 == len(table) or table[k + 1].kind != "ReLU"))}
    ranges = {name: _range(model, tensor_of[name]) for name in ends}
    ranges[None] = _range(model, model.inputs[0])
    return weights, head, ranges


def _range(model: TFLiteModel, index: int) -> tuple[float, float]:
    """The real values a per-tensor quantized uint8/int8 tensor spans: scale * (q - zero_point)
    at the type's two ends."""
    t = model.tensors[index]
    q = t.quantization
    limits = {"UINT8": (0, 255), "INT8": (-128, 127)}.get(t.dtype)
    if q is None or q.axis is not None or limits is None:
        raise _structure_error(model, f"tensor {t.name!r} ({t.dtype}) is not quantized per "
                                      "tensor to 8 bits")
    scale, zero = float(q.scale[0]), float(q.zero_point[0]) if q.zero_point.size else 0.0
    return scale * (limits[0] - zero), scale * (limits[1] - zero)


def imagenet_output_ranges(arch: str, path_dir: str | os.PathLike | None = None
                           ) -> dict[str | None, tuple[float, float]]:
    """The activation ranges the ImageNet TFLite file of ``arch`` ('mobilenet' or
    'mobilenet_v2') was quantized with (its training learned them): Keras layer name ->
    (min, max) of that layer's output, for the layers whose output is a tensor of the file
    (each ReLU6, MobileNetV2's projections and adds); key None: the model's input.
    ``model.quantize("int8")`` of an ImageNet model uses them where no calibration data is
    given."""
    if arch == "mobilenet_v2":
        return _read_v2(resolve_weights_dir(path_dir, files=V2_WEIGHT_FILES), "folded")[2]
    if arch != "mobilenet":
        raise ValueError(f"arch must be 'mobilenet' or 'mobilenet_v2', got {arch!r}")
    model = read_tflite(resolve_weights_dir(path_dir) / EMBEDDING_FILE)
    if len(model.operators) != 2 + 2 * len(BLOCK_STRIDES):
        raise _structure_error(model, f"{len(model.operators)} operators")
    names = ["conv1_relu"] + [f"conv_{kind}_{k}_relu" for k in range(1, len(BLOCK_STRIDES) + 1)
                              for kind in ("dw", "pw")]
    ranges: dict[str | None, tuple[float, float]] = {None: _range(model, model.inputs[0])}
    for op, name in zip(model.operators, names):
        if op.options.get("fused_activation") != "RELU6":
            raise _structure_error(model, f"{op.opcode} before {name} has options {op.options}")
        ranges[name] = _range(model, op.outputs[0])
    return ranges


def imagenet_synsets(path_dir: str | os.PathLike | None = None) -> list[str]:
    """The WordNet ids of the 1000 ImageNet classes in Keras order (class 285, Egyptian
    cat: ``'n02124075'``), from :data:`SYNSETS_FILE` found by :func:`resolve_weights_dir`."""
    path = resolve_weights_dir(path_dir, files=CLASS_INDEX_FILES) / SYNSETS_FILE
    synsets = path.read_text(encoding="ascii").split()
    if len(synsets) != 1000:
        raise ValueError(f"{path}: expected 1000 WordNet ids, found {len(synsets)}")
    return synsets
