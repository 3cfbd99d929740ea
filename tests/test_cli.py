"""The ``aslnet`` command line (aslnet/cli.py) on tiny models and images; the full
tutorial job (sign-digits) is what the README's first command runs."""
import numpy as np
import pytest
from PIL import Image

import aslnet
from aslnet import layers as L
from aslnet.cli import main
from aslnet.models import Model


def saved_model(tmp_path, channels=3, classes=2):
    aslnet.set_random_seed(0)
    inp = L.Input((16, 16, channels))
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inp))
    model = Model(inp, L.Dense(classes, activation="softmax")(x))
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / f"m{channels}.h5"
    model.save(path)
    return model, path


def images(root, classes=("a", "b"), n=3):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(
                root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("channels", [3, 1])
def test_predict_feeds_the_model_its_color_mode(tmp_path, capsys, channels):
    from aslnet.applications.mobilenet import preprocess_input
    from aslnet.preprocessing.image import img_to_array, load_img
    model, path = saved_model(tmp_path, channels)
    img = images(tmp_path / "imgs") / "a" / "0.png"
    assert main(["predict", str(path), str(img)]) == 0
    mode = "rgb" if channels == 3 else "grayscale"
    x = preprocess_input(img_to_array(load_img(img, target_size=(16, 16), color_mode=mode)))
    p = model.predict(x[None], verbose=0)[0]
    assert f"class {int(p.argmax())} (p={p.max():.4f})" in capsys.readouterr().out


def test_evaluate_prints_accuracy_and_confusion(tmp_path, capsys):
    from aslnet.applications.mobilenet import preprocess_input
    from aslnet.preprocessing.image import img_to_array, load_img
    model, path = saved_model(tmp_path, 1)
    root = images(tmp_path / "imgs")
    assert main(["evaluate", str(path), str(root)]) == 0
    out = capsys.readouterr().out
    x = np.stack([preprocess_input(img_to_array(load_img(
        root / c / f"{i}.png", target_size=(16, 16), color_mode="grayscale")))
        for c in "ab" for i in range(3)])
    pred = model.predict(x, verbose=0).argmax(1)
    truth = np.repeat([0, 1], 3)
    assert f"Test accuracy: {np.mean(pred == truth):.4f}" in out
    rows = [line.split() for line in out.splitlines()[-2:]]
    assert [r[0] for r in rows] == ["a", "b"]
    assert [[int(v) for v in r[1:]] for r in rows] == \
        [[int(np.sum((truth == t) & (pred == q))) for q in (0, 1)] for t in (0, 1)]


def test_split_is_the_library_s_split(tmp_path, capsys):
    root = images(tmp_path / "imgs", n=5)
    assert main(["split", str(root), str(tmp_path / "out"), "--valid", "1",
                 "--test", "1"]) == 0
    assert "'train': {'a': 3, 'b': 3}" in capsys.readouterr().out


def test_user_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tmp_path / "missing.h5"), "x.png"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("aslnet predict: error: ")
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["serve", "m.h5", "--port", "99999"],
                                  ["classify", "x.png", "--top", "0"],
                                  ["classify", "x.png", "--top", "-3"]])
def test_out_of_range_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "must be in" in capsys.readouterr().err
