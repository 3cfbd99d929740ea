"""MkDocs hook: bar charts of the benchmark results, drawn at build time.

For every ``benchmarks/results/<machine>.json`` (what ``python -m benchmarks.run``
writes) the site gets ``img/benchmarks-<machine>.svg``: images per second of each
peer for inference at batch 1 and 32 and for the tutorial's training step, the bar
at the median and the whisker from the fastest to the slowest timed run.  The
Benchmarks page shows it above the tables (``docs/benchmarks.md``)."""
import io
import json
from pathlib import Path

from mkdocs.structure.files import File

LABELS = {"aslnet": "aslnet", "aslnet_bf16": "aslnet bf16", "keras": "Keras 3",
          "keras_bf16": "Keras 3 bf16", "torch": "PyTorch", "torch_cl": "PyTorch CL",
          "onnxruntime": "ONNX Runtime", "litert": "LiteRT"}


def _figure(results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("inference, batch 1", {p: r["b1"] for p, r in results["inference"].items()}),
              ("inference, batch 32", {p: r["b32"] for p, r in results["inference"].items()}),
              ("training step, batch 10", results.get("train", {}))]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    for ax, (title, by_peer) in zip(axes, panels):
        peers = [p for p in by_peer if isinstance(by_peer[p], dict) and "median" in by_peer[p]]
        med = [by_peer[p]["median"] for p in peers]
        err = [[m - by_peer[p]["min"] for p, m in zip(peers, med)],
               [by_peer[p]["max"] - m for p, m in zip(peers, med)]]
        colors = ["#1f77b4" if p.startswith("aslnet") else "#999999" for p in peers]
        ax.barh([LABELS.get(p, p) for p in peers], med, xerr=err, color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel("images/s (median; min-max)")
    cpu = results.get("meta", {}).get("cpu", "")
    threads = results.get("meta", {}).get("threads", "")
    fig.suptitle(f"{cpu}, {threads} threads" if cpu else "")
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})   # no date: the same bytes each build
    plt.close(fig)
    return out.getvalue()


def on_files(files, config):
    root = Path(config["config_file_path"]).parent
    for path in sorted((root / "benchmarks" / "results").glob("*.json")):
        results = json.loads(path.read_text())
        if "inference" not in results:
            continue
        files.append(File.generated(config, f"img/benchmarks-{path.stem}.svg",
                                    content=_figure(results)))
    return files
