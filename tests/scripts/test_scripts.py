"""Keras-style scripts (tests/scripts/*.py, each written as a Keras user writes it, with
`import aslnet as keras` or `from aslnet.X import ...`) run to the end in a fresh
interpreter on small subsets of the shared digits; their printed results are checked here.

Where TensorFlow/Keras is installed, some also run unchanged on Keras 3 (`_keras_runner.py`
points `aslnet` and `aslnet.X` at `keras` and `keras.X`, and gives Keras's MobileNets
aslnet's ImageNet weights, as Keras cannot download here); the two runs must agree on what
does not depend on the arithmetic (layer names, shapes, parameter counts) and land in the
same accuracy band (both well above chance, within a margin of each other: small data, few
epochs, other batch orders and float32 summation orders move accuracy by a few images)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _env(weights=None):
    env = dict(os.environ)
    if weights is not None:               # the shared ImageNet weights, never downloaded
        env["ASLNET_WEIGHTS"] = str(weights)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # One thread per script unless told otherwise: on a shared, loaded machine OpenMP
    # threads that wait for a busy core make a run 5-10x slower and its time erratic.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _run(script, *args, timeout=600, weights=None, cwd=None, runner=()):
    proc = subprocess.run([sys.executable, *map(str, runner), str(HERE / script),
                           *map(str, args)], env=_env(weights), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    on = " on Keras" if runner else ""
    assert proc.returncode == 0, (f"{script} failed{on}:\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-5000:]}")
    return proc.stdout


def _value(out, key):
    """The text after `key:` on the script's line that starts with it."""
    m = re.search(rf"^{re.escape(key)}: (.*)$", out, re.M)
    assert m, f"no '{key}:' line in:\n{out[-2000:]}"
    return m.group(1).strip()


def _accuracy(out):
    m = re.search(r"^val_accuracy=([0-9.]+)$", out, re.M)     # image_dataset_transfer.py
    return float(m.group(1)) if m else float(_value(out, "accuracy"))


def _number(out, key):
    return float(re.search(r"[-0-9.e]+", _value(out, key)).group(0))


# -- data -----------------------------------------------------------------------------
def _subset(root, src, classes, counts):
    """root/<split>/<class>/ symlinks to the first files of each class of src (counts:
    {split: n}; split "" is root itself)."""
    for cls in classes:
        names = sorted(os.listdir(src / cls))
        start = 0
        for split, n in counts.items():
            (root / split / cls).mkdir(parents=True)
            for name in names[start:start + n]:
                (root / split / cls / name).symlink_to(src / cls / name)
            start += n
    return root


@pytest.fixture(scope="session")
def digits_src(shared_dir):
    src = shared_dir / "data" / "sign-language-digits"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    return src


@pytest.fixture(scope="session")
def three_digit_classes(digits_src, tmp_path_factory):
    """3 classes x 20 images of the sign-language digits, as symlinks."""
    return _subset(tmp_path_factory.mktemp("digits3"), digits_src, "012", {"": 20})


@pytest.fixture(scope="session")
def two_digit_classes(digits_src, tmp_path_factory):
    """2 classes x 24 images (the binary scripts)."""
    return _subset(tmp_path_factory.mktemp("digits2"), digits_src, "07", {"": 24})


@pytest.fixture(scope="session")
def digit_split(digits_src, tmp_path_factory):
    """All 10 classes split as the tutorial does: train 8, valid 2, test 3 per class."""
    return _subset(tmp_path_factory.mktemp("split"), digits_src, "0123456789",
                   {"train": 8, "valid": 2, "test": 3})


@pytest.fixture(scope="session")
def keras_runner(shared_weights_dir, tmp_path_factory):
    """[runner, weights.npz]: run a script on Keras 3 with aslnet's ImageNet weights."""
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip(f"needs Keras 3, found {keras.__version__}")
    import aslnet
    from aslnet.applications import MobileNet, MobileNetV2
    arrays = {}
    for make in (MobileNet, MobileNetV2):
        model = make(weights="imagenet", weights_dir=shared_weights_dir)
        for layer in model.layers:
            for k, w in enumerate(layer.get_weights()):
                arrays[f"{make.__name__}/{layer.name}/{k}"] = w
    del aslnet
    path = tmp_path_factory.mktemp("keras") / "imagenet.npz"
    np.savez(path, **arrays)
    return [HERE / "_keras_runner.py", path, shared_weights_dir]


# -- the scripts on aslnet ---------------------------------------------------------------
def test_deeplizard_sign_digits(digit_split, shared_weights_dir):
    out = _run("deeplizard_sign_digits.py", digit_split, weights=shared_weights_dir)
    for n, split in ((80, "train"), (20, "valid"), (30, "test")):
        assert f"Found {n} images belonging to 10 classes." in out, split
    assert "Total params: 3,239,114" in out and "Trainable params: 1,873,930" in out
    assert _value(out, "params") == "3239114 trainable: 1873930"
    assert _value(out, "names") == "conv_dw_13_relu global_average_pooling2d dense"
    assert "Epoch 15/15" in out
    assert _value(out, "predictions") == "(30, 10)"
    assert 0 <= _accuracy(out) <= 1     # the script asserts that training converged


