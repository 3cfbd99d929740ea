"""Pretrained-weight import: TFLite parsing, Keras layout, reference outputs, file resolution."""

import contextlib
import http.server
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from aslnet._tflite import read_tflite
from aslnet.pretrained import (
    BN_EPSILON, BN_LAYERS, EMBEDDING_FILE, HEAD_FILE, LABELS_FILE, WEIGHT_FILES,
    WeightsIntegrityError, WeightsNotFoundError, bn_from_stats, folded_bn, imagenet_head,
    imagenet_labels, mobilenet_v1_weights, resolve_weights_dir, weights_cache_dir)
from tests.reference.numpy_mobilenet import (
    batch_norm, conv2d, depthwise_conv2d, mobilenet_v1, random_weights)

IMAGES = ["cat.bmp", "bird.bmp", "grace_hopper.bmp", "parrot.jpg"]


def rel_err(actual, expected) -> float:
    """Max abs error relative to the max abs expected value."""
    return float(np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max())


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Keep tests away from the user's cache, their settings and the internet."""
    monkeypatch.setenv("ASLNET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ASLNET_WEIGHTS", raising=False)
    with socket.socket() as s:  # a port nobody listens on: downloads fail fast
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("ASLNET_WEIGHTS_URL", f"http://127.0.0.1:{s.getsockname()[1]}")


@pytest.fixture(scope="module")
def keras_weights(shared_weights_dir):
    return mobilenet_v1_weights(shared_weights_dir)


