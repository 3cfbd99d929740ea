"""The benchmark's own machinery (not its figures): the peak kernel, the machine's
description, the FLOP counts and the phase arithmetic, the report.

    python -m pytest -q benchmarks/tests
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import peak, phases, report, utilisation

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
         "load_end": "0", "cpu_flags": ["avx2", "fma"], "amx": "no",
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


def test_old_results_still_render():
    for path in RESULTS.glob("*.json"):
        text = report.markdown(json.loads(path.read_text()))
        assert "## Inference" in text
