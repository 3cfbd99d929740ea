"""The ``aslnet`` command line (aslnet/cli.py) on tiny models and images; the full
tutorial job (sign-digits) is what the README's first command runs."""
import re
import subprocess
import sys
import warnings
from pathlib import Path

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
    assert e.value.code == 2 and err.startswith("aslnet predict: error: ")
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["serve", "m.h5", "--port", "99999"],
                                  ["classify", "x.png", "--top", "0"],
                                  ["classify", "x.png", "--top", "-3"],
                                  ["train", "s", "--batch-size", "0"],
                                  ["train", "s", "--epochs", "-1"],
                                  ["train", "s", "--learning-rate", "nan"],
                                  ["split", "a", "b", "--valid", "1.5"],
                                  ["split", "a", "b", "--test", "-1"]])
def test_out_of_range_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "must be" in capsys.readouterr().err


def test_a_bad_image_is_named_and_the_others_still_predicted(tmp_path, capsys):
    _, path = saved_model(tmp_path)
    root = images(tmp_path / "imgs")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image")
    bomb = tmp_path / "bomb.png"                     # 20000 x 20000, a few hundred KB
    Image.new("L", (20000, 20000)).save(bomb)
    argv = ["predict", str(path), str(root / "a" / "0.png"), str(garbage), str(bomb),
            str(root / "b" / "0.png")]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out.count(": class ") == 2
    assert f"{garbage}: not an image file Pillow can read" in err
    assert f"{bomb}: image too large" in err and "Traceback" not in err


def test_16_bit_images_are_scaled_as_the_web_app_does(tmp_path, capsys):
    """aslnet predict and aslnet serve agree: a 16-bit image is scaled to 8 bits."""
    model, path = saved_model(tmp_path, channels=1)
    img = tmp_path / "deep.png"
    a16 = np.random.default_rng(0).integers(0, 65536, (20, 20)).astype(np.uint16)
    Image.fromarray(a16).save(img)
    assert main(["predict", str(path), str(img)]) == 0
    from aslnet.applications.mobilenet import preprocess_input
    from aslnet.preprocessing.image import img_to_array
    a8 = Image.fromarray(np.clip(np.rint(a16 / 257.0), 0, 255).astype(np.uint8))
    x = preprocess_input(img_to_array(a8.resize((16, 16), Image.NEAREST)))
    p = model.predict(x[None], verbose=0)[0]
    assert f"class {int(p.argmax())} (p={p.max():.4f})" in capsys.readouterr().out


def test_evaluate_refuses_folders_that_are_not_the_model_s_classes(tmp_path, capsys):
    _, path = saved_model(tmp_path)
    root = images(tmp_path / "imgs", classes=("a", "b", "c"))
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(path), str(root)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "3 class folders (a, b, c), the model has 2 outputs" in err


def _tiny_split(tmp_path, test=1):
    src = images(tmp_path / "src", classes=("a", "b"), n=4)
    main(["split", str(src), str(tmp_path / "split"), "--valid", "1", "--test", str(test)])
    return tmp_path / "split"


def test_train_saves_before_testing_and_checks_out_first(tmp_path, capsys, monkeypatch):
    """The trained model is saved before the test step (a failure there keeps it); an --out
    that cannot be written is refused before any training; the fine_tune recipe refuses the
    tutorial's --epochs."""
    import aslnet.cli as cli
    split = _tiny_split(tmp_path, test=0)                   # an empty test set
    small = lambda *a, **k: saved_model(tmp_path / "m")[0]  # noqa: E731  (no MobileNet here)
    monkeypatch.setattr(aslnet, "load_pretrained", small)
    monkeypatch.setattr(cli, "_generators", _small_generators)
    out = tmp_path / "model.h5"
    assert main(["train", str(split), "--epochs", "1", "--out", str(out), "--verbose", "0"]) \
        == 0
    assert out.exists() and "nothing to test" in capsys.readouterr().out
    for argv, msg in ((["--out", str(tmp_path)], "is a directory"),
                      (["--recipe", "fine_tune", "--epochs", "3"], "own schedule")):
        with pytest.raises(SystemExit) as e:
            main(["train", str(split)] + argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err


def _small_generators(split_dir, batch_size):
    from aslnet.preprocessing.image import ImageDataGenerator
    gen = ImageDataGenerator(rescale=1 / 255)
    return tuple(gen.flow_from_directory(str(Path(split_dir) / s), target_size=(16, 16),
                                         batch_size=batch_size)
                 for s in ("train", "valid", "test"))


def test_version_and_help_as_a_shell_user_expects(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"aslnet {aslnet.__version__}\n"
    helps = []
    for argv in (["--help"], ["train", "--help"], ["serve", "--help"], ["split", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        helps.append(capsys.readouterr().out)
    text = "\n".join(helps)
    assert "usage: aslnet" in text and "--version" in helps[0]
    assert not re.search(r"``|:(func|class|meth|mod):`", text), "reStructuredText in --help"


def test_the_console_script_gives_usage_errors_exit_status_2():
    run = subprocess.run([sys.executable, "-m", "aslnet", "predict"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and "the following arguments are required" in run.stderr


def test_warnings_are_one_line_only_for_aslnet_and_only_while_the_command_runs(
        monkeypatch, capsys, recwarn):
    """aslnet's own warnings print as "aslnet CMD: warning: ..."; another library's go to the
    process's handler as before (here pytest's recorder); after main returns, the process's
    warning handlers are untouched."""
    import aslnet.cli as cli
    before = (warnings.showwarning, warnings.formatwarning)

    def command(args):
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn_explicit("from aslnet", UserWarning, cli.__file__, 1)
            warnings.warn_explicit("from elsewhere", UserWarning, "/elsewhere/lib.py", 7)
        return 0
    monkeypatch.setattr(cli, "_cmd_split", command)
    assert main(["split", "a", "b"]) == 0
    err = capsys.readouterr().err
    assert "aslnet split: warning: from aslnet\n" in err
    assert "from elsewhere" not in err
    assert [(str(w.message), w.filename) for w in recwarn] == \
        [("from elsewhere", "/elsewhere/lib.py")]
    assert (warnings.showwarning, warnings.formatwarning) == before
