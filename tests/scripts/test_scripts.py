"""Keras-style scripts (tests/scripts/*.py, each run with `import aslnet as keras`) run to the
end in a fresh interpreter; their printed results are checked here."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _run(script, *args, timeout=600, weights=None):
    env = dict(os.environ)
    if weights is not None:               # the shared ImageNet weights, never downloaded
        env["ASLNET_WEIGHTS"] = str(weights)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, str(HERE / script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.fixture
def three_digit_classes(shared_dir, tmp_path):
    """3 classes x 20 images of the sign-language digits, as symlinks."""
    src = shared_dir / "data" / "sign-language-digits"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    root = tmp_path / "digits"
    for cls in ("0", "1", "2"):
        (root / cls).mkdir(parents=True)
        for name in sorted(os.listdir(src / cls))[:20]:
            (root / cls / name).symlink_to(src / cls / name)
    return root


@pytest.mark.slow
def test_image_dataset_transfer(three_digit_classes, shared_weights_dir):
    out = _run("image_dataset_transfer.py", three_digit_classes, weights=shared_weights_dir)
    assert "Found 60 files belonging to 3 classes." in out
    assert "Using 48 files for training." in out and "Using 12 files for validation." in out
    assert "class_names: ['0', '1', '2']" in out
    assert "train batches: 6 val batches: 2" in out
    assert re.search(r"batch: \(8, 96, 96, 3\) float32 \(8,\) int32 pixel range: "
                     r"[0-9.]+ [0-9.]+", out)
    low, high = map(float, re.search(r"pixel range: ([0-9.]+) ([0-9.]+)", out).groups())
    assert 0 <= low < high <= 255 and high > 1      # raw pixels, not preprocessed
    assert "Epoch 2/2" in out
    assert "history keys: ['accuracy', 'loss', 'val_accuracy', 'val_loss']" in out
    assert "predictions: (12, 3)" in out
    accuracy = float(re.search(r"val_accuracy=([0-9.]+)", out).group(1))
    assert 0.0 <= accuracy <= 1.0
    assert float(re.search(r"val_loss=([0-9.]+)", out).group(1)) >= 0
