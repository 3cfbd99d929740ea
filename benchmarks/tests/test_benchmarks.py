"""The benchmark's own machinery (not its figures): the peak kernel, the machine's
description, the FLOP counts and the phase arithmetic, the report.

    python -m pytest -q benchmarks/tests
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bandwidth, peak, phases, report, utilisation

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def test_slug_names_the_machine():
    assert peak.slug("AMD EPYC") == "amd-epyc"
    assert peak.slug("Intel(R) Xeon(R) Platinum 8480+") == "intel-xeon-platinum-8480"
    assert peak.slug("AMD EPYC 9R14 96-Core Processor") == "amd-epyc-9r14"
    assert peak.slug("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz") == "intel-core-i7-8700"
    assert peak.slug("???") == "unknown-cpu"


@pytest.mark.skipif(not shutil.which(os.environ.get("CC", "cc")), reason="no C compiler")
def test_peak_kernels_match_the_cpu_flags():
    """Each kernel runs exactly where the CPU has its ISA, and gives a positive figure;
    the wall-clock figure can't beat the CPU-time one by more than timer jitter (one
    thread: the two clocks measure the same interval when nothing preempts it)."""
    res = peak.measure([1], ms=5, runs=2)
    assert res["error"] is None, res["error"]
    flags = set(res["cpu"]["flags"])
    kernels = res["by_threads"]["1"]
    assert ("fp32_avx512" in kernels) == ("avx512f" in flags)
    assert ("fp32_avx2" in kernels) == ({"avx2", "fma"} <= flags)
    assert ("bf16_avx512" in kernels) == ({"avx512f", "avx512_bf16"} <= flags)
    # AMX: where the CPU has it, unless Linux refused the tile state (then said so)
    assert ("bf16_amx" in kernels) == ("amx_bf16" in flags and "amx" not in res)
    if "bf16_amx" in kernels:   # 16x32x16 products per instruction: far above vdpbf16ps
        assert res["bf16_kernel"] == "bf16_amx"
    for k in kernels.values():
        assert k["peak"] > 0 and k["wall"] <= 1.1 * k["peak"]
    if "bf16_avx512" in kernels:   # 4 FLOP per lane and instruction against FMA's 2
        assert res["bf16"]["1"] > res["fp32"]["1"]


def test_peak_program_refuses_bad_arguments():
    if not shutil.which(os.environ.get("CC", "cc")):
        pytest.skip("no C compiler")
    r = subprocess.run([peak.build(), "0", "10", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_missing_compiler_is_reported_not_raised(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    res = peak.measure([1])
    assert "no C compiler" in res["error"] and res["fp32"] == {}


def test_layer_flops_add_up_to_kerass_mobilenet_figure(shared_weights_dir):
    """Keras documents MobileNet v1 1.0/224 as 569 M multiply-adds (its classifier
    included); the layer count from kernel and output shapes must give the same (to 1%:
    the published figure is rounded to 3 digits)."""
    from aslnet.applications.mobilenet import MobileNet
    total = sum(phases.layer_flops(layer) for layer in MobileNet().layers)
    assert total == pytest.approx(2 * 0.569e9, rel=0.01)


def test_work_splits_trunk_and_tail(shared_weights_dir):
    import aslnet
    model = aslnet.load_pretrained("mobilenet", num_classes=10)
    w = phases.work(model, train_images=100, valid_images=30, epochs=2)
    assert w["first_trainable"] == "conv_pw_10_bn"
    per_image = sum(phases.layer_flops(layer) for layer in model.layers) / 1e9
    assert w["trunk_gflop_per_image"] + w["tail_gflop_per_image"] == pytest.approx(per_image)
    assert w["gflop"]["trunk pass"] == pytest.approx(130 * w["trunk_gflop_per_image"])
    assert w["gflop"]["tail epochs"] == pytest.approx(3 * 200 * w["tail_gflop_per_image"])
    assert w["gflop"]["validation"] == pytest.approx(60 * w["tail_gflop_per_image"])


def test_phase_breakdown_from_epoch_times():
    t = phases.PhaseTimer()
    t.train_s, t.valid_s = [10.0, 3.0, 3.2, 2.8], [2.0, 0.5, 0.5, 0.5]
    out = phases.breakdown(t, decode_s=1.0, fit_s=23.0, save_s=0.3, test_s=0.2)["phases_s"]
    assert out["trunk pass"] == pytest.approx(7.0 + 1.5)   # first epoch less the median
    assert out["tail epochs"] == pytest.approx(12.0)
    assert out["validation"] == pytest.approx(2.0)
    assert out["fit, other"] == pytest.approx(23.0 - 19.0 - 3.5)
    t.train_s, t.valid_s = [1.0], [0.5]
    with pytest.raises(ValueError, match="2 epochs"):
        phases.breakdown(t, 0, 2, 0, 0)


def test_verbose_isa_line():
    text = ("onednn_verbose,info,oneDNN v3.2.0\n"
            "onednn_verbose,info,cpu,isa:Intel AVX2 with Intel DL Boost\n")
    assert utilisation.verbose_isa(text) == "Intel AVX2 with Intel DL Boost"
    assert utilisation.verbose_isa("nothing") is None


def test_onednn_isa_follows_the_cap():
    """The ISA read through ctypes is the one oneDNN dispatches: ONEDNN_MAX_CPU_ISA=AVX2
    lowers it (as .ci/run's second pass does)."""
    code = "import json; from benchmarks.peers.aslnet import onednn_info; " \
           "print(json.dumps(onednn_info()))"
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    free = json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                     capture_output=True, text=True, cwd=ROOT).stdout)
    capped = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                       env=dict(env, ONEDNN_MAX_CPU_ISA="AVX2"),
                                       capture_output=True, text=True, cwd=ROOT).stdout)
    assert "libdnnl" in free["library"] and free["isa"].startswith("cpu_isa_")
    assert capped["isa"] == "cpu_isa_avx2" and capped["max_cpu_isa_env"] == "AVX2"
    assert capped["isa_value"] <= free["isa_value"]


