"""Runs notebooks/sign_language_digits.ipynb end to end on a tiny subset of the data.

The notebook executes in a fresh kernel of the current interpreter (a kernelspec installed into
a temporary folder), with the working directory and every file it writes in a temporary folder.
"""
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")
pytest.importorskip("matplotlib")

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "notebooks" / "sign_language_digits.ipynb"
SHARED = Path(os.environ.get("ASLNET_SHARED") or REPO_ROOT.parent / "shared")
KERNEL = "aslnet-test-python3"


def _outputs_text(nb):
    """Everything the cells printed or returned, as one string."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif out.get("output_type") in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs(tmp_path, monkeypatch):
    data = SHARED / "data" / "sign-language-digits"
    weights = SHARED / "weights"
    if not data.is_dir() or not weights.is_dir():
        pytest.skip(f"shared data/weights not found under {SHARED} (set ASLNET_SHARED)")

    # A kernelspec that runs this interpreter (sys.executable), whatever kernels the machine has.
    jupyter_path = tmp_path / "jupyter"
    kernelspec.write_kernel_spec(path=str(jupyter_path / "kernels" / KERNEL))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))

    work = tmp_path / "work"
    env = {
        "ASLNET_DATA": str(data),
        "ASLNET_WEIGHTS": str(weights),
        "ASLNET_WORK": str(work),
        "ASLNET_MAX_PER_CLASS": "12",   # 120 images: 70 train, 30 valid, 20 test
        "ASLNET_VALID": "3",
        "ASLNET_TEST": "2",
        "ASLNET_EPOCHS": "1",
        "ASLNET_FINE_TUNE": "1",
        "ASLNET_HEAD_EPOCHS": "2",
        "ASLNET_FT_EPOCHS": "1",
        "ASLNET_HOME": str(tmp_path / "aslnet-home"),  # no stray cache outside tmp
        # headless, like Agg, but figures still reach the outputs (checked below)
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH")
                                else [])),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # to inspect after a failure

    text = _outputs_text(nb)
    assert "Total params: 3,239,114" in text
    assert "Trainable params: 1,873,930" in text
    assert "Found 70 images belonging to 10 classes." in text
    assert "Test accuracy: " in text
    assert "Test accuracy (fine_tune): " in text
    assert "mixed_bfloat16: test accuracy " in text or "no native bfloat16" in text
    assert (work / "digit_model.h5").is_file()
    assert (work / "split" / "test" / "0").is_dir()
    images = [o for c in nb.cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "expected the training curves, confusion matrix and samples"