def populate(folder: Path, source: Path, names=tuple(WEIGHT_FILES)) -> Path:
    """Copy weight files from ``source`` into ``folder`` (a tmp dir) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(source / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, shared_weights_dir) -> Path:
    """A tmp copy of the files that the download server publishes."""
    return populate(tmp_path_factory.mktemp("mirror"), shared_weights_dir)


@contextlib.contextmanager
def serve(directory: Path, truncate=()):
    """Serve ``directory`` on 127.0.0.1; yield (base URL, list of requested names).

    Files named in ``truncate`` are announced at full length but cut in half.
    """
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            name = self.path.lstrip("/")
            requests.append(name)
            if name in truncate:
                data = (directory / name).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])  # HTTP/1.0: connection closes now
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- TFLite reader ---------------------------------------------------------------------------


def test_tflite_embedding_extractor_ops(shared_weights_dir):
    model = read_tflite(shared_weights_dir / EMBEDDING_FILE)
    ops = model.operators
    assert [op.opcode for op in ops] == (
        ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 13 + ["AVERAGE_POOL_2D"])
    assert model.tensors[model.inputs[0]].shape == (1, 224, 224, 3)
    assert model.tensors[model.outputs[0]].shape == (1, 1, 1, 1024)
    dw_strides = [op.options["stride_h"] for op in ops if op.opcode == "DEPTHWISE_CONV_2D"]
    assert dw_strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    for op in ops[:-1]:
        assert op.options["padding"] == "SAME"
        assert op.options["fused_activation"] == "RELU6"
        assert op.options.get("depth_multiplier", 1) == 1
    assert ops[-1].options["filter_h"] == ops[-1].options["filter_w"] == 7


def test_tflite_dequantization(shared_weights_dir):
    """Constants dequantize to float32 on their uint8/int32 grid: q = w / scale + zero_point."""
    model = read_tflite(shared_weights_dir / EMBEDDING_FILE)
    constants = [t for t in model.tensors if t.data is not None]
    assert len(constants) == 2 * 27
    for t in constants:
        assert t.data.dtype == np.float32 and t.data.shape == t.shape
        assert t.quantization is not None and t.quantization.axis is None  # per tensor
        scale, zero_point = float(t.quantization.scale[0]), int(t.quantization.zero_point[0])
        q = t.data.astype(np.float64) / scale + zero_point
        np.testing.assert_allclose(q, np.round(q), atol=1e-3)
        if t.dtype == "UINT8":
            assert q.min() > -0.5 and q.max() < 255.5
        else:
            assert t.dtype == "INT32" and zero_point == 0 and t.name.endswith("bias")


def test_tflite_head_and_v2(shared_weights_dir):
    head = read_tflite(shared_weights_dir / HEAD_FILE)
    assert [op.opcode for op in head.operators] == ["CONV_2D", "RESHAPE", "SOFTMAX"]
    assert head.operators[1].options == {"new_shape": (1, 1001)}
    shape_operand = head.tensors[head.operators[1].inputs[1]].data  # unquantized: stored values
    assert shape_operand.dtype == np.int32 and shape_operand.tolist() == [1, 1001]
    v2 = read_tflite(shared_weights_dir / "mobilenet_v2_1.0_224_quant.tflite")
    opcodes = [op.opcode for op in v2.operators]
    assert opcodes.count("ADD") == 10 and opcodes[-1] == "SOFTMAX"


def test_tflite_rejects_non_model(tmp_path):
    for content in (b"", b"hello", b"not a flatbuffer at all, just some text\n" * 10):
        path = tmp_path / "bad.tflite"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="not a TensorFlow Lite model") as info:
            read_tflite(path)
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_tflite(tmp_path / "missing.tflite")


@pytest.mark.parametrize("keep", [8, 12, 1000, 0.5, 0.99, -16])
def test_tflite_rejects_truncated(shared_weights_dir, tmp_path, keep):
    data = (shared_weights_dir / EMBEDDING_FILE).read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "truncated.tflite"
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        read_tflite(path)
    assert str(path) in str(info.value)


# --- Keras weights ---------------------------------------------------------------------------


def expected_shapes() -> dict:
    shapes = {"conv1": [(3, 3, 3, 32)], "conv1_bn": [(32,)] * 4}
    cin = 32
    for k, cout in enumerate([64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024], 1):
        shapes[f"conv_dw_{k}"] = [(3, 3, cin, 1)]
        shapes[f"conv_dw_{k}_bn"] = [(cin,)] * 4
        shapes[f"conv_pw_{k}"] = [(1, 1, cin, cout)]
        shapes[f"conv_pw_{k}_bn"] = [(cout,)] * 4
        cin = cout
    shapes["conv_preds"] = [(1, 1, 1024, 1000), (1000,)]
    return shapes


def test_weight_names_and_shapes(keras_weights):
    got = {name: [a.shape for a in arrays] for name, arrays in keras_weights.items()}
    assert list(got) == list(expected_shapes())
    assert got == expected_shapes()
    assert list(BN_LAYERS) == [name for name in got if name.endswith("_bn")]
    assert all(a.dtype == np.float32 for arrays in keras_weights.values() for a in arrays)


def test_folded_bn(keras_weights, shared_weights_dir):
    model = read_tflite(shared_weights_dir / EMBEDDING_FILE)
    conv1_bias = model.tensors[model.operators[0].inputs[2]].data
    gamma, beta, mean, var = keras_weights["conv1_bn"]
    np.testing.assert_array_equal(beta, conv1_bias)
    assert np.all(gamma == 1) and np.all(mean == 0)
    assert np.all(var + np.float32(BN_EPSILON) == 1)  # exact in float32: BN adds beta only
    conv1_kernel = model.tensors[model.operators[0].inputs[1]].data  # OHWI
    np.testing.assert_array_equal(keras_weights["conv1"][0], conv1_kernel.transpose(1, 2, 3, 0))


def test_conv_preds_drops_background(keras_weights, shared_weights_dir):
    kernel, bias = imagenet_head(shared_weights_dir)
    assert kernel.shape == (1, 1, 1024, 1001) and bias.shape == (1001,)
    np.testing.assert_array_equal(keras_weights["conv_preds"][0], kernel[..., 1:])
    np.testing.assert_array_equal(keras_weights["conv_preds"][1], bias[1:])


def test_bn_init_from_stats_is_same_function(shared_weights_dir):
    rng = np.random.default_rng(1)
    folded = mobilenet_v1_weights(shared_weights_dir)
    stats = {}
    for name in BN_LAYERS:
        channels = folded[name][1].shape
        stats[name] = (rng.normal(0, 2, channels), rng.uniform(0.01, 9, channels))
    recal = mobilenet_v1_weights(shared_weights_dir, bn_init=stats)
    x = rng.normal(0, 3, (5, 32))
    for name in BN_LAYERS:
        gamma, beta, mean, var = recal[name]
        np.testing.assert_allclose(mean, stats[name][0].astype(np.float32))
        np.testing.assert_allclose(gamma, np.sqrt(stats[name][1] + BN_EPSILON), rtol=1e-6)
        if name == "conv1_bn":
            bias = folded[name][1]
            np.testing.assert_allclose(batch_norm(x, *recal[name]), x + bias, atol=1e-5)
            np.testing.assert_allclose(batch_norm(x, *folded[name]), x + bias, atol=1e-6)
    assert all(np.array_equal(folded[n][0], recal[n][0]) for n in folded if not n.endswith("_bn"))


def test_bn_init_rejects_bad_values(shared_weights_dir):
    with pytest.raises(ValueError, match="bn_init"):
        mobilenet_v1_weights(shared_weights_dir, bn_init="recalibrated")
    with pytest.raises(ValueError, match="conv_pw_13_bn"):
        mobilenet_v1_weights(shared_weights_dir, bn_init={"conv1_bn": (np.zeros(32), np.ones(32))})
    with pytest.raises(ValueError, match="shapes differ"):
        bn_from_stats(np.zeros(3), np.zeros(4), np.ones(3))
    assert [a.dtype for a in folded_bn(np.zeros(3))] == [np.float32] * 4


def test_labels(shared_weights_dir):
    labels = imagenet_labels(shared_weights_dir)
    full = imagenet_labels(shared_weights_dir, include_background=True)
    assert len(labels) == 1000 and labels[0] == "tench, Tinca tinca"
    assert len(full) == 1001 and full[0] == "background" and full[1:] == labels


# --- Reference outputs -----------------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES)
def test_reference_outputs(image, keras_weights, shared_weights_dir):
    """The NumPy twin with the imported weights reproduces the shared float64 oracle."""
    ref = shared_weights_dir / "reference"
    stem = image.rsplit(".", 1)[0]
    weights = dict(keras_weights, conv_preds=list(imagenet_head(shared_weights_dir)))
    embedding, logits = mobilenet_v1(weights, np.load(ref / f"{stem}.input.npy"))
    expected_logits = np.load(ref / f"{stem}.logits.npy")
    assert rel_err(embedding, np.load(ref / f"{stem}.embedding.npy")) < 1e-4
    assert rel_err(logits, expected_logits) < 1e-4

    top5 = json.loads((ref / "top5.json").read_text())[image]
    labels = imagenet_labels(shared_weights_dir, include_background=True)
    assert [int(i) for i in np.argsort(-logits)[:5]] == [i for i, _, _ in top5]
    assert [labels[i] for i, _, _ in top5] == [name for _, name, _ in top5]

    kernel, bias = keras_weights["conv_preds"]  # the 1000-class Keras head
    assert rel_err(embedding @ kernel[0, 0] + bias, expected_logits[1:]) < 1e-4


def naive_conv(x, kernel, stride, depthwise=False):
    """Direct-loop 'valid' convolution, one output pixel at a time."""
    kh, kw, c, m = kernel.shape
    ho, wo = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, c * m if depthwise else m))
    for a in range(ho):
        for b in range(wo):
            patch = x[:, a * stride:a * stride + kh, b * stride:b * stride + kw]
            if depthwise:
                out[:, a, b] = np.einsum("nijc,ijcm->ncm", patch, kernel).reshape(len(x), -1)
            else:
                out[:, a, b] = np.einsum("nijc,ijco->no", patch, kernel)
    return out


@pytest.mark.parametrize("stride", [1, 2])
def test_reference_convolutions(stride):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 9, 8, 3))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    k = rng.normal(size=(3, 3, 3, 4))
    np.testing.assert_allclose(conv2d(x, k, stride), naive_conv(x, k, stride))
    np.testing.assert_allclose(depthwise_conv2d(x, k[..., :2], stride),
                               naive_conv(x, k[..., :2], stride, depthwise=True))
    if stride == 1:  # 'same' pads 1 on each side for a 3x3 kernel
        np.testing.assert_allclose(conv2d(x, k, 1, "same"), naive_conv(padded, k, 1))


def test_reference_small_random_model():
    """The twin is generic: alpha 0.25, depth multiplier 2, 10 classes, odd input size."""
    weights = random_weights(alpha=0.25, classes=10, depth_multiplier=2)
    images = np.random.default_rng(3).uniform(-1, 1, (2, 33, 33, 3))
    trace = {}
    embedding, logits = mobilenet_v1(weights, images, trace)
    assert embedding.shape == (2, 256) and logits.shape == (2, 10)
    assert trace["conv1"].shape == (2, 16, 16, 8) and trace["conv_pad_2"].shape == (2, 17, 17, 16)
    assert trace["conv_dw_2"].shape == (2, 8, 8, 32)
    assert trace["conv_dw_13"].shape == (2, 1, 1, 512)
    np.testing.assert_allclose(mobilenet_v1(weights, images[1])[1], logits[1])
    assert np.all(np.isfinite(logits)) and embedding.std() > 0


# --- Weight file resolution ------------------------------------------------------------------


def test_explicit_dir_first(tmp_path, shared_weights_dir, monkeypatch):
    populate(weights_cache_dir(), shared_weights_dir)
    monkeypatch.setenv("ASLNET_WEIGHTS", str(populate(tmp_path / "env", shared_weights_dir)))
    explicit = populate(tmp_path / "explicit", shared_weights_dir)
    assert resolve_weights_dir(explicit) == explicit
    assert resolve_weights_dir(str(explicit)) == explicit


def test_explicit_dir_has_no_fallback(tmp_path, shared_weights_dir):
    populate(weights_cache_dir(), shared_weights_dir)
    explicit = populate(tmp_path / "explicit", shared_weights_dir, names=[EMBEDDING_FILE])
    with pytest.raises(WeightsNotFoundError, match=HEAD_FILE):
        resolve_weights_dir(explicit)


def test_cache_before_env(tmp_path, shared_weights_dir, monkeypatch):
    cache = populate(weights_cache_dir(), shared_weights_dir)
    monkeypatch.setenv("ASLNET_WEIGHTS", str(shared_weights_dir))
    assert resolve_weights_dir() == cache


def test_env_when_cache_empty(shared_weights_dir, monkeypatch):
    monkeypatch.setenv("ASLNET_WEIGHTS", str(shared_weights_dir))
    assert resolve_weights_dir() == shared_weights_dir
    assert not weights_cache_dir().exists()
    assert mobilenet_v1_weights()["conv_preds"][1].shape == (1000,)


def test_default_cache_location(tmp_path, monkeypatch):
    monkeypatch.delenv("ASLNET_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert weights_cache_dir() == tmp_path / ".cache" / "aslnet" / "weights"


def test_corrupt_file_in_users_folder_is_an_error(tmp_path, shared_weights_dir, monkeypatch):
    """$ASLNET_WEIGHTS is the user's: a bad file there is reported, never replaced."""
    env = populate(tmp_path / "env", shared_weights_dir)
    (env / LABELS_FILE).write_text("background\n")
    monkeypatch.setenv("ASLNET_WEIGHTS", str(env))
    with pytest.raises(WeightsIntegrityError, match="wrong SHA-256") as info:
        resolve_weights_dir()
    assert str(env / LABELS_FILE) in str(info.value)
    assert (env / LABELS_FILE).read_text() == "background\n"
    with pytest.raises(WeightsIntegrityError, match="wrong SHA-256"):
        resolve_weights_dir(env)


