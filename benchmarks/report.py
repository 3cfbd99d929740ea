"""The Markdown report of a benchmark run (``benchmarks.run``), from its results JSON.

    python -m benchmarks.run --render benchmarks/results/NAME.json   # the .md again
"""
from benchmarks import common

LABELS = {"aslnet": "aslnet", "aslnet_bf16": "aslnet mixed_bfloat16 (not float32)",
          "aslnet_int8": "aslnet int8 (model.quantize; not float32)",
          "keras_bf16": "Keras 3 mixed_bfloat16 (not float32)",
          "keras": "Keras 3 (TensorFlow)", "torch": "PyTorch",
          "torch_cl": "PyTorch channels_last", "onnxruntime": "ONNX Runtime",
          "litert": "LiteRT (XNNPACK)",
          "litert_int8": "LiteRT int8 (the shared quantized TFLite file; v1: its trunk file)"}
FIT_PEERS = ("aslnet", "aslnet_bf16", "keras")
FLOAT32 = ("aslnet", "keras", "torch", "torch_cl", "onnxruntime", "litert")   # the targets' peers


def _fig(s, digits=1):
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _med(d, k=None):
    """The median of figure ``d`` (or of ``d[k]``), None where absent."""
    d = (d or {}).get(k) if k else d
    return (d or {}).get("median")


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


def models(res):
    """[(key, arch, size, that model's results)] in the run's order: MobileNet v1 224's
    results are the top level of the file (as before other models ran), the others'
    are ``res['models'][key]``."""
    default = common.model_key(common.DEFAULT_ARCH, common.DEFAULT_SIZE)
    subs = {default: res} if any(k in res for k in ("inference", "train", "e2e",
                                                     "utilisation", "phases")) else {}
    subs.update(res.get("models") or {})
    order = res["meta"].get("models") or list(subs)
    out = []
    for key in order:
        if key in subs:
            arch, size = key.rsplit("-", 1)
            out.append((key, arch, int(size), subs[key]))
    return out


def macs(res, key):
    """Multiply-adds per image of the model ``key``, as prepare counted them from it
    (results written before that: Keras's 569 M for v1 224; None for another)."""
    n = (res["meta"].get("macs") or {}).get(key)
    if n is None and key == common.model_key(common.DEFAULT_ARCH, common.DEFAULT_SIZE):
        n = common.MACS_PER_IMAGE
    return n


def v2_targets(res, me="aslnet"):
    """[(target, ratio text, met)] of issue 13's MobileNetV2 targets: batch 32 inference
    ≥ 1.2× the fastest float32 peer (each size), the tutorial's fit ≥ 2× faster than
    Keras; the training step against Keras for information (met: None)."""
    rows = []
    med = _med
    for key, arch, size, sub in models(res):
        if arch != "mobilenet_v2":
            continue
        inf, tr, e2e = sub.get("inference") or {}, sub.get("train") or {}, sub.get("e2e") or {}
        if inf:
            vals = [(med(inf[p], "b32"), p) for p in inf
                    if p in FLOAT32 and p != "aslnet" and med(inf[p], "b32")]
            v, n = max(vals) if vals else (None, None)
            r = _ratio(med(inf.get(me), "b32"), v)
            rows.append((f"{size}×{size}: inference batch 32 ≥ 1.2× the fastest float32 peer",
                         "n/a" if r is None else f"{r:.2f}× ({LABELS[n]})",
                         None if r is None else r >= 1.2))
        if tr:
            r = _ratio(med(tr.get(me)), med(tr.get("keras")))
            rows.append((f"{size}×{size}: training step vs Keras (for information)",
                         "n/a" if r is None else f"{r:.2f}×", None))
        if e2e or size == common.DEFAULT_SIZE:
            ea, ek = e2e.get(me), e2e.get("keras")
            r = _ratio(ek and ek["fit_s"], ea and ea["fit_s"])
            rows.append((f"{size}×{size}: tutorial fit ({e2e.get('epochs', 10)} epochs) ≥ 2× "
                         "faster than Keras", "n/a (e2e not run)" if r is None
                         else f"{r:.2f}×", None if r is None else r >= 2.0))
    return rows


