"""Batch prediction img/s: aslnet.batch.predict_files on a Dask LocalCluster vs
in-process decode + ``model.predict`` on the same files (the shared sign-language
digits), and the overhead per image that Dask adds.

    PYTHONPATH=. ASLNET_SHARED=../shared python benchmarks/batch_predict.py \
        [--images 400] [--out benchmarks/results/batch-predict-<host>.md]

Every run: decode with aslnet's loader (the model's size, preprocess_input), predict
in batches of 32.  The Dask figure includes the cluster's start, each worker's model
load and the Parquet writes: what a user waits for.
"""
import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def in_process(model_path, paths, threads):
    import aslnet
    from aslnet.applications.mobilenet import preprocess_input
    from aslnet.cli import _read_image
    from aslnet.models import load_model
    aslnet.set_num_threads(threads)
    t0 = time.perf_counter()
    model = load_model(model_path, compile=False)
    for i in range(0, len(paths), 256):             # the same partitions, one process
        x = np.stack([preprocess_input(_read_image(p, (224, 224), "rgb"))
                      for p in paths[i:i + 256]])
        model.predict(x, batch_size=32, verbose=0)
    return time.perf_counter() - t0


def on_dask(model_path, paths, workers, threads, work):
    from aslnet.batch import predict_files
    out = os.path.join(work, f"out-{workers}x{threads}")
    shutil.rmtree(out, ignore_errors=True)
    s = predict_files(model_path, paths, out, n_workers=workers, threads_per_worker=threads,
                      partition_size=256, batch_size=32, verbose=0)
    return s.seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import aslnet
    from aslnet.backend import default_num_threads
    digits = os.path.join(os.environ.get("ASLNET_SHARED", "../shared"), "data",
                          "sign-language-digits")
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(digits) for f in fs
                   if f.lower().endswith((".jpg", ".jpeg", ".png")))[:args.images]
    cores = default_num_threads()
    work = tempfile.mkdtemp(prefix="aslnet-batch-bench-")
    try:
        aslnet.set_random_seed(0)
        model_path = os.path.join(work, "m.h5")
        aslnet.load_pretrained("mobilenet", num_classes=10).save(model_path)
        rows = [(f"in-process, {cores} threads", in_process(model_path, paths, cores))]
        rows.append((f"Dask LocalCluster, {cores} workers x 1 thread",
                     on_dask(model_path, paths, cores, 1, work)))
        if cores > 1:
            rows.append((f"Dask LocalCluster, 1 worker x {cores} threads",
                         on_dask(model_path, paths, 1, cores, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(paths)
    base = rows[0][1]
    load = os.getloadavg()
    lines = [f"# Batch prediction: Dask vs in-process ({n} sign-language digit JPEGs, "
             "MobileNet 224x224, 10 classes)", "",
             f"- CPU: {cpu_name()}, {cores} cores visible; host {platform.node()}; "
             f"Python {sys.version.split()[0]}; {time.strftime('%Y-%m-%dT%H:%M:%S')}",
             f"- load average at end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}: a shared, "
             "loaded machine (other jobs ran): figures are indicative, one run each",
             "- each row: decode (aslnet's loader) + predict at batch 32, partitions of "
             "256; Dask rows include cluster start, model load per worker, Parquet writes",
             "", "| run | seconds | img/s | overhead vs in-process (ms/img) |",
             "|---|---|---|---|"]
    for name, t in rows:
        lines.append(f"| {name} | {t:.2f} | {n / t:.1f} | "
                     f"{'ref.' if t is base else f'{(t - base) / n * 1e3:+.2f}'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
