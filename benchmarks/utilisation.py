"""Per-layer-type time of aslnet's forward pass, from oneDNN's verbose mode.

``benchmarks.peers.aslnet profile`` runs forward passes with
``ONEDNN_VERBOSE=profile_exec``: oneDNN prints one line per primitive
execution, ``onednn_verbose,exec,cpu,<kind>,<impl>,<prop>,<memory descs>,
<attrs>,<alg>,<problem>,<ms>``, and the peer closes each pass with
``@@pass b=<batch> wall_ms=<ms>``.  Each primitive is given a layer type from
its kind and shape:

- stem: the convolution with 3 input channels;
- depthwise: grouped convolutions (``g<groups>`` in the problem);
- pointwise: 1x1 convolutions over a feature map;
- dense/head: 1x1 convolutions on a 1x1 map, inner products, matmuls;
- other (oneDNN): every other primitive (batch norm, eltwise, pooling,
  reorders, ...) -- aslnet fuses batch norm and ReLU6 into the convolutions;
- outside oneDNN: the pass's wall time minus its primitives (aslnet's own C
  code: global average pooling, softmax, reshapes; and the Python call).

The roofline: each convolution and inner product's compulsory traffic (its source,
weights, bias and destination, each moved once: ``traffic``), its arithmetic intensity
(FLOP per byte) and the bound ``min(peak, intensity x bandwidth)`` with the machine's
measured FP32 peak and memory bandwidth (benchmarks/bandwidth.py).  Tensors that stay in
the caches (aslnet runs the early layers one image at a time so that they do) cost less
than that traffic: a layer type can then pass the memory roofline.
"""
import re
import statistics

TYPES = ("stem", "depthwise", "pointwise", "dense/head", "other (oneDNN)", "outside oneDNN")
_CONV = re.compile(r"(?:g(?P<g>\d+))?mb(?P<mb>\d+)_ic(?P<ic>\d+)oc(?P<oc>\d+)"
                   r"_ih(?P<ih>\d+)oh(?P<oh>\d+)kh(?P<kh>\d+).*"
                   r"_iw(?P<iw>\d+)ow(?P<ow>\d+)kw(?P<kw>\d+)")
_IP = re.compile(r"mb(?P<mb>\d+)ic(?P<ic>\d+)oc(?P<oc>\d+)")
_PASS = re.compile(r"@@pass b=(\d+) wall_ms=([\d.]+)")


def classify(kind, problem):
    """(layer type, FLOPs) of one primitive execution."""
    if kind == "convolution":
        m = _CONV.search(problem)
        if m:
            v = {k: int(x) for k, x in m.groupdict(default="1").items()}
            spatial = v["mb"] * v["oh"] * v["ow"]
            if v["g"] > 1:
                return "depthwise", 2 * spatial * v["oc"] * v["kh"] * v["kw"] * v["ic"] // v["g"]
            flops = 2 * spatial * v["oc"] * v["ic"] * v["kh"] * v["kw"]
            if v["ic"] == 3:
                return "stem", flops
            if v["kh"] == v["kw"] == 1:
                return ("dense/head" if v["oh"] * v["ow"] == 1 else "pointwise"), flops
    if kind in ("inner_product", "matmul"):
        m = _IP.search(problem)
        return "dense/head", 2 * int(m["mb"]) * int(m["ic"]) * int(m["oc"]) if m else 0
    return "other (oneDNN)", 0


def traffic(kind, problem, itemsize=4):
    """Bytes a convolution or inner product must move at least: source, weights, bias
    and destination once each (0 for other primitives: not counted)."""
    if kind == "convolution":
        m = _CONV.search(problem)
        if m:
            v = {k: int(x) for k, x in m.groupdict(default="1").items()}
            elems = (v["mb"] * v["ih"] * v["iw"] * v["ic"]
                     + v["kh"] * v["kw"] * v["ic"] * v["oc"] // v["g"] + v["oc"]
                     + v["mb"] * v["oh"] * v["ow"] * v["oc"])
            return itemsize * elems
    if kind in ("inner_product", "matmul"):
        m = _IP.search(problem)
        if m:
            mb, ic, oc = int(m["mb"]), int(m["ic"]), int(m["oc"])
            return itemsize * (mb * ic + ic * oc + oc + mb * oc)
    return 0


def verbose_isa(text):
    """The ISA in oneDNN's verbose info line ('onednn_verbose,info,cpu,isa:Intel AVX-512
    with ...'), or None."""
    for line in text.splitlines():
        if line.startswith("onednn_verbose,info,cpu,isa:"):
            return line.split("isa:", 1)[1].strip()
    return None


def parse(text):
    """{batch: [pass, ...]}, each pass {'wall_ms', 'prims': [(kind, impl, problem, ms)]}."""
    passes, current = {}, []
    for line in text.splitlines():
        if line.startswith("onednn_verbose,") and ",exec," in line:
            f = line.split(",")
            current.append((f[3], f[4], f[-2], float(f[-1])))
        elif line.startswith("@@warm"):
            current = []
        else:
            m = _PASS.match(line)
            if m:
                passes.setdefault(int(m[1]), []).append(
                    {"wall_ms": float(m[2]), "prims": current})
                current = []
    return passes


def breakdown(passes, peak_gflops, bandwidth_gbs=None):
    """Per layer type: median ms over the passes, share of the pass, GFLOP,
    GFLOP/s and fraction of ``peak_gflops`` (the measured FP32 peak; None: not
    measured); GB moved (``traffic``), GB/s, FLOP per byte, the roofline bound
    with ``bandwidth_gbs`` (measured; None: not measured) and the fraction of it;
    plus the primitives of the median pass."""
    per_type = {t: [] for t in TYPES}
    flops, moved = dict.fromkeys(TYPES, 0), dict.fromkeys(TYPES, 0)
    for i, p in enumerate(passes):
        ms = dict.fromkeys(TYPES, 0.0)
        for kind, _, problem, t in p["prims"]:
            typ, fl = classify(kind, problem)
            ms[typ] += t
            if i == 0:
                flops[typ] += fl
                moved[typ] += traffic(kind, problem)
        ms["outside oneDNN"] = max(p["wall_ms"] - sum(ms.values()), 0.0)
        for t in TYPES:
            per_type[t].append(ms[t])
    wall = statistics.median(p["wall_ms"] for p in passes)
    rows = {}
    for t in TYPES:
        ms = statistics.median(per_type[t])
        gflops = flops[t] / ms / 1e6 if ms and flops[t] else None
        intensity = flops[t] / moved[t] if moved[t] else None
        bound = (min(peak_gflops, intensity * bandwidth_gbs)
                 if intensity and peak_gflops and bandwidth_gbs else None)
        rows[t] = {"ms": ms, "share": ms / wall if wall else None, "gflop": flops[t] / 1e9,
                   "gflops": gflops,
                   "peak_fraction": gflops / peak_gflops if gflops and peak_gflops else None,
                   "gbytes": moved[t] / 1e9,
                   "gbs": moved[t] / ms / 1e6 if ms and moved[t] else None,
                   "intensity": intensity, "roofline": bound,
                   "roofline_fraction": gflops / bound if gflops and bound else None}
    median_pass = sorted(passes, key=lambda p: p["wall_ms"])[len(passes) // 2]
    return {"wall_ms": wall, "passes": len(passes), "types": rows,
            "primitives": [{"kind": k, "impl": im, "problem": pr, "ms": t,
                            "type": classify(k, pr)[0]} for k, im, pr, t in median_pass["prims"]]}