def peaks(m):
    """(FP32, bf16) peak GFLOP/s at the run's thread count, None where not measured
    (results written before the peak was measured carry a 'peak_gflops' typed in)."""
    pk = m.get("peak")
    if pk is None:
        return m.get("peak_gflops"), None
    n = str(m["threads"])
    return pk["fp32"].get(n), pk["bf16"].get(n)


_BF16_KERNEL = {"bf16_amx": "AMX tdpbf16ps", "bf16_avx512": "AVX512_BF16 vdpbf16ps"}


def _pct(gflops, peak):
    return "n/a (peak not measured)" if not peak else f"{gflops / peak:.0%}"


def machine_lines(m):
    """The header's lines on the machine: CPU, ISA oneDNN dispatched, measured peaks."""
    n = m["threads"]
    phys = f", {m['physical_cores']} cores" if m.get("physical_cores") else ""
    L = [f"- CPU: {m['cpu']} ({m['cores']} logical CPUs{phys}), {n} threads for every "
         f"framework" + (f"; ISA flags: {' '.join(m['cpu_flags'])}; AMX: {m['amx']}"
                         if "cpu_flags" in m else "")]
    dn = m.get("onednn")
    if dn and "isa" in dn:
        cap = dn.get("max_cpu_isa_env")
        L.append(f"- oneDNN {dn['version']} (`{dn['library']}`) dispatches `{dn['isa']}`"
                 + (f" (ONEDNN_VERBOSE: {dn['verbose_isa']})" if dn.get("verbose_isa") else "")
                 + (f", capped by `ONEDNN_MAX_CPU_ISA={cap}` (the peak below is the CPU's)"
                    if cap else ""))
    elif dn:
        L.append(f"- oneDNN: ISA not read ({dn.get('error')})")
    pk = m.get("peak")
    if pk is None:
        fp32, _ = peaks(m)
        L.append(f"- peak {fp32:.0f} GFLOP/s FP32 (typed in, not measured by this run)"
                 if fp32 else "- peak: not recorded")
    elif pk["error"]:
        L.append(f"- peak not measured ({pk['error'].splitlines()[0]}): no percentages of peak")
    else:
        fig = lambda kind: " / ".join(                                    # noqa: E731
            f"{pk[kind][t]:.0f}" for t in sorted(pk[kind], key=int, reverse=True))
        threads = " / ".join(sorted(pk["fp32"], key=int, reverse=True))
        L.append(f"- measured peak at {threads} thread(s): FP32 {fig('fp32')} GFLOP/s, "
                 + (f"bf16 {fig('bf16')} GFLOP/s "
                    f"({_BF16_KERNEL.get(pk.get('bf16_kernel'), 'vdpbf16ps')})"
                    if pk["bf16"] else "bf16: the CPU has no AVX512_BF16")
                 + (f"; AMX not measured: {pk['amx']}" if pk.get("amx") else "")
                 + f" ({pk['method']}); every percentage of peak below is "
                 f"of the FP32 figure at {n} threads unless it says bf16"
                 + (f"; {pk['note']}" if pk.get("note") else ""))
        avx2 = pk["by_threads"].get(str(n), {}).get("fp32_avx2")
        if dn and dn.get("max_cpu_isa_env") and avx2:
            L.append(f"- the AVX2/FMA3 kernel alone: {avx2['peak']:.0f} GFLOP/s at {n} "
                     "threads (the ceiling of oneDNN's kernels under the cap)")
        wall, fp32 = pk["fp32_wall"].get(str(n)), pk["fp32"].get(str(n))
        if wall and fp32 and wall < 0.9 * fp32:
            L.append(f"- **the machine was shared**: the FP32 kernel got only {wall:.0f} "
                     f"GFLOP/s of wall-clock time at {n} threads ({wall / fp32:.0%} of its "
                     "peak); every time below is slowed by that load too")
    return L