def _meta(**kw):
    m = {"cpu": "AMD EPYC", "cores": 2, "physical_cores": 2, "threads": 2, "quick": True,
         "reps": 3, "env": {}, "date": "d", "host": "h", "python": "3", "load_start": "0",
         "load_end": "0", "cpu_flags": ["avx2", "fma", "avx512f"], "amx": "no",
         "onednn": {"version": "3.2.0", "library": "libdnnl.so.3", "isa": "cpu_isa_avx2",
                    "max_cpu_isa_env": "AVX2"},
         "peak": {"fp32": {"1": 100.0, "2": 200.0}, "bf16": {}, "fp32_wall": {"2": 50.0},
                  "error": None, "method": "m",
                  "by_threads": {"2": {"fp32_avx2": {"peak": 190.0, "wall": 50.0}}}}}
    m.update(kw)
    return m


def test_report_states_percentages_against_the_measured_peak():
    fig = {"median": 20.0, "min": 19.0, "max": 21.0, "first_call_s": 0.1}
    res = {"meta": _meta(), "errors": {}, "inference": {"aslnet": {"b1": fig, "b32": fig}},
           "train": {"aslnet": {"median": 5.0, "min": 5.0, "max": 5.0, "first_loss": 1.0,
                                "trainable_params": 3, "predict_after_train": {
                                    "batch": 32, "first_ms": fig, "second_ms": fig}}}}
    text = report.markdown(res)
    gflops = 20.0 * 2 * 0.569                       # images/s x GFLOP per image
    assert f"{gflops:.1f} GFLOP/s = {gflops / 200:.0%} of peak" in text
    assert "dispatches `cpu_isa_avx2`, capped by `ONEDNN_MAX_CPU_ISA=AVX2`" in text
    assert "the machine was shared" in text and "bf16: the CPU has no AVX512_BF16" in text
    assert "first predict after train_on_batch" in text
    assert "AVX2/FMA3 kernel alone: 190 GFLOP/s" in text
    res["meta"] = _meta(peak={"fp32": {}, "bf16": {}, "fp32_wall": {}, "error": "no cc",
                              "method": "m"})
    assert "n/a (peak not measured)" in report.markdown(res)