def test_imagenet_classify(shared_weights_dir):
    photos = [shared_weights_dir / "reference" / f
              for f in ("cat.bmp", "bird.bmp", "grace_hopper.bmp", "parrot.jpg")]
    out = _run("imagenet_classify.py", *photos, weights=shared_weights_dir)
    assert _value(out, "params") == "4253864"
    assert _value(out, "predictions") == "(4, 1000)"
    top1 = re.findall(r"^top1: (\S+)$", out, re.M)
    assert top1 == ["Egyptian_cat", "chickadee", "military_uniform", "macaw"]
    assert "('n02124075', 'Egyptian_cat', 0.8" in out          # Keras's tuple: wnid first


def test_sparse_labels(three_digit_classes, shared_weights_dir):
    out = _run("sparse_labels.py", three_digit_classes, weights=shared_weights_dir)
    assert _value(out, "data") == "(60, 128, 128, 3) (60,) int64"
    assert _value(out, "params") == "3231939 trainable: 3075"
    assert _value(out, "history") == "['accuracy', 'loss', 'val_accuracy', 'val_loss']"
    assert _accuracy(out) > 0.6


def test_callbacks_checkpoint(three_digit_classes, shared_weights_dir, tmp_path):
    out = _run("callbacks_checkpoint.py", three_digit_classes, tmp_path,
               weights=shared_weights_dir)
    assert "Found 45 images belonging to 3 classes." in out
    assert "Found 15 images belonging to 3 classes." in out
    assert "val_loss improved from inf" in out
    assert re.search(r"Epoch \d+: early stopping", out)
    assert "Restoring model weights from the end of the best epoch" in out
    assert "ReduceLROnPlateau reducing learning rate" in out
    assert (tmp_path / "best.keras").is_file()


def test_mobilenet_v2_160(three_digit_classes, shared_weights_dir):
    out = _run("mobilenet_v2_160.py", three_digit_classes, weights=shared_weights_dir)
    assert _value(out, "base output") == "(None, 1280)"
    assert _value(out, "params") == "2261827 trainable: 3843"
    assert _value(out, "names") == "Conv1 global_average_pooling2d head"
    assert _accuracy(out) > 0.6


def test_binary_sigmoid(two_digit_classes, shared_weights_dir):
    out = _run("binary_sigmoid.py", two_digit_classes, weights=shared_weights_dir)
    assert _value(out, "class_indices") == "{'0': 0, '7': 1}"
    assert _value(out, "predictions") == "(12, 1)"
    assert _accuracy(out) >= 2 / 3     # 8 of 12 (chance 6); the script checks more


def test_sgd_schedule(three_digit_classes, shared_weights_dir):
    out = _run("sgd_schedule.py", three_digit_classes, weights=shared_weights_dir)
    assert _value(out, "steps") == "40"
    assert _value(out, "learning rate now") == "0.000625"
    assert _accuracy(out) > 0.7


def test_keras2_spellings(three_digit_classes, shared_weights_dir):
    out = _run("keras2_spellings.py", three_digit_classes, weights=shared_weights_dir)
    assert float(_value(out, "lr")) == pytest.approx(1e-3, rel=1e-7)   # lr= is learning_rate
    assert _value(out, "predictions") == "(60, 3) labels: (60, 3)"
    assert _accuracy(out) > 0.7


def test_augmentation_layers(three_digit_classes, shared_weights_dir):
    out = _run("augmentation_layers.py", three_digit_classes, weights=shared_weights_dir)
    assert _value(out, "inference repeatable") == "True"
    assert _value(out, "names") == ("['random_flip', 'random_rotation', 'random_zoom', "
                                    "'rescaling']")
    assert _accuracy(out) > 0.6


def test_merge_head(three_digit_classes, shared_weights_dir):
    out = _run("merge_head.py", three_digit_classes, weights=shared_weights_dir)
    assert _value(out, "shapes") == "(None, 1024) (None, 1088)"
    assert _value(out, "names") == ("['gate', 'gated', 'hidden', 'joined', 'dropout', "
                                    "'predictions']")
    assert _value(out, "params") == "4347331 trainable: 1118467"
    assert _accuracy(out) > 0.7


def test_flask_app(three_digit_classes, shared_weights_dir, tmp_path):
    pytest.importorskip("flask")
    model = tmp_path / "model.h5"
    out = _run("flask_app.py", three_digit_classes, model, weights=shared_weights_dir)
    assert model.is_file()
    assert _value(out, "model loaded") == "(None, 96, 96, 3) -> (None, 3)"
    answers = re.findall(r"^POST /predict (\d) -> \{'class': '(\d)', 'probability': "
                         r"([0-9.e-]+)\}$", out, re.M)
    assert [a[0] for a in answers] == ["0", "1", "2"]
    assert _accuracy(out) >= 2 / 3
    # a second run serves the saved file without training
    again = _run("flask_app.py", three_digit_classes, model, weights=shared_weights_dir)
    assert "Epoch" not in again and "POST /predict 2" in again


