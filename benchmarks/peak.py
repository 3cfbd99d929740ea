"""This machine: CPU model, ISA flags and the measured arithmetic peak.

``measure(threads)`` compiles ``benchmarks/peak.c`` with the system C compiler (``$CC`` or
``cc``; the build is cached in ``benchmarks/results/tmp/``, keyed by the source and the
compiler) and runs it for each thread count: FP32 FMA (AVX-512 and AVX2/FMA3 kernels, the
ones the CPU has) and bf16 (``vdpbf16ps``, AVX512_BF16, and AMX's ``tdpbf16ps``) where the
CPU has it: oneDNN runs bf16 convolutions on AMX where there is AMX, so the bf16 peak is
the best bf16 kernel's.  Every
percentage of peak in the results is taken against these figures, never a number typed in.

Two figures per kernel and thread count (see peak.c): the peak, from each thread's own
CPU time (the rate of the cores while they run the kernel: other processes sharing the
machine do not lower it), and the wall-clock figure (what the cores gave the kernel during
this run: lower on a busy machine, so a wall figure well under the peak says the run's
other figures are slowed by load too).  Each is the best of the kernel's runs: other
processes only ever slow a run down.

    python -m benchmarks.peak [THREADS ...]     # prints the figures as JSON
"""
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "peak.c")
CACHE = os.path.join(HERE, "results", "tmp")
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-pthread"]
FP32_KERNELS = ("fp32_avx512", "fp32_avx2")
BF16_KERNELS = ("bf16_amx", "bf16_avx512")   # the bf16 peak: the best of those the CPU runs
# /proc/cpuinfo flags worth stating in the results (the rest are noise here)
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
         "amx_tile", "amx_bf16", "amx_int8")


def cpuinfo():
    """{'model', 'flags' (the FLAGS the CPU has), 'logical_cpus' (this process may run
    on), 'physical_cores' (of the whole machine), 'amx'}."""
    model, flags, cores = None, set(), set()
    phys = core = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model is None:
                    model = value
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
                elif not key:
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
    except OSError:
        pass
    try:
        logical = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        logical = os.cpu_count()
    amx = [f for f in ("amx_tile", "amx_bf16", "amx_int8") if f in flags]
    return {"model": model or platform.processor() or platform.machine(),
            "flags": [f for f in FLAGS if f in flags], "logical_cpus": logical,
            "physical_cores": len(cores) or None,
            "amx": ("yes (" + ", ".join(amx) + ")") if amx else "no"}


def slug(model):
    """A file name for the machine from its CPU model: 'AMD EPYC' -> 'amd-epyc',
    'Intel(R) Xeon(R) Platinum 8480+' -> 'intel-xeon-platinum-8480',
    'AMD EPYC 9R14 96-Core Processor' -> 'amd-epyc-9r14'."""
    s = re.sub(r"\((?:r|tm|c)\)", " ", model.lower())
    s = re.sub(r"@.*$", " ", s)                                    # "@ 2.00GHz"
    s = re.sub(r"\b(?:\d+-core|cpu|processor|with .*)\b", " ", s)
    return re.sub(r"[^a-z0-9]+", "-", s).strip("-") or "unknown-cpu"


def _compiler():
    return shlex.split(os.environ.get("CC", "cc"))


def build():
    """Path of the compiled peak program (built once per source and compiler)."""
    cc = _compiler()
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True,
                                 check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"no C compiler to build {SOURCE} ({' '.join(cc)}: {e}); "
                           "install one (apt-get install gcc) or set CC") from e
    with open(SOURCE, "rb") as f:
        key = hashlib.sha256(f.read() + version.encode() + " ".join(cc + CFLAGS).encode())
    exe = os.path.join(CACHE, f"peak-{key.hexdigest()[:12]}")
    if os.path.exists(exe):
        return exe
    os.makedirs(CACHE, exist_ok=True)
    tmp = f"{exe}.{os.getpid()}.tmp"
    r = subprocess.run([*cc, *CFLAGS, "-o", tmp, SOURCE], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building {SOURCE} with {' '.join(cc)} failed:\n{r.stderr[-2000:]}")
    os.replace(tmp, exe)
    for name in os.listdir(CACHE):            # builds of older sources or compilers
        if name.startswith("peak-") and os.path.join(CACHE, name) != exe:
            try:
                os.remove(os.path.join(CACHE, name))
            except OSError:
                pass
    return exe


def run(exe, threads, ms=50, runs=9):
    """{kernel: {'peak', 'wall', 'runs_cpu', 'runs_wall'}} in GFLOP/s for ``threads``
    threads: the best run by CPU time and by wall time, and every run."""
    r = subprocess.run([exe, str(threads), str(ms), str(runs)], capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{exe} {threads} failed (exit {r.returncode}): {r.stderr.strip()}")
    doc = json.loads(r.stdout)
    out = doc["kernels"]
    if "amx" in doc:   # the CPU has AMX, the kernel was refused its tile state
        out["_amx_refused"] = doc["amx"]
    return {k: v if k.startswith("_") else {"peak": max(v["gflops_cpu"]), "wall": max(v["gflops_wall"]),
                "runs_cpu": v["gflops_cpu"], "runs_wall": v["gflops_wall"]}
            for k, v in out.items()}


def measure(threads=(1,), ms=50, runs=9):
    """{'cpu': cpuinfo(), 'by_threads': {n: {kernel: figures}}, 'fp32': {n: GFLOP/s},
    'bf16': {n: GFLOP/s}, 'fp32_wall': {n: GFLOP/s}, 'error': None or why nothing was
    measured}.  'fp32' is the peak of the best FP32 kernel (AVX-512 where the CPU has it),
    'bf16' the best bf16 kernel's (AMX where the CPU has it and Linux grants it, else
    vdpbf16ps; 'bf16_kernel' names it), 'fp32_wall' the FP32 wall-clock figure of this run;
    thread counts are strings (JSON keys)."""
    res = {"cpu": cpuinfo(), "by_threads": {}, "fp32": {}, "bf16": {}, "fp32_wall": {},
           "error": None,
           "method": f"benchmarks/peak.c: independent FMA chains in registers, best of "
                     f"{runs} runs of ~{ms} ms, FLOP per thread CPU second"}
    try:
        exe = build()
        for n in sorted(set(threads)):
            k = run(exe, n, ms, runs)
            if "_amx_refused" in k:
                res["amx"] = k.pop("_amx_refused")
            cpus = res["cpu"]["logical_cpus"] or n
            if n > cpus:     # threads took turns on fewer CPUs: their CPU-time rates add
                for v in k.values():               # up to more than those CPUs can do
                    v["peak"] *= cpus / n
                res["note"] = (f"{n} threads on {cpus} logical CPUs: the peak is that of "
                               f"{cpus} CPUs")
            res["by_threads"][str(n)] = k
            fp32 = [k[f] for f in FP32_KERNELS if f in k]
            if fp32:
                res["fp32"][str(n)] = max(f["peak"] for f in fp32)
                res["fp32_wall"][str(n)] = max(f["wall"] for f in fp32)
            bf16 = [b for b in BF16_KERNELS if b in k]
            if bf16:
                best = max(bf16, key=lambda b: k[b]["peak"])
                res["bf16"][str(n)] = k[best]["peak"]
                res["bf16_kernel"] = best
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        res["error"] = str(e)
    return res


def main(argv):
    threads = [int(a) for a in argv] or [1, 2]
    print(json.dumps(measure(threads), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