def test_results_name_comes_from_the_machine():
    from benchmarks.run import results_name
    assert results_name(_meta()) == "amd-epyc-2t-avx2-quick"
    assert results_name(_meta(quick=False, onednn={})) == "amd-epyc-2t"
    assert results_name(_meta(quick=False, onednn={}, cpu_flags=["avx2", "fma"])) == \
        "amd-epyc-noavx512-2t"


def test_old_results_still_render():
    """Every committed benchmarks.run result (those with a "meta" record; scaling.py's
    tables are another format) renders, with the parts it holds."""
    for path in RESULTS.glob("*.json"):
        res = json.loads(path.read_text())
        if "meta" not in res:
            continue
        text = report.markdown(res)
        assert text.startswith("# aslnet benchmarks")
        inference = res.get("inference") or any(m.get("inference")
                                                for m in res.get("models", {}).values())
        assert ("## Inference" in text) == bool(inference), path.name
        profiled = res.get("utilisation") or any(m.get("utilisation")
                                                 for m in res.get("models", {}).values())
        assert ("## aslnet utilisation" in text) == bool(profiled), path.name


# --- issue 13 item 6: MobileNetV2 and other input sizes -------------------------------

def test_default_arguments_are_v1_at_224():
    from benchmarks.run import parse_args
    a = parse_args([])
    assert a.archs == ["mobilenet"] and a.sizes == [224] and a.train_size == 224
    assert a.models == [("mobilenet", 224)] and a.e2e_archs == ["mobilenet"]


def test_arch_and_size_lists():
    from benchmarks.run import applies, parse_args
    a = parse_args(["--arch", "mobilenet,mobilenet_v2", "--size", "224,160,128",
                    "--e2e-arch", "mobilenet_v2"])
    assert a.models == [("mobilenet", 224), ("mobilenet", 160), ("mobilenet", 128),
                        ("mobilenet_v2", 224), ("mobilenet_v2", 160), ("mobilenet_v2", 128)]
    assert [m for m in a.models if applies(a, "train", *m)] == [("mobilenet", 224),
                                                                ("mobilenet_v2", 224)]
    assert [m for m in a.models if applies(a, "e2e", *m)] == [("mobilenet_v2", 224)]
    assert [m for m in a.models if applies(a, "utilisation", *m)] == [("mobilenet", 224),
                                                                      ("mobilenet_v2", 224)]
    assert [m for m in a.models if applies(a, "phases", *m)] == [("mobilenet", 224)]
    assert all(applies(a, "inference", *m) for m in a.models)
    b = parse_args(["--arch", "mobilenet_v2", "--size", "160,128"])
    assert b.train_size == 160 and b.e2e_archs == ["mobilenet_v2"]


@pytest.mark.parametrize("argv", [["--arch", "resnet"], ["--size", "224,big"],
                                  ["--size", "16"],
                                  ["--arch", "mobilenet", "--e2e-arch", "mobilenet_v2"]])
def test_bad_arch_or_size_is_refused(argv, capsys):
    from benchmarks.run import parse_args
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_results_name_says_v2_and_sizes():
    from benchmarks.run import results_name
    m = _meta(quick=False, onednn={}, archs=["mobilenet", "mobilenet_v2"], sizes=[224, 128])
    assert results_name(m) == "amd-epyc-2t-v2-sizes"
    assert results_name(_meta(quick=False, onednn={}, archs=["mobilenet"],
                              sizes=[224])) == "amd-epyc-2t"


@pytest.mark.parametrize("arch,size,millions", [
    ("mobilenet", 224, 569), ("mobilenet_v2", 224, 300), ("mobilenet", 128, 186),
    ("mobilenet_v2", 160, 154)])
def test_multiply_adds_per_model(arch, size, millions):
    """What prepare counts (phases.layer_flops / 2 over the ImageNet classifier): Keras
    documents 569 M for v1 and 300 M for v2 at 224; the other sizes scale with the area."""
    from aslnet.applications import MobileNet, MobileNetV2
    build = {"mobilenet": MobileNet, "mobilenet_v2": MobileNetV2}[arch]
    model = build(input_shape=(size, size, 3), weights=None)
    macs = sum(phases.layer_flops(layer) for layer in model.layers) / 2
    assert macs == pytest.approx(millions * 1e6, rel=0.01)