# -- the same scripts on Keras 3 -----------------------------------------------------------
# (script, data fixture, (layer count of aslnet minus Keras's: tf.keras 2's MobileNet, which
# aslnet's is, has conv1_pad; Keras 3's does not), accuracy margin)
ON_KERAS = [
    ("sparse_labels.py", "three_digit_classes", 1),
    ("mobilenet_v2_160.py", "three_digit_classes", 0),
    ("merge_head.py", "three_digit_classes", 1),
    ("augmentation_layers.py", "three_digit_classes", 1),
    ("sgd_schedule.py", "three_digit_classes", 1),
    ("image_dataset_transfer.py", "three_digit_classes", 1),
]
# (Keras 3.15 has no ImageDataGenerator: the scripts that use it run on aslnet only.)
ACCURACY_MARGIN = 0.25      # 12-15 validation images: 3-4 images either way


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.parametrize("script,data,extra_layers", ON_KERAS, ids=[c[0] for c in ON_KERAS])
def test_same_script_on_keras(script, data, extra_layers, keras_runner, shared_weights_dir,
                              request):
    folder = request.getfixturevalue(data)
    ours = _run(script, folder, weights=shared_weights_dir)
    theirs = _run(script, folder, weights=shared_weights_dir, runner=keras_runner)
    for key in ("params", "names", "shapes", "predictions", "history", "base output",
                "steps", "learning rate now", "class_indices", "data"):
        if re.search(rf"^{re.escape(key)}: ", ours, re.M):
            assert _value(ours, key) == _value(theirs, key), key
    if re.search(r"^layers: ", ours, re.M):
        assert _number(ours, "layers") == _number(theirs, "layers") + extra_layers
    assert abs(_accuracy(ours) - _accuracy(theirs)) <= ACCURACY_MARGIN, (
        _accuracy(ours), _accuracy(theirs))




# -- a model used as a layer (branch nested) -------------------------------------------------
def _model_callable_on_tensor():
    """Can an aslnet Model be called on a symbolic tensor (nested in another model)?
    Found by trying."""
    import aslnet
    inp = aslnet.Input((3,))
    base = aslnet.Model(inp, aslnet.layers.Dense(2)(inp))
    try:
        base(aslnet.Input((3,)))
    except (NotImplementedError, TypeError, ValueError):
        return False
    return True


needs_nested = pytest.mark.skipif(not _model_callable_on_tensor(),
                                  reason="needs a model used as a layer (branch nested)")


@needs_nested
@pytest.mark.slow
def test_tf_transfer_tutorial(two_digit_classes, shared_weights_dir):
    out = _run("tf_transfer_tutorial.py", two_digit_classes, weights=shared_weights_dir)
    assert "Found 48 files belonging to 2 classes." in out
    assert _value(out, "batches") == "train 5 validation 1 test 1"
    assert _value(out, "feature batch") == "(8, 5, 5, 1280)"
    assert _value(out, "model layers") == "7"
    assert _value(out, "trainable variables") == "2"
    assert _value(out, "layers in the base model") == "154"
    assert _value(out, "epochs") == "[0, 1, 2, 3] [4, 5]"
    assert _accuracy(out) > 0.6


@needs_nested
def test_sequential_base(three_digit_classes, shared_weights_dir):
    out = _run("sequential_base.py", three_digit_classes, weights=shared_weights_dir)
    assert _value(out, "names") == "['GlobalAveragePooling2D', 'Dense']"
    assert _value(out, "output") == "(None, 3)"
    assert _value(out, "params") == "3231939 trainable: 3075"
    assert _accuracy(out) > 0.7


NESTED_ON_KERAS = [("tf_transfer_tutorial.py", "two_digit_classes"),
                   ("sequential_base.py", "three_digit_classes")]


@needs_nested
@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.parametrize("script,data", NESTED_ON_KERAS, ids=[c[0] for c in NESTED_ON_KERAS])
def test_nested_script_on_keras(script, data, keras_runner, shared_weights_dir, request):
    folder = request.getfixturevalue(data)
    ours = _run(script, folder, weights=shared_weights_dir)
    theirs = _run(script, folder, weights=shared_weights_dir, runner=keras_runner)
    for key in ("params", "batches", "feature batch", "trainable variables",
                "trainable variables after unfreezing", "epochs",
                "layers in the base model", "layers", "names", "output"):
        if re.search(rf"^{re.escape(key)}: ", ours, re.M):
            assert _value(ours, key) == _value(theirs, key), key
    assert abs(_accuracy(ours) - _accuracy(theirs)) <= ACCURACY_MARGIN