def test_corrupt_cache_file_falls_through_to_env(shared_weights_dir, monkeypatch):
    cache = populate(weights_cache_dir(), shared_weights_dir)
    (cache / LABELS_FILE).write_text("background\n")
    monkeypatch.setenv("ASLNET_WEIGHTS", str(shared_weights_dir))
    assert resolve_weights_dir() == shared_weights_dir


def test_corrupt_cache_file_is_downloaded_again(mirror, monkeypatch, caplog):
    cache = populate(weights_cache_dir(), mirror)
    (cache / LABELS_FILE).write_text("background\n")      # e.g. an interrupted copy
    with serve(mirror) as (url, requests):
        monkeypatch.setenv("ASLNET_WEIGHTS_URL", url)
        assert resolve_weights_dir() == cache
    assert requests == [LABELS_FILE]
    assert (cache / LABELS_FILE).read_bytes() == (mirror / LABELS_FILE).read_bytes()
    assert "wrong SHA-256" in caplog.text


def test_download(mirror, monkeypatch):
    with serve(mirror) as (url, requests):
        monkeypatch.setenv("ASLNET_WEIGHTS_URL", url)
        cache = resolve_weights_dir()
        assert cache == weights_cache_dir()
        assert sorted(requests) == sorted(WEIGHT_FILES)
        assert sorted(os.listdir(cache)) == sorted(WEIGHT_FILES)
        for name in WEIGHT_FILES:
            assert (cache / name).read_bytes() == (mirror / name).read_bytes()
        assert resolve_weights_dir() == cache and len(requests) == 3  # cached now


