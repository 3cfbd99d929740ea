"""MobileNetV2's architecture table, its ImageNet weights and the float64 NumPy twin.

TensorFlow-free; the checks against Keras and against TFLite's own interpreter are in
tests/keras/test_mobilenet_v2_reference.py.
"""

import dataclasses

import numpy as np
import pytest

from aslnet import pretrained
from aslnet._tflite import read_tflite
from aslnet.applications import _mobilenet_v2_spec as spec
from aslnet.pretrained import (
    BN_EPSILON, V2_FILE, bn_from_stats, imagenet_labels, mobilenet_v2_head, mobilenet_v2_weights)
from tests.reference.numpy_mobilenet import batch_norm
from tests.reference.numpy_mobilenet_v2 import mobilenet_v2, random_weights, softmax

PHOTOS = ["cat", "bird", "grace_hopper", "parrot"]

# Top-5 of the float64 twin, Keras class indices (background dropped): one ImageNet class
# each, as the v1 oracle has them (shared/weights/reference/top5.json, top-1 only the same).
# Each photo's 5th and 6th classes are >= 1e-4 apart in probability, and float64 rounding
# moves these probabilities by ~1e-15, so the lists are exact on any machine.
TOP5 = {
    "cat": [285, 281, 282, 811, 728],            # Egyptian cat, tabby, tiger cat, ...
    "bird": [19, 20, 18, 13, 16],                # chickadee, water ouzel, magpie, ...
    "grace_hopper": [652, 667, 752, 834, 457],   # military uniform, mortarboard, racket, ...
    "parrot": [88, 90, 92, 129, 7],              # macaw, lorikeet, bee eater, ...
}
TOP1_NAMES = {"cat": "Egyptian cat", "bird": "chickadee", "grace_hopper": "military uniform",
              "parrot": "macaw"}


@pytest.fixture(scope="module")
def v2_weights(shared_weights_dir):
    return mobilenet_v2_weights(shared_weights_dir)


@pytest.fixture(scope="module")
def photos(shared_weights_dir):
    return np.stack([np.load(shared_weights_dir / "reference" / f"{p}.input.npy")
                     for p in PHOTOS])


@pytest.fixture(scope="module")
def twin_out(v2_weights, photos):
    return mobilenet_v2(v2_weights, photos)


# --- the architecture table ------------------------------------------------------------------


def test_table_counts_and_blocks():
    """Keras's parameter counts (keras.applications.MobileNetV2, weights=None) and the
    paper's 17 blocks with 10 residual adds."""
    assert spec.count_params(spec.layer_table()) == 3_538_984
    assert spec.count_params(spec.layer_table(include_top=False)) == 2_257_984
    blocks = spec.blocks()
    assert len(blocks) == 17 and sum(b.residual for b in blocks) == 10
    assert [b.stride for b in blocks] == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    assert [b.out_channels for b in blocks][::4] == [16, 32, 64, 96, 320]
    assert blocks[0].expanded == 32 and blocks[1].expanded == 96 and blocks[16].expanded == 960
    table = spec.layer_table()
    names = [s.name for s in table]
    assert names[:8] == ["Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_depthwise",
                         "expanded_conv_depthwise_BN", "expanded_conv_depthwise_relu",
                         "expanded_conv_project", "expanded_conv_project_BN"]
    assert names[8:12] == ["block_1_expand", "block_1_expand_BN", "block_1_expand_relu",
                           "block_1_pad"]
    assert names[-5:] == ["Conv_1", "Conv_1_bn", "out_relu", "global_average_pooling2d",
                          "predictions"]
    assert len(table) == 155 and len(spec.bn_layer_names()) == 52
    assert table[names.index("block_2_add")].inputs == ("block_1_project_BN",
                                                        "block_2_project_BN")
    assert table[-1].output_shape == (1000,) and table[-3].output_shape == (7, 7, 1280)


