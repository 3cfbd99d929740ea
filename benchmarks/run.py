"""aslnet against its peers, in one run: see benchmarks/README.md.

    .venv/bin/python -m benchmarks.run [--quick] [--threads 2] [--only inference,train,...]
    .venv/bin/python -m benchmarks.run --render benchmarks/results/NAME.json   # Markdown again
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, utilisation  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("inference", "train", "utilisation", "e2e")
PEERS = ("aslnet", "aslnet_bf16", "keras", "keras_bf16", "torch", "onnxruntime", "litert")
LABELS = {"aslnet": "aslnet", "aslnet_bf16": "aslnet mixed_bfloat16 (not float32)",
          "keras_bf16": "Keras 3 mixed_bfloat16 (not float32)",
          "keras": "Keras 3 (TensorFlow)", "torch": "PyTorch",
          "torch_cl": "PyTorch channels_last", "onnxruntime": "ONNX Runtime",
          "litert": "LiteRT (XNNPACK)"}
TRAIN_PEERS = ("aslnet", "aslnet_bf16", "keras", "keras_bf16", "torch")
FIT_PEERS = ("aslnet", "aslnet_bf16", "keras")
FLOAT32 = ("aslnet", "keras", "torch", "torch_cl", "onnxruntime", "litert")   # the targets' peers


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: few repetitions; e2e only if named in --only, then "
                        "1 epoch on a small subset; results go to benchmarks/results/tmp/")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", help=f"comma list of parts: {','.join(PARTS)} (default: all; "
                                  "--quick: all but e2e)")
    p.add_argument("--peers", default=",".join(PEERS), help="comma list of peers")
    p.add_argument("--reps", type=int, help="timed runs per figure (default 7, quick 3)")
    p.add_argument("--epochs", type=int, help="e2e epochs (default 10, quick 1)")
    p.add_argument("--peak-gflops", type=float, default=232.0,
                   help="measured FP32 peak of the machine at --threads threads")
    p.add_argument("--shared", default=os.environ.get("ASLNET_SHARED",
                                                      os.path.join(ROOT, "..", "shared")),
                   help="the shared folder (data/ and weights/)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every peer (repeatable), e.g. "
                        "OMP_WAIT_POLICY=passive; recorded in the results")
    p.add_argument("--out", help="results folder (default benchmarks/results[/tmp])")
    a = p.parse_args(argv)
    a.parts = (a.only or ",".join(PARTS[:-1] if a.quick else PARTS)).split(",")
    a.peers = a.peers.split(",")
    a.env = dict(kv.split("=", 1) for kv in a.env)
    for v, allowed in ((a.parts, PARTS), (a.peers, PEERS)):
        bad = sorted(set(v) - set(allowed))
        if bad:
            p.error(f"unknown {bad}; choose from {allowed}")
    if "aslnet" not in a.peers:
        p.error("aslnet is the reference of every comparison: keep it in --peers")
    a.reps = a.reps or (3 if a.quick else 7)
    a.epochs = a.epochs or (1 if a.quick else 10)
    a.iters = {"b1": 2, "b32": 1, "train": 1} if a.quick else {"b1": 20, "b32": 2, "train": 5}
    a.out = a.out or os.path.join(ROOT, "benchmarks", "results", "tmp" if a.quick else "")
    return a


class Runner:
    """Runs one peer task in a subprocess with the thread caps, logs its
    output, and reads back its JSON result, wall time and peak RSS."""

    def __init__(self, args, work):
        self.args, self.work = args, work
        self.env = dict(os.environ, **common.thread_env(args.threads),
                        PYTHONPATH=os.pathsep.join(filter(None, [ROOT,
                                                                 os.environ.get("PYTHONPATH")])))
        self.env.setdefault("ASLNET_WEIGHTS", os.path.join(args.shared, "weights"))
        self.env.update(args.env)
        self.errors = {}

    def __call__(self, peer, task, *extra, env=None):
        a = self.args
        cmd = [sys.executable, "-m", f"benchmarks.peers.{peer}", task, "--work", self.work,
               "--threads", str(a.threads), "--reps", str(a.reps),
               "--iters", json.dumps(a.iters), *extra]
        log = os.path.join(self.work, f"{peer}-{task}.log")
        result_path = os.path.join(self.work, f"{peer}-{task}.json")
        if os.path.exists(result_path):
            os.remove(result_path)
        print(f"  {peer} {task} ...", end=" ", flush=True)
        t = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                    env=dict(self.env, **(env or {})))
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        if proc.returncode != 0 or not os.path.exists(result_path):
            with open(log) as f:
                tail = f.read()[-1500:]
            self.errors[f"{peer} {task}"] = f"exit {proc.returncode}; log {log}:\n{tail}"
            print(f"FAILED (exit {proc.returncode}, see {log})")
            return None
        with open(result_path) as f:
            res = json.load(f)
        res.update(wall_s=wall, max_rss_mib=usage.ru_maxrss / 1024)
        print(f"{wall:.1f} s")
        return res


def agreement(work, name):
    """Top-1 agreement and max |difference| of a peer's 32 outputs against aslnet's."""
    import numpy as np
    path = os.path.join(work, f"{name}-outputs.npy")
    if not os.path.exists(path):
        return None
    ref = np.load(os.path.join(work, "aslnet-outputs.npy")).reshape(32, -1)
    out = np.load(path).reshape(32, -1)
    if out.shape != ref.shape:
        return {"error": f"output shape {out.shape} != aslnet's {ref.shape}"}
    return {"top1_equal": int(np.sum(out.argmax(1) == ref.argmax(1))), "images": 32,
            "max_abs_diff": float(np.abs(out - ref).max())}


def run_inference(args, run, res):
    peers = [p for p in PEERS if p in args.peers]
    export = {"keras": "litert", "torch": "onnxruntime"}
    for f in os.listdir(run.work):   # nothing stale from an earlier run may be compared
        if f.endswith("-outputs.npy") or f in ("mobilenet.onnx", "mobilenet.tflite"):
            os.remove(os.path.join(run.work, f))
    out = {}
    for peer in peers:
        if peer in ("onnxruntime", "litert"):
            src = {"onnxruntime": "mobilenet.onnx", "litert": "mobilenet.tflite"}[peer]
            if not os.path.exists(os.path.join(run.work, src)):
                run.errors[f"{peer} inference"] = f"{src} was not exported (see its source peer)"
                continue
        extra = ["--export"] if export.get(peer) in peers else []
        r = run(peer, "inference", *extra)
        if r is None:
            continue
        if peer == "torch":   # two rows: default NCHW and channels_last
            cl = {k[:-len("_channels_last")]: v for k, v in r.items() if k.endswith("_channels_last")}
            out["torch_cl"] = dict(cl, agreement=agreement(run.work, "torch_cl"))
            r = {k: v for k, v in r.items() if not k.endswith("_channels_last")}
        out[peer] = dict(r, agreement=agreement(run.work, peer) if peer != "aslnet" else None)
    res["inference"] = out


def run_train(args, run, res):
    res["train"] = {p: r for p in TRAIN_PEERS if p in args.peers
                    for r in [run(p, "train")] if r is not None}


def run_utilisation(args, run, res):
    r = run("aslnet", "profile", env={"ONEDNN_VERBOSE": "profile_exec"})
    if r is None:
        return
    with open(os.path.join(run.work, "aslnet-profile.log")) as f:
        passes = utilisation.parse(f.read())
    res["utilisation"] = {f"b{b}": utilisation.breakdown(p, args.peak_gflops)
                          for b, p in sorted(passes.items(), reverse=True)}


def make_split(args, work):
    """The tutorial's split (valid 30, test 5 per class, seed 0); quick: of
    the first 15 images of each class (valid 3, test 2)."""
    from aslnet.utils.dataset import split_dataset
    src = os.path.join(args.shared, "data", "sign-language-digits")
    if args.quick:
        sub = os.path.join(work, "subset")
        if not os.path.isdir(sub):
            for cls in sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))):
                os.makedirs(os.path.join(sub, cls))
                for name in sorted(os.listdir(os.path.join(src, cls)))[:15]:
                    os.symlink(os.path.join(src, cls, name), os.path.join(sub, cls, name))
        dst = os.path.join(work, "split-quick")
        summary = split_dataset(sub, dst, valid=3, test=2, seed=0, mode="symlink")
    else:
        dst = os.path.join(work, "split")
        summary = split_dataset(src, dst, valid=30, test=5, seed=0, mode="copy")
    return dst, {k: sum(v.values()) for k, v in summary.items()}


def run_e2e(args, run, res):
    split, sizes = make_split(args, run.work)
    out = {"split": sizes, "epochs": args.epochs}
    for peer in FIT_PEERS:
        if peer in args.peers:
            r = run(peer, "fit", "--split", split, "--epochs", str(args.epochs))
            if r is not None:
                out[peer] = r
    res["e2e"] = out


# -- report ------------------------------------------------------------------

def _fig(s, digits=1):
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _ratio(a, b):
    return a / b if a and b else None


def targets(res, me="aslnet"):
    """[(target, ratio or figure text, met)]: the project's performance targets for the
    aslnet row ``me`` (the targets are float32's: "aslnet"; "aslnet_bf16" for information)."""
    inf, tr, e2e = res.get("inference", {}), res.get("train", {}), res.get("e2e", {})
    med = lambda d, k: d.get(k, {}).get("median") if d else None   # noqa: E731
    a = inf.get(me)
    rows = []

    def best(names, key):
        vals = [(med(inf.get(n), key), n) for n in names if med(inf.get(n), key)]
        return max(vals) if vals else (None, None)

    def add(name, ratio, need, peer=None, strict=False):
        met = None if ratio is None else (ratio > need if strict else ratio >= need)
        txt = "n/a" if ratio is None else f"{ratio:.2f}×" + (f" ({LABELS[peer]})" if peer else "")
        rows.append((name, txt, met))

    v, n = best(("torch", "torch_cl"), "b32")
    add("inference batch 32 ≥ 1.5× PyTorch (faster layout)", _ratio(med(a, "b32"), v), 1.5, n)
    v, n = best(("onnxruntime", "litert"), "b32")
    add("inference batch 32 ≥ 1.2× fastest of ONNX Runtime / LiteRT",
        _ratio(med(a, "b32"), v), 1.2, n)
    v, n = best([p for p in inf if p != "aslnet" and p in FLOAT32], "b1")   # peers only
    add("inference batch 1 ≥ fastest peer", _ratio(med(a, "b1"), v), 1.0, n)
    a_tr = tr.get(me, {}).get("median")
    add("training step ≥ 2× Keras", _ratio(a_tr, tr.get("keras", {}).get("median")), 2.0)
    add("training step ≥ 1.5× PyTorch", _ratio(a_tr, tr.get("torch", {}).get("median")), 1.5)
    ea, ek = e2e.get(me), e2e.get("keras")
    add("tutorial fit ≥ 5× faster than Keras",
        _ratio(ek and ek["fit_s"], ea and ea["fit_s"]), 5.0)
    if ea and ek:
        d = abs(ea["test_accuracy"] - ek["test_accuracy"]) * 100
        rows.append(("tutorial test accuracy within 0.5 pp of Keras", f"{d:.1f} pp", d <= 0.5))
        rows.append(("tutorial peak memory ≤ Keras's",
                     f"{ea['max_rss_mib']:.0f} vs {ek['max_rss_mib']:.0f} MiB",
                     ea["max_rss_mib"] <= ek["max_rss_mib"]))
    else:
        rows += [("tutorial test accuracy within 0.5 pp of Keras", "n/a", None),
                 ("tutorial peak memory ≤ Keras's", "n/a", None)]
    pw = res.get("utilisation", {}).get("b32", {}).get("types", {}).get("pointwise", {})
    frac = pw.get("peak_fraction") if me == "aslnet" else None   # profiled in float32
    rows.append(("pointwise convs at batch 32 > 60% of peak",
                 "n/a" if frac is None else f"{frac:.0%}",
                 None if frac is None else frac > 0.6))
    return rows


def markdown(res):
    m = res["meta"]
    L = [f"# aslnet benchmarks{' — QUICK SMOKE RUN (not for comparison)' if m['quick'] else ''}",
         "",
         f"- CPU: {m['cpu']} ({m['cores']} cores visible), {m['threads']} threads for every "
         f"framework; peak {m['peak_gflops']:.0f} GFLOP/s FP32 (measured FMA peak)",
         f"- {m['date']}, host {m['host']}, Python {m['python']}; load average "
         f"{m['load_start']} at start, {m['load_end']} at end",
         "- float32 everywhere but the rows marked mixed_bfloat16 (aslnet's optional dtype "
         "policy: every convolution in bfloat16; the targets compare float32 only)",
         f"- MobileNet v1 alpha 1.0 224×224 with aslnet's ImageNet weights "
         f"in every peer; each figure: median (min–max) of {m['reps']} timed runs",
         "- environment of every peer: "
         + " ".join(f"`{k}={v}`" for k, v in m["env"].items() if k != "TF_CPP_MIN_LOG_LEVEL"),
         ""]
    inf = res.get("inference")
    if inf:
        L += ["## Inference (images/s)", "",
              "| peer | batch 1 | batch 32 | first call b1 / b32 (s) | top-1 = aslnet (of 32) "
              "| max abs diff vs aslnet |", "|---|---|---|---|---|---|"]
        for p, r in inf.items():
            ag = r.get("agreement") or {}
            L.append(f"| {LABELS[p]} | {_fig(r['b1'])} | {_fig(r['b32'])} | "
                     f"{r['b1']['first_call_s']:.2f} / {r['b32']['first_call_s']:.2f} | "
                     f"{ag.get('top1_equal', '—') if p != 'aslnet' else 'ref.'} | "
                     f"{'%.2e' % ag['max_abs_diff'] if 'max_abs_diff' in ag else '—'} |")
        a = inf.get("aslnet")
        if a:
            gf = lambda r: r["median"] * common.FLOPS_PER_IMAGE / 1e9   # noqa: E731
            L += ["", "aslnet achieved: " + ", ".join(
                f"batch {b[1:]} {gf(a[b]):.1f} GFLOP/s = {gf(a[b]) / m['peak_gflops']:.0%} of peak"
                for b in ("b1", "b32")) + f" ({common.MACS_PER_IMAGE / 1e9:.3f} G multiply-adds"
                " per image × 2).", ""]
    tr = res.get("train")
    if tr:
        ref = tr.get("aslnet", {}).get("first_loss")
        L += ["## Training step (tutorial model, batch 10; images/s)", "",
              "| peer | images/s | trainable params | first-step loss | vs aslnet |",
              "|---|---|---|---|---|"]
        for p, r in tr.items():
            d = "ref." if p == "aslnet" else (f"{abs(r['first_loss'] - ref):.1e}"
                                              if ref is not None else "—")
            L.append(f"| {LABELS[p]} | {_fig(r)} | {r['trainable_params']:,} | "
                     f"{r['first_loss']:.5f} | {d} |")
        L.append("")
    e2e = res.get("e2e")
    if e2e:
        L += [f"## Tutorial end to end ({e2e['epochs']} epoch(s); split {e2e['split']})", "",
              "| peer | fit (s) | process wall (s) | peak RSS (MiB) | test accuracy "
              "| last val accuracy |", "|---|---|---|---|---|---|"]
        for p in FIT_PEERS:
            r = e2e.get(p)
            if r:
                va = (r["history"].get("val_accuracy") or [float("nan")])[-1]
                L.append(f"| {LABELS[p]} | {r['fit_s']:.1f} | {r['wall_s']:.1f} | "
                         f"{r['max_rss_mib']:.0f} | {r['test_accuracy']:.3f} "
                         f"({r['test_images']} images) | {va:.3f} |")
        L.append("")
    ut = res.get("utilisation")
    if ut:
        L += ["## aslnet utilisation per layer type (oneDNN verbose profile_exec)", ""]
        for b, u in ut.items():
            L += [f"Batch {b[1:]}: median pass {u['wall_ms']:.1f} ms ({u['passes']} passes).",
                  "", "| layer type | ms | share | GFLOP | GFLOP/s | of peak |",
                  "|---|---|---|---|---|---|"]
            for t, r in u["types"].items():
                g = r["gflops"]
                L.append(f"| {t} | {r['ms']:.2f} | {r['share']:.0%} | {r['gflop']:.3f} | "
                         f"{'—' if g is None else f'{g:.1f}'} | "
                         f"{'—' if g is None else format(r['peak_fraction'], '.0%')} |")
            L.append("")
    L += ["## Targets", "", "| target | aslnet | met |", "|---|---|---|"]
    for name, txt, met in targets(res):
        L.append(f"| {name} | {txt} | {'n/a' if met is None else 'met' if met else 'not met'} |")
    if any("aslnet_bf16" in (res.get(k) or {}) for k in ("inference", "train", "e2e")):
        L += ["", "For information, the same targets for aslnet under mixed_bfloat16 (bfloat16 "
              "convolutions: not the targets' float32 criterion; the accuracy row compares "
              "with Keras in float32):", "", "| target | aslnet mixed_bfloat16 | met |",
              "|---|---|---|"]
        for name, txt, met in targets(res, "aslnet_bf16"):
            if "pointwise" not in name:
                L.append(f"| {name} | {txt} | "
                         f"{'n/a' if met is None else 'met' if met else 'not met'} |")
        med = lambda d, k=None: ((d or {}).get(k, {}) if k else (d or {})).get("median")  # noqa
        inf, tr = res.get("inference", {}), res.get("train", {})
        for what, a, k in (("inference batch 32", _ratio(med(inf.get("aslnet_bf16"), "b32"),
                                                         med(inf.get("keras_bf16"), "b32")), 0),
                           ("inference batch 1", _ratio(med(inf.get("aslnet_bf16"), "b1"),
                                                        med(inf.get("keras_bf16"), "b1")), 0),
                           ("training step", _ratio(med(tr.get("aslnet_bf16")),
                                                    med(tr.get("keras_bf16"))), 0)):
            if a is not None:
                L.append(f"| {what} vs Keras mixed_bfloat16 (same precision) | {a:.2f}× | — |")
    if res["errors"]:
        L += ["", "## Peers that failed", ""]
        for k, e in res["errors"].items():
            first = e.strip().splitlines()
            L.append(f"- {k}: {first[0]} … {first[-1] if len(first) > 1 else ''}")
    return "\n".join(L) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--render"]:   # the Markdown again from a results JSON (after edits here)
        with open(argv[1]) as f:
            text = markdown(json.load(f))
        with open(os.path.splitext(argv[1])[0] + ".md", "w") as f:
            f.write(text)
        print(text)
        return 0
    args = parse_args(argv)
    work = os.path.join(ROOT, "benchmarks", "results", "tmp", "work")
    os.makedirs(work, exist_ok=True)
    run = Runner(args, work)
    res = {"meta": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads,
                    "peak_gflops": args.peak_gflops, "quick": args.quick, "reps": args.reps,
                    "iters": args.iters, "parts": args.parts, "peers": args.peers,
                    "env": {**common.thread_env(args.threads), **args.env},
                    "host": platform.node(), "python": platform.python_version(),
                    "date": datetime.datetime.now().isoformat(timespec="seconds"),
                    "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg())}}
    print(f"{res['meta']['cpu']}, {args.threads} threads; parts {args.parts}; work dir {work}")
    print("prepare")
    if run("aslnet", "prepare", "--data",
           os.path.join(args.shared, "data", "sign-language-digits")) is None:
        print(run.errors["aslnet prepare"], file=sys.stderr)
        return 1
    for part in PARTS:
        if part in args.parts:
            print(part)
            globals()[f"run_{part}"](args, run, res)
    res["meta"]["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    res["errors"] = run.errors
    slug = re.sub(r"[^a-z0-9]+", "-", res["meta"]["cpu"].lower()).strip("-")
    base = os.path.join(args.out, f"{slug}-{args.threads}t{'-quick' if args.quick else ''}")
    os.makedirs(args.out, exist_ok=True)
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    text = markdown(res)
    with open(base + ".md", "w") as f:
        f.write(text)
    print("\n" + text + f"\nwritten: {base}.md, {base}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