def test_download_only_missing(mirror, monkeypatch):
    populate(weights_cache_dir(), mirror, names=[LABELS_FILE])
    with serve(mirror) as (url, requests):
        monkeypatch.setenv("ASLNET_WEIGHTS_URL", url)
        resolve_weights_dir()
    assert sorted(requests) == sorted([EMBEDDING_FILE, HEAD_FILE])


def test_download_bad_hash_leaves_nothing(tmp_path, mirror, monkeypatch):
    bad = populate(tmp_path / "bad_mirror", mirror)
    (bad / LABELS_FILE).write_text("background\ntench\n")
    with serve(bad) as (url, _):
        monkeypatch.setenv("ASLNET_WEIGHTS_URL", url)
        with pytest.raises(WeightsIntegrityError, match=LABELS_FILE):
            resolve_weights_dir()
    assert sorted(os.listdir(weights_cache_dir())) == sorted([EMBEDDING_FILE, HEAD_FILE])


def test_interrupted_download_leaves_nothing(mirror, monkeypatch):
    with serve(mirror, truncate={HEAD_FILE}) as (url, _):
        monkeypatch.setenv("ASLNET_WEIGHTS_URL", url)
        with pytest.raises(WeightsNotFoundError, match=HEAD_FILE):
            resolve_weights_dir()
    assert os.listdir(weights_cache_dir()) == [EMBEDDING_FILE]


