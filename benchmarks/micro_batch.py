"""Images per run of the early layers against the thread count (the rule
``aslnet.engine.network.micro_batch``): batched inference at batch 32 with the early
(per-image) layers run 1, 2, 4, 8 images at a time or not split at all, interleaved in one
process, for each thread count given (each in a fresh process).

    python -m benchmarks.micro_batch [--threads 2,4,8,16] [--arch mobilenet,mobilenet_v2]
        [--reps 7]

Prints one line per thread count and model: images/s median (min-max) per variant.
"""
import argparse
import json
import os
import subprocess
import sys

from benchmarks.common import summary, thread_env

VARIANTS = (1, 2, 4, 8, None)    # None: the whole batch

_CHILD = r"""
import json, sys, time
import numpy as np
from aslnet import applications as A
from aslnet.engine import network
arch, reps = sys.argv[1], int(sys.argv[2])
variants = json.loads(sys.argv[3])
model = {"mobilenet": A.MobileNet, "mobilenet_v2": A.MobileNetV2}[arch](weights="imagenet")
x = np.random.default_rng(0).uniform(-1, 1, (32, 224, 224, 3)).astype(np.float32)
runs = {str(m): [] for m in variants}
for rep in range(reps + 1):              # the first round plans every variant
    for m in variants:
        network.micro_batch = lambda threads, m=m: m
        t = time.perf_counter()
        model.predict_on_batch(x)
        if rep:
            runs[str(m)].append(32 / (time.perf_counter() - t))
print(json.dumps(runs))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="2")
    ap.add_argument("--arch", default="mobilenet,mobilenet_v2")
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args(argv)
    for t in map(int, a.threads.split(",")):
        for arch in a.arch.split(","):
            r = subprocess.run([sys.executable, "-c", _CHILD, arch, str(a.reps),
                                json.dumps(VARIANTS)],
                               env=dict(os.environ, **thread_env(t)), capture_output=True,
                               text=True, timeout=1800)
            if r.returncode != 0:
                print(f"{t} threads, {arch}: failed: {r.stderr.strip()[-500:]}")
                continue
            runs = json.loads(r.stdout.strip().splitlines()[-1])
            cells = []
            for m in VARIANTS:
                s = summary(runs[str(m)])
                cells.append(f"{'whole' if m is None else m}: {s['median']:.0f} "
                             f"({s['min']:.0f}-{s['max']:.0f})")
            print(f"{t} threads, {arch}, batch 32 img/s: " + ", ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
