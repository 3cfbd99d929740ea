"""aslnet against its peers, in one run: see benchmarks/README.md.

    .venv/bin/python -m benchmarks.run [--quick] [--threads 2] [--only inference,train,...]
        [--arch mobilenet,mobilenet_v2] [--size 224,160,128] [--e2e-arch mobilenet_v2]
    .venv/bin/python -m benchmarks.run --render benchmarks/results/NAME.json   # Markdown again
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import bandwidth, common, peak, utilisation  # noqa: E402
from benchmarks.report import FIT_PEERS, markdown  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("inference", "train", "utilisation", "e2e", "phases")
DEFAULT_PARTS = ("inference", "train", "utilisation", "e2e")   # phases: when named
PEERS = ("aslnet", "aslnet_bf16", "aslnet_int8", "keras", "keras_bf16", "torch", "onnxruntime",
         "litert", "litert_int8")
TRAIN_PEERS = ("aslnet", "aslnet_bf16", "keras", "keras_bf16", "torch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: few repetitions; e2e only if named in --only, then "
                        "1 epoch on a small subset (phases: 2 epochs); results go to "
                        "benchmarks/results/tmp/")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", help=f"comma list of parts: {','.join(PARTS)} (default: "
                                  f"{','.join(DEFAULT_PARTS)}; --quick: those but e2e)")
    p.add_argument("--peers", default=",".join(PEERS), help="comma list of peers")
    p.add_argument("--reps", type=int, help="timed runs per figure (default 7, quick 3)")
    p.add_argument("--epochs", type=int, help="e2e and phases epochs (default 10, quick 1; "
                                                 "phases: at least 2)")
    p.add_argument("--shared", default=os.environ.get("ASLNET_SHARED",
                                                      os.path.join(ROOT, "..", "shared")),
                   help="the shared folder (data/ and weights/)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every peer (repeatable), e.g. "
                        "OMP_WAIT_POLICY=passive; recorded in the results")
    p.add_argument("--out", help="results folder (default benchmarks/results[/tmp])")
    p.add_argument("--arch", default=common.DEFAULT_ARCH,
                   help=f"comma list of models: {','.join(common.ARCHS)} (default "
                        f"{common.DEFAULT_ARCH})")
    p.add_argument("--size", default=str(common.DEFAULT_SIZE),
                   help="comma list of input sizes, height = width (default 224): inference "
                        "at each; train, e2e at 224 (else the first size)")
    p.add_argument("--e2e-arch", help="comma list: the models of the e2e part (default: "
                                      "those of --arch)")
    a = p.parse_args(argv)
    a.archs = list(dict.fromkeys(a.arch.split(",")))
    try:
        a.sizes = list(dict.fromkeys(int(s) for s in a.size.split(",")))
    except ValueError:
        p.error(f"--size: comma list of integers, got {a.size!r}")
    if min(a.sizes) < 32:
        p.error("--size: 32 or more (MobileNet's minimum)")
    a.e2e_archs = a.e2e_arch.split(",") if a.e2e_arch else a.archs
    if not set(a.e2e_archs) <= set(a.archs):
        p.error(f"--e2e-arch {a.e2e_archs}: not all in --arch {a.archs}")
    a.parts = (a.only or ",".join(DEFAULT_PARTS[:-1] if a.quick else DEFAULT_PARTS)).split(",")
    a.peers = a.peers.split(",")
    a.env = dict(kv.split("=", 1) for kv in a.env)
    for v, allowed in ((a.parts, PARTS), (a.peers, PEERS), (a.archs, common.ARCHS)):
        bad = sorted(set(v) - set(allowed))
        if bad:
            p.error(f"unknown {bad}; choose from {allowed}")
    if "aslnet" not in a.peers:
        p.error("aslnet is the reference of every comparison: keep it in --peers")
    a.reps = a.reps or (3 if a.quick else 7)
    a.epochs = a.epochs or (1 if a.quick else 10)
    a.iters = {"b1": 2, "b32": 1, "train": 1} if a.quick else {"b1": 20, "b32": 2, "train": 5}
    a.out = a.out or os.path.join(ROOT, "benchmarks", "results", "tmp" if a.quick else "")
    a.train_size = common.DEFAULT_SIZE if common.DEFAULT_SIZE in a.sizes else a.sizes[0]
    a.models = [(arch, size) for arch in a.archs for size in a.sizes]
    return a


def applies(args, part, arch, size):
    """Whether ``part`` runs for the model (arch, size): inference for every one; train and
    e2e (e2e: of --e2e-arch) and utilisation (aslnet's per-layer-type profile) at the
    train size; phases (whose arithmetic is v1's) for MobileNet v1 at 224."""
    if part == "inference":
        return True
    if part in ("train", "utilisation"):
        return size == args.train_size
    if part == "e2e":
        return size == args.train_size and arch in args.e2e_archs
    return (arch, size) == (common.DEFAULT_ARCH, common.DEFAULT_SIZE)


class Runner:
    """Runs one peer task for one model (arch, size) in a subprocess with the thread caps,
    logs its output, and reads back its JSON result, wall time and peak RSS.  Its work
    folder: ``work`` for MobileNet v1 224 (as before there were other models), else
    ``work/<arch>-<size>``; ``base_work``: ``work``, shared by all (the e2e split)."""

    def __init__(self, args, work, arch=common.DEFAULT_ARCH, size=common.DEFAULT_SIZE,
                 errors=None):
        self.args, self.base_work, self.arch, self.size = args, work, arch, size
        self.default = (arch, size) == (common.DEFAULT_ARCH, common.DEFAULT_SIZE)
        self.work = work if self.default else os.path.join(work, common.model_key(arch, size))
        os.makedirs(self.work, exist_ok=True)
        self.env = dict(os.environ, **common.thread_env(args.threads),
                        PYTHONPATH=os.pathsep.join(filter(None, [ROOT,
                                                                 os.environ.get("PYTHONPATH")])))
        self.env.setdefault("ASLNET_WEIGHTS", os.path.join(args.shared, "weights"))
        self.env.update(args.env)
        self.errors = {} if errors is None else errors
        self.meta = {}

    def at(self, arch, size):
        """The runner of another model, sharing this one's errors and meta."""
        r = Runner(self.args, self.base_work, arch, size, self.errors)
        r.meta = self.meta
        return r

    def label(self, what):
        """``what`` (an errors key), with the model where it is not v1 224."""
        return what + ("" if self.default else f" ({common.model_key(self.arch, self.size)})")

    def __call__(self, peer, task, *extra, env=None):
        a = self.args
        cmd = [sys.executable, "-m", f"benchmarks.peers.{peer}", task, "--work", self.work,
               "--threads", str(a.threads), "--reps", str(a.reps),
               "--iters", json.dumps(a.iters), "--arch", self.arch, "--size", str(self.size),
               *extra]
        what = self.label(f"{peer} {task}")
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
            self.errors[what] = f"exit {proc.returncode}; log {log}:\n{tail}"
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
        if peer == "litert_int8" and run.size != common.DEFAULT_SIZE:
            continue   # the shared quantized files are 224x224
        if peer in ("onnxruntime", "litert"):
            src = {"onnxruntime": "mobilenet.onnx", "litert": "mobilenet.tflite"}[peer]
            if not os.path.exists(os.path.join(run.work, src)):
                run.errors[run.label(f"{peer} inference")] = \
                    f"{src} was not exported (see its source peer)"
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
        text = f.read()
    passes = utilisation.parse(text)
    isa = utilisation.verbose_isa(text)          # oneDNN's own words, a cross-check
    if isa and run.meta.get("onednn"):
        run.meta["onednn"]["verbose_isa"] = isa
    fp32 = run.meta["peak"]["fp32"].get(str(args.threads))
    try:
        bw = bandwidth.measure([args.threads])
    except (MemoryError, RuntimeError) as e:
        bw = {"error": str(e)}
    run.meta["bandwidth"] = bw
    res["utilisation"] = {f"b{b}": utilisation.breakdown(p, fp32, bw.get(str(args.threads)))
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
    split, sizes = make_split(args, run.base_work)
    out = {"split": sizes, "epochs": args.epochs}
    for peer in FIT_PEERS:
        if peer in args.peers:
            r = run(peer, "fit", "--split", split, "--epochs", str(args.epochs))
            if r is not None:
                out[peer] = r
    res["e2e"] = out


def run_phases(args, run, res):
    split, sizes = make_split(args, run.base_work)
    epochs = max(args.epochs, 2)
    r = run("aslnet", "phases", "--split", split, "--epochs", str(epochs))
    if r is not None:
        res["phases"] = dict(r, split=sizes)


def machine(args):
    """The results' description of the machine: CPU, ISA flags, the measured peaks at 1
    thread and at --threads threads."""
    print("measuring this machine's peak ...", end=" ", flush=True)
    pk = peak.measure(sorted({1, args.threads}))
    print(pk["error"] or ", ".join(f"{kind} {v:.0f} GFLOP/s at {n} thread(s)"
                                   for kind in ("fp32", "bf16") for n, v in pk[kind].items()))
    cpu = pk.pop("cpu")
    return {"cpu": cpu["model"], "cores": cpu["logical_cpus"],
            "physical_cores": cpu["physical_cores"], "cpu_flags": cpu["flags"],
            "amx": cpu["amx"], "peak": pk}


def results_name(meta):
    """<cpu>[-noavx512]-<threads>t[-<ONEDNN_MAX_CPU_ISA>][-v2][-sizes][-quick], e.g.
    amd-epyc-2t, intel-xeon-platinum-8480-2t-avx2: from the machine, so that two machines'
    results do not mix (-noavx512: a CPU without AVX-512, which /proc/cpuinfo may name as
    one with it: "AMD EPYC" is both a Zen 4 and an AVX2-only part); -v2 where MobileNetV2
    ran, -sizes where other sizes than 224 did (so that those runs leave the v1 224
    results alone)."""
    cap = (meta.get("onednn") or {}).get("max_cpu_isa_env")
    v2 = "mobilenet_v2" in meta.get("archs", ())
    sizes = set(meta.get("sizes", [common.DEFAULT_SIZE])) != {common.DEFAULT_SIZE}
    avx512 = "avx512f" in meta.get("cpu_flags", ["avx512f"])
    return (f"{peak.slug(meta['cpu'])}{'' if avx512 else '-noavx512'}-{meta['threads']}t"
            f"{'-' + cap.lower() if cap else ''}{'-v2' if v2 else ''}"
            f"{'-sizes' if sizes else ''}{'-quick' if meta['quick'] else ''}")


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
    res = {"meta": {**machine(args), "threads": args.threads,
                    "archs": args.archs, "sizes": args.sizes, "train_size": args.train_size,
                    "models": [common.model_key(*m) for m in args.models], "macs": {},
                    "quick": args.quick, "reps": args.reps,
                    "iters": args.iters, "parts": args.parts, "peers": args.peers,
                    "env": {**common.thread_env(args.threads), **args.env},
                    "host": platform.node(), "python": platform.python_version(),
                    "date": datetime.datetime.now().isoformat(timespec="seconds"),
                    "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg())}}
    run.meta = res["meta"]
    print(f"{res['meta']['cpu']}, {args.threads} threads; parts {args.parts}; "
          f"models {res['meta']['models']}; work dir {work}")
    prepared = 0
    os.makedirs(args.out, exist_ok=True)
    base = lambda: os.path.join(args.out, results_name(res["meta"]))   # noqa: E731

    def save():   # after every model too: a run cut short keeps what it measured
        res["meta"]["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        res["errors"] = run.errors
        with open(base() + ".json", "w") as f:
            json.dump(res, f, indent=1)
        text = markdown(res)
        with open(base() + ".md", "w") as f:
            f.write(text)
        return text

    for arch, size in args.models:
        r = run.at(arch, size)
        key, tag = common.model_key(arch, size), "" if r.default else f" ({r.arch} {r.size})"
        print("prepare" + tag)
        prep = r("aslnet", "prepare", "--data",
                 os.path.join(args.shared, "data", "sign-language-digits"))
        if prep is None:
            print(run.errors[r.label("aslnet prepare")], file=sys.stderr)
            continue
        prepared += 1
        res["meta"].setdefault("onednn", prep.get("onednn"))
        res["meta"]["macs"][key] = prep.get("macs_per_image")
        slot = res if r.default else res.setdefault("models", {}).setdefault(
            key, {"arch": arch, "size": size})
        for part in PARTS:
            if part in args.parts and applies(args, part, arch, size):
                print(part + tag)
                globals()[f"run_{part}"](args, r, slot)
        save()
    if not prepared:
        return 1
    if "phases" in args.parts and not any(applies(args, "phases", *m) for m in args.models):
        run.errors["phases"] = "exit -: runs for MobileNet v1 224 only, not in --arch/--size"
    text = save()
    print("\n" + text + f"\nwritten: {base()}.md, {base()}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