@pytest.mark.parametrize("size, pads", [(224, ((0, 1), (0, 1))), (None, ((0, 1), (0, 1))),
                                        (97, ((1, 1), (1, 1)))])
def test_table_pads_as_tf_same(size, pads):
    """Keras's correct_pad before block_1's stride-2 depthwise (input 224 -> 112, 97 -> 49;
    unknown: Keras assumes even) pads as TF "SAME" does for a 3x3 kernel at stride 2."""
    table = {s.name: s for s in spec.layer_table(input_shape=(size, size, 3))}
    assert table["block_1_pad"].config["padding"] == pads
    if size is not None:
        n = -(-size // 2)                                      # Conv1's 'same' output
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)           # TF "SAME" at stride 2
        assert pads[0] == (total // 2, total - total // 2)
        assert table["block_1_depthwise"].output_shape[:2] == (-(-n // 2),) * 2


# --- the ImageNet weights --------------------------------------------------------------------


def test_v2_weight_names_and_shapes(v2_weights):
    expected = {s.name: list(s.weight_shapes) for s in spec.layer_table() if s.weight_shapes}
    got = {name: [a.shape for a in arrays] for name, arrays in v2_weights.items()}
    assert list(got) == list(expected)           # Keras's order
    assert got == expected
    assert all(a.dtype == np.float32 and a.flags.c_contiguous
               for arrays in v2_weights.values() for a in arrays)
    assert sum(a.size for arrays in v2_weights.values() for a in arrays) == 3_538_984


def test_v2_folded_bias_and_background(v2_weights, shared_weights_dir):
    """Conv kernels transposed from TFLite's OHWI (depthwise 1HWC), the folded bias as the
    following batch norm's beta (gamma 1, mean 0, variance 1 - eps: BN adds beta exactly in
    float32), and the 1001-class head without its background row."""
    model = read_tflite(shared_weights_dir / V2_FILE)
    ops = model.operators
    data = [[model.tensors[t].data for t in op.inputs[1:3]] for op in ops]
    np.testing.assert_array_equal(v2_weights["Conv1"][0], data[0][0].transpose(1, 2, 3, 0))
    np.testing.assert_array_equal(v2_weights["bn_Conv1"][1], data[0][1])
    np.testing.assert_array_equal(v2_weights["expanded_conv_depthwise"][0][..., 0],
                                  data[1][0][0])
    np.testing.assert_array_equal(v2_weights["block_1_expand_BN"][1], data[3][1])
    for name in spec.bn_layer_names():
        gamma, _, mean, var = v2_weights[name]
        assert np.all(gamma == 1) and np.all(mean == 0)
        assert np.all(var + np.float32(BN_EPSILON) == 1)
    kernel, bias = mobilenet_v2_head(shared_weights_dir)
    assert kernel.shape == (1280, 1001) and bias.shape == (1001,)
    np.testing.assert_array_equal(kernel, data[63][0][:, 0, 0, :].T)
    np.testing.assert_array_equal(v2_weights["predictions"][0], kernel[:, 1:])
    np.testing.assert_array_equal(v2_weights["predictions"][1], bias[1:])


def test_v2_bn_init_from_stats_is_same_function(v2_weights, shared_weights_dir):
    rng = np.random.default_rng(1)
    stats = {name: (rng.normal(0, 2, v2_weights[name][1].shape),
                    rng.uniform(0.01, 9, v2_weights[name][1].shape))
             for name in spec.bn_layer_names()}
    recal = mobilenet_v2_weights(shared_weights_dir, bn_init=stats)
    for name in ("bn_Conv1", "block_7_project_BN", "Conv_1_bn"):
        x = rng.normal(0, 3, (5, v2_weights[name][1].size))
        # x + beta in float32 after a sqrt and a division: ~1e-6 of |x| ~ 10
        np.testing.assert_allclose(batch_norm(x, *recal[name]), x + v2_weights[name][1],
                                   atol=1e-5)
        np.testing.assert_array_equal(recal[name][2], stats[name][0].astype(np.float32))
    assert all(np.array_equal(v2_weights[n][0], recal[n][0]) for n in v2_weights
               if n not in stats)
    with pytest.raises(ValueError, match="bn_init"):
        mobilenet_v2_weights(shared_weights_dir, bn_init="recalibrated")
    with pytest.raises(ValueError, match="Conv_1_bn"):
        mobilenet_v2_weights(shared_weights_dir, bn_init={"bn_Conv1": stats["bn_Conv1"]})
    assert len(bn_from_stats(*[np.ones(3)] * 3)) == 4


def _tampered(monkeypatch, shared_weights_dir, change):
    real = read_tflite(shared_weights_dir / V2_FILE)
    ops = [dataclasses.replace(op, options=dict(op.options)) for op in real.operators]
    change(ops)
    fake = dataclasses.replace(real, operators=ops)
    monkeypatch.setattr(pretrained, "read_tflite", lambda path: fake)


def _same_input_twice(ops):
    ops[9] = dataclasses.replace(ops[9], inputs=(ops[8].outputs[0],) * 2)


@pytest.mark.parametrize("change, message", [
    (lambda ops: ops[4].options.update(stride_h=1, stride_w=1),
     "operator 4 .*block_1_depthwise"),
    (lambda ops: ops[2].options.update(fused_activation="RELU6"),
     "operator 2 .*expanded_conv_project"),
    (_same_input_twice, "operator 9 .*block_2_add"),
    (lambda ops: ops.pop(9), "operator 9 is CONV_2D, expected ADD"),
    (lambda ops: ops.pop(), "the graph ends with \\[.RESHAPE.\\]"),
])
def test_v2_refuses_another_layout(monkeypatch, shared_weights_dir, change, message):
    """The graph is checked against Keras's layer list, operator by operator."""
    _tampered(monkeypatch, shared_weights_dir, change)
    with pytest.raises(ValueError, match="not the expected MobileNet v2 layout: " + message):
        mobilenet_v2_weights(shared_weights_dir)


def test_v2_files_resolved_on_their_own(tmp_path, shared_weights_dir, monkeypatch):
    """v2 needs its own file and the labels, not v1's files (and v1 not v2's)."""
    monkeypatch.setenv("ASLNET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ASLNET_WEIGHTS", raising=False)
    folder = tmp_path / "v2only"
    folder.mkdir()
    for name in pretrained.V2_WEIGHT_FILES:
        (folder / name).write_bytes((shared_weights_dir / name).read_bytes())
    assert pretrained.resolve_weights_dir(folder, files=pretrained.V2_WEIGHT_FILES) == folder
    assert mobilenet_v2_weights(folder)["Conv_1"][0].shape == (1, 1, 320, 1280)
    with pytest.raises(pretrained.WeightsNotFoundError, match=pretrained.EMBEDDING_FILE):
        pretrained.resolve_weights_dir(folder)
    (folder / V2_FILE).write_bytes(b"TFL3" * 4)
    with pytest.raises(pretrained.WeightsIntegrityError, match=V2_FILE):
        mobilenet_v2_weights(folder)


# --- the float64 twin ------------------------------------------------------------------------


@pytest.mark.parametrize("index, photo", list(enumerate(PHOTOS)))
def test_twin_top5_on_reference_photos(twin_out, shared_weights_dir, index, photo):
    embedding, logits = twin_out
    assert embedding.shape == (4, 1280) and logits.shape == (4, 1000)
    probs = softmax(logits[index])
    top = [int(i) for i in np.argsort(-probs)[:6]]
    assert top[:5] == TOP5[photo]
    assert np.all(-np.diff(probs[top]) > 0)                # a strict order
    labels = imagenet_labels(shared_weights_dir)           # Keras order: background dropped
    assert labels[top[0]].split(",")[0] == TOP1_NAMES[photo]
    assert probs[top[0]] > 0.75


def test_twin_1001_head_is_keras_plus_background(twin_out, shared_weights_dir):
    """TFLite's head has class 0 = background in front of Keras's 1000 classes."""
    embedding, logits = twin_out
    kernel, bias = mobilenet_v2_head(shared_weights_dir)
    full = embedding @ kernel.astype(np.float64) + bias
    np.testing.assert_array_equal(full[:, 1:], logits)
    labels = imagenet_labels(shared_weights_dir, include_background=True)
    assert labels[int(np.argmax(full[0]))].startswith("Egyptian cat")


def test_twin_generic_and_batched():
    """alpha 0.35, odd sizes and 7 classes; one image gives its row of the batch; the trace
    has every layer but the pads (the twin pads inside its "SAME" convolutions)."""
    w = random_weights(alpha=0.35, classes=7, seed=4)
    images = np.random.default_rng(5).uniform(-1, 1, (2, 37, 45, 3))
    trace = {}
    embedding, logits = mobilenet_v2(w, images, trace)
    assert embedding.shape == (2, 1280) and logits.shape == (2, 7)
    table = spec.layer_table(alpha=0.35, input_shape=(37, 45, 3), classes=7)
    for s in table:
        if s.kind != "ZeroPadding2D":
            assert trace[s.name].shape[1:] == s.output_shape, s.name
    np.testing.assert_allclose(mobilenet_v2(w, images[1])[1], logits[1], rtol=1e-12)
    assert np.all(np.isfinite(logits)) and embedding.std() > 0
    assert {name: [a.shape for a in arrays] for name, arrays in w.items()} == {
        s.name: list(s.weight_shapes) for s in table if s.weight_shapes}


# --- aslnet.applications.mobilenet_v2: preprocess_input, decode_predictions ------------------


def test_v2_preprocess_input():
    from aslnet.applications import mobilenet, mobilenet_v2
    x = np.array([[[0, 127, 255]]], np.uint8)
    got = mobilenet_v2.preprocess_input(x)
    assert got.dtype == np.float32
    f = np.float32       # Keras's arithmetic: x / 127.5 - 1 in the input's float32
    np.testing.assert_array_equal(got, [[[-1, f(127) / f(127.5) - f(1), 1]]])
    np.testing.assert_array_equal(got, mobilenet.preprocess_input(x))
    assert mobilenet_v2.preprocess_input(x.astype(np.float64)).dtype == np.float64


def test_v2_decode_predictions_as_keras(twin_out, shared_weights_dir):
    """Keras's tuples (WordNet id, name, score), best first, on the twin's probabilities."""
    from aslnet.applications.mobilenet_v2 import decode_predictions
    probs = softmax(twin_out[1])
    got = decode_predictions(probs, top=3, weights_dir=shared_weights_dir)
    assert [[t[:2] for t in row[:1]] for row in got] == [
        [("n02124075", "Egyptian_cat")], [("n01592084", "chickadee")],
        [("n03763968", "military_uniform")], [("n01818515", "macaw")]]
    assert got[0][1][:2] == ("n02123045", "tabby")
    assert all(len(row) == 3 and isinstance(row[0][2], float) for row in got)
    assert got[0][0][2] == pytest.approx(probs[0, 285], rel=1e-12)
    assert got[0][0][2] >= got[0][1][2] >= got[0][2][2]
    for shape in [(1, 10), (1, 1001), (1000,)]:
        with pytest.raises(ValueError, match="shape \\(samples, 1000\\)"):
            decode_predictions(np.zeros(shape, np.float32), weights_dir=shared_weights_dir)


def test_v2_decode_predictions_without_synsets(tmp_path, shared_weights_dir):
    from aslnet.applications.mobilenet_v2 import decode_predictions
    (tmp_path / pretrained.LABELS_FILE).write_bytes(
        (shared_weights_dir / pretrained.LABELS_FILE).read_bytes())
    with pytest.raises(pretrained.WeightsNotFoundError, match=pretrained.SYNSETS_FILE):
        decode_predictions(np.eye(1, 1000), weights_dir=tmp_path)