def test_offline_without_files():
    with pytest.raises(FileNotFoundError) as info:
        resolve_weights_dir()
    assert isinstance(info.value, WeightsNotFoundError)
    message = str(info.value)
    assert all(name in message for name in WEIGHT_FILES)
    assert str(weights_cache_dir()) in message and "ASLNET_WEIGHTS" in message


def test_decode_predictions_refuses_what_is_not_a_batch_of_imagenet_scores():
    """A digit model's (1, 10) output or a TFLite-style (1, 1001) one would be decoded into
    wrong ImageNet labels without a word."""
    from aslnet.applications.mobilenet import decode_predictions
    for shape in [(1, 10), (1, 1001), (1000,)]:
        with pytest.raises(ValueError, match="shape \\(samples, 1000\\)"):
            decode_predictions(np.zeros(shape, np.float32))


def test_decode_predictions_names_as_keras(shared_weights_dir):
    """Keras's names (imagenet_class_index.json): the first synonym, spaces as
    underscores, after the WordNet id (imagenet_utils', the one home)."""
    from aslnet.applications.mobilenet import decode_predictions
    keras_names = {281: "tabby", 285: "Egyptian_cat", 400: "academic_gown",
                   607: "jack-o'-lantern", 639: "maillot", 837: "sunglasses",
                   986: "yellow_lady's_slipper", 20: "water_ouzel"}
    preds = np.zeros((len(keras_names), 1000), np.float32)
    for row, i in enumerate(keras_names):
        preds[row, i] = 1.0
    got = decode_predictions(preds, top=1, weights_dir=shared_weights_dir)
    assert [top[0][1] for top in got] == list(keras_names.values())
    assert got[1][0][0] == "n02124075"                    # Egyptian_cat, as Keras
