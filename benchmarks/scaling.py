"""Scaling with threads and batch size, and memory against batch size (issue 18, item 4).

For each thread count and batch size, a fresh process (so its peak RSS is its own) builds
the model with ImageNet weights, predicts once (planning) and then times ``--reps`` runs of
``predict_on_batch`` on random images: images/s (median, min-max), the time per image, and
the process's peak RSS (``ru_maxrss``) minus the RSS after building the model, i.e. what the
predictions added.  The cost per image must not rise with the batch, and the memory must grow
linearly with it (the per-batch buffers), not with the layers.

    .venv/bin/python -m benchmarks.scaling [--arch mobilenet] [--size 224]
        [--threads 1,2] [--batches 1,2,4,...,256] [--reps 5] [--out FILE.md]

Thread counts above this machine's CPUs are skipped and said so.
"""
import argparse
import json
import os
import subprocess
import sys

from benchmarks import peak
from benchmarks.common import summary, thread_env
from benchmarks.report import _fig

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_CHILD = r"""
import json, resource, sys, time
import numpy as np
import aslnet
from aslnet import applications as A
arch, size, batch, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ctor = {"mobilenet": A.MobileNet, "mobilenet_v2": A.MobileNetV2}[arch]
model = ctor(input_shape=(size, size, 3), weights="imagenet")
x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
with open("/proc/self/status") as f:
    rss0 = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024
model.predict_on_batch(x)
runs = []
for _ in range(reps):
    t = time.perf_counter()
    model.predict_on_batch(x)
    runs.append(batch / (time.perf_counter() - t))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"runs": runs, "rss_model": rss0, "rss_peak": peak}))
"""


def measure(arch, size, threads, batch, reps):
    env = dict(os.environ, **thread_env(threads))
    r = subprocess.run([sys.executable, "-c", _CHILD, arch, str(size), str(batch), str(reps)],
                       env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"batch {batch}, {threads} threads: {r.stderr.strip()[-500:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {"ips": summary(out["runs"]), "rss_model_mb": out["rss_model"] / 2**20,
            "rss_added_mb": (out["rss_peak"] - out["rss_model"]) / 2**20}


def markdown(args, res, cpu, skipped):
    mb_in = 4 * args.size * args.size * 3 / 2**20
    L = [f"# Scaling: {args.arch} {args.size}x{args.size}, predict_on_batch, float32", "",
         f"- CPU: {cpu['model']} ({cpu['logical_cpus']} logical CPUs); "
         f"`python -m benchmarks.scaling --arch {args.arch} --size {args.size} "
         f"--threads {args.threads} --batches {args.batches} --reps {args.reps}`",
         "- each cell a fresh process: images/s median (min–max) of the runs; memory: peak RSS "
         "minus the RSS after building the model (what predicting added: plans, folded "
         "weights, buffers); per image beyond the smallest batch: how it grows with the "
         f"batch (the input batch itself is {mb_in:.2f} MB per image)"]
    if skipped:
        L.append(f"- not measured: {', '.join(map(str, skipped))} threads (more than this "
                 "machine's CPUs; the 16-core device machine was not lent this session)")
    L.append("")
    for t, rows in res.items():
        L += [f"## {t} thread(s)", "", "| batch | images/s | ms per image | memory added (MB) | "
              "MB per image beyond the smallest batch |", "|---|---|---|---|---|"]
        b0, r0 = next(iter(rows.items()))
        for b, r in rows.items():
            extra = (r["rss_added_mb"] - r0["rss_added_mb"]) / (int(b) - int(b0)) \
                if int(b) > int(b0) else None
            L.append(f"| {b} | {_fig(r['ips'])} | {1000 / r['ips']['median']:.2f} | "
                     f"{r['rss_added_mb']:.0f} | {'—' if extra is None else f'{extra:.2f}'} |")
        L.append("")
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mobilenet", choices=["mobilenet", "mobilenet_v2"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", help="write the table here (markdown) and beside it as .json")
    args = ap.parse_args(argv)
    cpu = peak.cpuinfo()
    wanted = [int(t) for t in args.threads.split(",")]
    threads = [t for t in wanted if t <= (cpu["logical_cpus"] or 1)]
    skipped = [t for t in wanted if t not in threads]
    res = {}
    for t in threads:
        res[str(t)] = {}
        for b in (int(b) for b in args.batches.split(",")):
            res[str(t)][str(b)] = r = measure(args.arch, args.size, t, b, args.reps)
            print(f"{t} threads, batch {b}: {_fig(r['ips'])} img/s, "
                  f"+{r['rss_added_mb']:.0f} MB", flush=True)
    text = markdown(args, res, cpu, skipped)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump({"cpu": cpu, "args": vars(args), "results": res, "skipped": skipped},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