def test_torch_mobilenet_v2_computes_what_aslnet_does():
    """The PyTorch peer's v2 module, given aslnet's weights by Keras layer name, gives
    aslnet's outputs, at an input size with odd feature maps too (100: 25 -> 13 -> 7,
    where Keras pads ((1, 1), (1, 1)))."""
    torch = pytest.importorskip("torch")
    import numpy as np
    import aslnet
    from aslnet.applications import MobileNetV2
    from benchmarks.peers.torch_mobilenet import build
    aslnet.set_random_seed(0)
    for size in (64, 100):
        model = MobileNetV2(input_shape=(size, size, 3), weights=None)
        weights = {l.name: l.get_weights() for l in model.layers if l.get_weights()}
        net = build("mobilenet_v2", size=size)
        assert set(weights) <= {n for n, _ in net.named_layers()}
        net.load_keras_weights(weights).eval()
        x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
        with torch.no_grad():
            out = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        np.testing.assert_allclose(out, model.predict_on_batch(x), atol=1e-5)


def _fig(v):
    return {"median": v, "min": v, "max": v, "first_call_s": 0.1}


def test_report_has_a_table_per_model_and_its_own_multiply_adds():
    inf = lambda a, peer: {"aslnet": {"b1": _fig(a), "b32": _fig(a)},   # noqa: E731
                           "litert": {"b1": _fig(peer), "b32": _fig(peer)}}
    tr = {"aslnet": {**_fig(50.0), "first_loss": 2.3, "trainable_params": 3},
          "keras": {**_fig(40.0), "first_loss": 2.3, "trainable_params": 3}}
    res = {"meta": _meta(models=["mobilenet-224", "mobilenet_v2-224", "mobilenet_v2-128"],
                         macs={"mobilenet-224": 569e6, "mobilenet_v2-224": 300e6,
                               "mobilenet_v2-128": 99e6}, train_size=224),
           "errors": {}, "inference": inf(100.0, 90.0), "train": tr,
           "models": {"mobilenet_v2-224": {"arch": "mobilenet_v2", "size": 224,
                                           "inference": inf(150.0, 100.0), "train": tr},
                      "mobilenet_v2-128": {"arch": "mobilenet_v2", "size": 128,
                                           "inference": inf(300.0, 400.0)}}}
    text = report.markdown(res)
    for title in ("## Inference (images/s): MobileNet v1 alpha 1.0 224×224",
                  "## Inference (images/s): MobileNetV2 alpha 1.0 224×224",
                  "## Inference (images/s): MobileNetV2 alpha 1.0 128×128",
                  "## Training step (tutorial model, batch 10; images/s): MobileNetV2 alpha "
                  "1.0 224×224"):
        assert text.count(title + "\n") == 1, title
    assert "## Training step (tutorial model, batch 10; images/s): MobileNetV2 alpha 1.0 " \
           "128" not in text
    for a, macs in ((150.0, 300e6), (300.0, 99e6), (100.0, 569e6)):
        g = a * 2 * macs / 1e9
        assert f"batch 32 {g:.1f} GFLOP/s = {g / 200:.0%} of peak ({macs / 1e9:.3f} G" in text
    assert "| 224×224: inference batch 32 ≥ 1.2× the fastest float32 peer | 1.50× " \
           "(LiteRT (XNNPACK)) | met |" in text
    assert "| 128×128: inference batch 32 ≥ 1.2× the fastest float32 peer | 0.75× " \
           "(LiteRT (XNNPACK)) | not met |" in text
    assert "| 224×224: training step vs Keras (for information) | 1.25× | — |" in text
    assert "| 224×224: tutorial fit (10 epochs) ≥ 2× faster than Keras | n/a (e2e not run)" \
           in text


# oneDNN 3.2's profile_exec lines (fields: ..., kind, impl, prop, mds, attrs, alg, problem, ms)
_PW = ("onednn_verbose,exec,cpu,convolution,brgemm_1x1:avx2,forward_inference,"
       "src_f32::blocked:acdb::f0 wei_f32::blocked:Acdb8a::f0 bia_f32::blocked:a::f0 "
       "dst_f32::blocked:acdb::f0,attr-post-ops:eltwise_clip:0:6 ,alg:convolution_direct,"
       "mb2_ic32oc64_ih8oh8kh1sh1dh0ph0_iw8ow8kw1sw1dw0pw0,{ms}")