def model_lines(res, key, arch, size, sub, fp32_peak, bf16_peak):
    """The inference, training step and e2e tables of one model, titled with it."""
    L, title = [], common.model_label(arch, size)
    inf = sub.get("inference")
    if inf:
        L += [f"## Inference (images/s): {title}", "",
              "| peer | batch 1 | batch 32 | first call b1 / b32 (s) | top-1 = aslnet (of 32) "
              "| max abs diff vs aslnet |", "|---|---|---|---|---|---|"]
        for p, r in inf.items():
            ag = r.get("agreement") or {}
            b32 = _fig(r['b32']) + (" (32 calls of batch 1)" if r.get("b32_as") else "")
            L.append(f"| {LABELS[p]} | {_fig(r['b1'])} | {b32} | "
                     f"{r['b1']['first_call_s']:.2f} / {r['b32']['first_call_s']:.2f} | "
                     f"{ag.get('top1_equal', '—') if p != 'aslnet' else 'ref.'} | "
                     f"{'%.2e' % ag['max_abs_diff'] if 'max_abs_diff' in ag else '—'} |")
        q8, lq = inf.get("aslnet_int8"), inf.get("litert_int8")
        if q8 and lq:
            L += ["", "aslnet int8 against LiteRT on the quantized file (target 2×): " + ", ".join(
                f"batch {b[1:]} {q8[b]['median'] / lq[b]['median']:.2f}×" for b in ("b1", "b32"))
                + "."]
        a, n = inf.get("aslnet"), macs(res, key)
        if a and n:
            gf = lambda r: r["median"] * 2 * n / 1e9   # noqa: E731
            L += ["", "aslnet achieved: " + ", ".join(
                f"batch {b[1:]} {gf(a[b]):.1f} GFLOP/s = {_pct(gf(a[b]), fp32_peak)} of peak"
                for b in ("b1", "b32")) + f" ({n / 1e9:.3f} G multiply-adds per image × 2)."]
            a = inf.get("aslnet_bf16")
            if a:
                L.append("aslnet mixed_bfloat16 achieved: " + ", ".join(
                    f"batch {b[1:]} {gf(a[b]):.1f} GFLOP/s = {_pct(gf(a[b]), bf16_peak)} of the "
                    "bf16 peak" for b in ("b1", "b32")) + ".")
        L.append("")
    tr = sub.get("train")
    if tr:
        ref = tr.get("aslnet", {}).get("first_loss")
        L += [f"## Training step (tutorial model, batch 10; images/s): {title}", "",
              "| peer | images/s | trainable params | first-step loss | vs aslnet |",
              "|---|---|---|---|---|"]
        for p, r in tr.items():
            d = "ref." if p == "aslnet" else (f"{abs(r['first_loss'] - ref):.1e}"
                                              if ref is not None else "—")
            L.append(f"| {LABELS[p]} | {_fig(r)} | {r['trainable_params']:,} | "
                     f"{r['first_loss']:.5f} | {d} |")
        L.append("")
        L += refold_lines(tr, title)
    e2e = sub.get("e2e")
    if e2e:
        L += [f"## Tutorial end to end ({e2e['epochs']} epoch(s); split {e2e['split']}): "
              f"{title}", "",
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
    return L


def markdown(res):
    m = res["meta"]
    fp32_peak, bf16_peak = peaks(m)
    ms = models(res)
    if [k for k, *_ in ms] in ([], [common.model_key(common.DEFAULT_ARCH, common.DEFAULT_SIZE)]):
        what = "MobileNet v1 alpha 1.0 224×224 with aslnet's ImageNet weights in every peer"
    else:
        what = ("models: " + ", ".join(common.model_label(a, s) for _, a, s, _ in ms)
                + ", each with aslnet's ImageNet weights in every peer (the weights trained "
                "at 224×224, at every size); the training step and e2e at "
                f"{m.get('train_size', common.DEFAULT_SIZE)}")
    L = [f"# aslnet benchmarks{' — QUICK SMOKE RUN (not for comparison)' if m['quick'] else ''}",
         "", *machine_lines(m),
         f"- {m['date']}, host {m['host']}, Python {m['python']}; load average "
         f"{m['load_start']} at start, {m['load_end']} at end",
         "- float32 everywhere but the rows marked mixed_bfloat16 (aslnet's optional dtype "
         "policy: every convolution in bfloat16; the targets compare float32 only)",
         f"- {what}; each figure: median (min–max) of {m['reps']} timed runs",
         "- environment of every peer: "
         + " ".join(f"`{k}={v}`" for k, v in m["env"].items() if k != "TF_CPP_MIN_LOG_LEVEL"),
         ""]
    for key, arch, size, sub in ms:
        L += model_lines(res, key, arch, size, sub, fp32_peak, bf16_peak)
    L += phase_lines(res.get("phases"), fp32_peak)
    for key, arch, size, sub in ms or [(None, None, None, res)]:
        L += utilisation_lines(sub.get("utilisation"), m.get("bandwidth"), m.get("threads"),
                               common.model_label(arch, size) if len(ms) > 1 else None)
    v1 = common.model_key(common.DEFAULT_ARCH, common.DEFAULT_SIZE) in [k for k, *_ in ms]
    if v1 or not ms:
        L += ["## Targets" + ("" if len(ms) <= 1 else
                              f": {common.model_label(common.DEFAULT_ARCH, common.DEFAULT_SIZE)}"),
              "", "| target | aslnet | met |", "|---|---|---|"]
        for name, txt, met in targets(res):
            L.append(f"| {name} | {txt} | {_met(met)} |")
    if v1 and any("aslnet_bf16" in (res.get(k) or {}) for k in ("inference", "train", "e2e")):
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
    L += v2_target_lines(res)
    if res["errors"]:
        L += ["", "## Peers that failed", ""]
        for k, e in res["errors"].items():
            first = e.strip().splitlines()
            L.append(f"- {k}: {first[0]} … {first[-1] if len(first) > 1 else ''}")
    return "\n".join(L) + "\n"


def _fmt(v, spec):
    return "—" if v is None else format(v, spec)


def utilisation_lines(ut, bandwidth, threads, label=None):
    """Per layer type: time, GFLOP/s against the peak, and the roofline (GB/s moved,
    FLOP per byte, the bound from the measured peak and bandwidth); ``label``: the model's,
    when the run has several."""
    if not ut:
        return []
    bw = (bandwidth or {}).get(str(threads))
    L = ["## aslnet utilisation per layer type (oneDNN verbose profile_exec)"
         + (f": {label}" if label else ""), "",
         "Roofline: each layer type's compulsory traffic (every convolution's source, "
         "weights and destination moved once), its FLOP per byte and the bound "
         "min(FP32 peak, FLOP/byte x memory bandwidth); "
         + (f"measured bandwidth {bw:.1f} GB/s on {threads} threads (benchmarks/bandwidth.py, "
            "STREAM add with NumPy)" if bw else "memory bandwidth not measured")
         + ".  Tensors that stay in the caches cost less than that traffic (the per-image "
         "early layers are run so that they do): such a type can pass 100% of its bound.",
         ""]
    for b, u in ut.items():
        L += [f"Batch {b[1:]}: median pass {u['wall_ms']:.1f} ms ({u['passes']} passes).",
              "", "| layer type | ms | share | GFLOP | GFLOP/s | of peak | GB | GB/s | "
              "FLOP/B | roofline GFLOP/s | of roofline |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for t, r in u["types"].items():
            L.append(f"| {t} | {r['ms']:.2f} | {r['share']:.0%} | {r['gflop']:.3f} | "
                     f"{_fmt(r['gflops'], '.1f')} | {_fmt(r['peak_fraction'], '.0%')} | "
                     f"{_fmt(r.get('gbytes') or None, '.3f')} | {_fmt(r.get('gbs'), '.1f')} | "
                     f"{_fmt(r.get('intensity'), '.1f')} | {_fmt(r.get('roofline'), '.1f')} | "
                     f"{_fmt(r.get('roofline_fraction'), '.0%')} |")
        L.append("")
    return L


def _met(met):
    return "n/a" if met is None else "met" if met else "not met"


def v2_target_lines(res):
    rows = v2_targets(res)
    if not rows:
        return []
    L = ["", "## Targets: MobileNetV2 (issue 13)", "", "| target | aslnet | met |",
         "|---|---|---|"]
    L += [f"| {name} | {txt} | {'—' if 'information' in name else _met(met)} |"
          for name, txt, met in rows]
    bf16 = [r for r in v2_targets(res, "aslnet_bf16") if "n/a" not in r[1]]
    if bf16:
        L += ["", "For information, aslnet mixed_bfloat16 against the same float32 peers:", "",
              "| target | aslnet mixed_bfloat16 | met |", "|---|---|---|"]
        L += [f"| {name} | {txt} | — |" for name, txt, met in bf16]
    return L


def refold_lines(tr, title=None):
    """The table of predict right after a training step, where the peers measured it."""
    rows = [(p, r["predict_after_train"]) for p, r in tr.items() if "predict_after_train" in r]
    if not rows:
        return []
    L = [f"## Predict right after a training step (tutorial model, "
         f"{rows[0][1]['batch']} images; ms)" + (f": {title}" if title else ""), "",
         "`model.predict(x)` right after one `train_on_batch`, then again: the difference is "
         "what a training step costs the next inference (refolding the fused conv+BN groups).",
         "", "| peer | first predict after train_on_batch | second predict | difference |",
         "|---|---|---|---|"]
    for p, r in rows:
        d = r["first_ms"]["median"] - r["second_ms"]["median"]
        L.append(f"| {LABELS[p]} | {_fig(r['first_ms'])} | {_fig(r['second_ms'])} | "
                 f"{d:+.1f} |")
    return L + [""]


def phase_lines(ph, fp32_peak):
    """The tutorial's fit phase by phase (benchmarks.phases), with the time its
    arithmetic would take at the measured FP32 peak."""
    if not ph:
        return []
    total = sum(ph["phases_s"].values())
    L = [f"## Tutorial fit phase by phase (aslnet, {ph['epochs']} epochs; "
         f"{ph['train_images']} train, {ph['valid_images']} validation, "
         f"{ph['test_images']} test images)", "",
         f"Trunk: the frozen layers below `{ph['first_trainable']}`, "
         f"{ph['trunk_gflop_per_image']:.3f} GFLOP per image forward; tail: the rest, "
         f"{ph['tail_gflop_per_image']:.3f} GFLOP per image forward, ×3 to train (forward, "
         "weight and input gradients). Decode is timed apart, before `fit` (which then reads "
         "the decoded images from aslnet's cache); see benchmarks/phases.py.", "",
         "| phase | s | share | GFLOP | s at FP32 peak |", "|---|---|---|---|---|"]
    for name, sec in ph["phases_s"].items():
        g = ph["gflop"].get(name)
        at = f"{g / fp32_peak:.1f}" if g is not None and fp32_peak else "—"
        L.append(f"| {name} | {sec:.2f} | {sec / total:.0%} | "
                 f"{'—' if g is None else f'{g:,.0f}'} | {at} |")
    work = sum(ph["gflop"].values())
    L.append(f"| total | {total:.2f} | | {work:,.0f} | "
             f"{f'{work / fp32_peak:.1f}' if fp32_peak else '—'} |")
    if fp32_peak:
        fit = ph["phases_s"]["decode"] + ph["fit_s"]
        L += ["", f"Arithmetic limit of the fit: {work / fp32_peak:.1f} s at the measured "
                  f"peak; decode + fit took {fit:.1f} s: {work / fp32_peak / fit:.0%} of the "
                  f"limit (target ≥ 50%). Test accuracy {ph['test_accuracy']:.3f}."]
    return L + [""]