_DW = ("onednn_verbose,exec,cpu,convolution,brdgmm_dw:avx2,forward_inference,"
       "src_f32::blocked:acdb::f0 wei_f32::blocked:Abcde8a::f0 bia_f32::blocked:a::f0 "
       "dst_f32::blocked:acdb::f0,,alg:convolution_direct,"
       "g32mb2_ic32oc32_ih16oh8kh3sh2dh0ph1_iw16ow8kw3sw2dw0pw1,{ms}")


def test_roofline_per_layer_type_from_profile_lines():
    """FLOP and compulsory bytes counted by hand for a 1x1 and a strided depthwise
    convolution; the bound is min(peak, FLOP/byte x bandwidth)."""
    text = "\n".join(["@@warm", _PW.format(ms=0.5), _DW.format(ms=0.25),
                      "@@pass b=2 wall_ms=1.0"])
    passes = utilisation.parse(text)[2]
    pw_flop = 2 * 2 * 8 * 8 * 64 * 32
    pw_bytes = 4 * (2 * 8 * 8 * 32 + 32 * 64 + 64 + 2 * 8 * 8 * 64)
    dw_flop = 2 * 2 * 8 * 8 * 32 * 9
    dw_bytes = 4 * (2 * 16 * 16 * 32 + 9 * 32 + 32 + 2 * 8 * 8 * 32)
    assert utilisation.traffic("convolution", passes[0]["prims"][0][2]) == pw_bytes
    assert utilisation.traffic("convolution", passes[0]["prims"][1][2]) == dw_bytes
    assert utilisation.traffic("eltwise", "1x2x3") == 0
    out = utilisation.breakdown(passes, peak_gflops=100.0, bandwidth_gbs=10.0)["types"]
    pw, dw = out["pointwise"], out["depthwise"]
    assert pw["gflop"] == pytest.approx(pw_flop / 1e9)
    assert pw["gbs"] == pytest.approx(pw_bytes / 0.5e-3 / 1e9)
    assert pw["intensity"] == pytest.approx(pw_flop / pw_bytes)
    assert pw["roofline"] == pytest.approx(min(100.0, 10.0 * pw_flop / pw_bytes))
    assert dw["roofline"] == pytest.approx(10.0 * dw_flop / dw_bytes)     # memory-bound
    assert dw["roofline_fraction"] == pytest.approx(dw_flop / 0.25e-3 / 1e9 / dw["roofline"])
    assert out["outside oneDNN"]["ms"] == pytest.approx(0.25)
    assert utilisation.breakdown(passes, 100.0)["types"]["pointwise"]["roofline"] is None
    lines = "\n".join(report.utilisation_lines({"b2": utilisation.breakdown(
        passes, 100.0, 10.0)}, {"2": 10.0}, 2))
    assert "measured bandwidth 10.0 GB/s on 2 threads" in lines
    assert f"| {dw_flop / dw_bytes:.1f} | {10.0 * dw_flop / dw_bytes:.1f} |" in lines


def test_bandwidth_is_measured():
    bw = bandwidth.measure([1], mb=8, runs=2)
    assert set(bw) == {"1"} and bw["1"] > 0


def test_scaling_table_marks_skipped_threads_and_memory_per_image():
    from benchmarks import scaling
    args = argparse.Namespace(arch="mobilenet", size=224, threads="1,32", batches="1,3",
                              reps=2)
    fig = {"median": 100.0, "min": 90.0, "max": 110.0}
    res = {"1": {"1": {"ips": fig, "rss_added_mb": 40.0, "rss_model_mb": 100.0},
                 "3": {"ips": fig, "rss_added_mb": 46.0, "rss_model_mb": 100.0}}}
    text = scaling.markdown(args, res, {"model": "CPU", "logical_cpus": 2}, [32])
    assert "not measured: 32 threads" in text
    assert "| 1 | 100.0 (90.0–110.0) | 10.00 | 40 | — |" in text
    assert "| 3 | 100.0 (90.0–110.0) | 10.00 | 46 | 3.00 |" in text
