"""How aslnet is installed and loaded (aslnet/_libs.py, setup.py, tools/build_wheel.sh): one copy
of oneDNN, OpenBLAS and the OpenMP runtime in the process, the self-contained wheel's layout, and
a clear ImportError (what to install) for a missing system library, a CPU without AVX2 or a NumPy
too old.  tools/check_dist.sh runs this file again against each installed wheel."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aslnet
from aslnet import _libs

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBS = {"oneDNN": r"/libdnnl[-.]", "OpenBLAS": r"/libscipy_openblas(?!64)[-.]",
        "OpenMP": r"/libgomp[-.]"}

# Run in a fresh interpreter: a tiny model predicts (so that every library is loaded and the
# thread settings applied), then it reports the mapped files and the thread counts that the
# OpenMP runtime and OpenBLAS actually hold.
PROBE = r"""
import ctypes, json, re
import numpy as np
import aslnet
from aslnet import layers as L
inp = L.Input((8, 8, 3))
x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inp))
model = aslnet.models.Model(inp, L.Dense(2, activation="softmax")(x))
model.predict(np.zeros((2, 8, 8, 3), np.float32), verbose=0)
maps = sorted({f.split(None, 5)[5].strip() for f in open("/proc/self/maps")
               if len(f.split(None, 5)) == 6 and "/" in f})
def call(pattern, *names):
    for path in maps:
        if re.search(pattern, path):
            lib = ctypes.CDLL(path)
            for name in names:
                if hasattr(lib, name):
                    return getattr(lib, name)()
print(json.dumps({"maps": maps, "threads": aslnet.get_num_threads(),
                  "vendored": aslnet._libs.vendored(),
                  "omp": call(r"/libgomp[-.]", "omp_get_max_threads"),
                  "blas": call(r"/lib(scipy_)?openblas(?!64)[-.]",
                               "scipy_openblas_get_num_threads", "openblas_get_num_threads")}))
"""


def probe(env=None, cwd=None):
    """PROBE's report, from a fresh interpreter with ``env`` added to the environment."""
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_one_copy_of_each_library_in_the_process():
    """Two copies of oneDNN or of the OpenMP runtime would be two thread pools fighting, with
    set_num_threads reaching only one; in the self-contained wheel all three are its own."""
    report = probe()
    for what, pattern in LIBS.items():
        paths = [p for p in report["maps"] if re.search(pattern, p)]
        assert len(paths) == 1, f"{what}: {paths}"
        if report["vendored"]:
            assert Path(paths[0]).parent == Path(_libs.VENDORED_DIR), paths
    if report["vendored"]:
        assert not [p for p in report["maps"] if "onednn" in p or "scipy_openblas32" in p]


def test_the_vendored_wheel_s_layout():
    """One stripped copy of each library; RUNPATHs inside the wheel only; no dependency on
    the oneDNN/OpenBLAS wheels (their libraries would come in a second time)."""
    if not _libs.vendored():
        pytest.skip("aslnet is not installed from the self-contained wheel here")
    from importlib import metadata
    names = sorted(os.listdir(_libs.VENDORED_DIR))
    for pattern in LIBS.values():
        assert len([n for n in names if re.search(pattern, "/" + n)]) == 1, names
    # the runtime dependencies (an extra, e.g. `sanitize`'s build headers, is not installed)
    requires = " ".join(r for r in metadata.requires("aslnet") or () if "extra ==" not in r)
    assert "onednn" not in requires and "scipy-openblas32" not in requires, requires
    if shutil.which("readelf") is None:
        pytest.skip("readelf not installed")
    files = [aslnet._core.__file__] + [os.path.join(_libs.VENDORED_DIR, n) for n in names]
    for f in files:
        dynamic = subprocess.run(["readelf", "-d", f], capture_output=True, text=True).stdout
        assert "(RPATH)" not in dynamic, f
        for runpath in re.findall(r"\(RUNPATH\).*\[(.*)\]", dynamic):
            assert runpath in ("$ORIGIN", "$ORIGIN/../aslnet.libs"), (f, runpath)
        symbols = subprocess.run(["readelf", "-S", f], capture_output=True, text=True).stdout
        assert ".symtab" not in symbols, f"{f} is not stripped"


def _hidden_libgomp_run(code):
    """Run ``code`` in a fresh interpreter that cannot load the system's libgomp (a mount
    namespace with /dev/null bound over it), or skip where that cannot be set up."""
    gomp = Path("/usr/lib/x86_64-linux-gnu/libgomp.so.1")
    if shutil.which("unshare") is None or not gomp.exists() or os.geteuid() != 0:
        pytest.skip("needs root, unshare and the system libgomp to hide it")
    script = f'mount --bind /dev/null {gomp} && exec "$0" -c "$1"'
    run = subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable, code],
                         capture_output=True, text=True, timeout=300)
    if "mount" in run.stderr and "ermission" in run.stderr or "unshare failed" in run.stderr:
        pytest.skip(f"cannot hide libgomp here: {run.stderr.strip()}")
    return run


def test_without_the_system_libgomp():
    """The self-contained wheel predicts without libgomp1; any other install says what to
    install, in one ImportError, instead of the loader's OSError."""
    run = _hidden_libgomp_run(PROBE)
    if _libs.vendored():
        assert run.returncode == 0, run.stderr
    else:
        assert run.returncode != 0
        assert "ImportError: aslnet needs the system library libgomp.so.1" in run.stderr
        assert "apt-get install libgomp1" in run.stderr and "dnf install libgomp" in run.stderr


@pytest.mark.parametrize("lib, deb, rpm", [("libgomp.so.1", "libgomp1", "libgomp"),
                                           ("libstdc++.so.6", "libstdc++6", "libstdc++")])
def test_a_missing_system_library_is_named_with_its_package(lib, deb, rpm):
    e = _libs.explain_load_error(OSError(f"{lib}: cannot open shared object file: No such "
                                         "file or directory"))
    assert isinstance(e, ImportError)
    assert f"system library {lib} " in str(e) and f"apt-get install {deb} " in str(e)
    assert f"dnf install {rpm} " in str(e)


def test_a_cpu_without_avx2_is_refused_at_import(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx2\n")
    flags = _libs.cpu_flags(cpuinfo)
    assert "avx" in flags and "avx2" not in flags           # the first CPU's line only
    with pytest.raises(ImportError, match="needs an x86-64 CPU with AVX2.*ASLNET_ALLOW_NO_AVX2"):
        _libs.check_cpu(flags, machine="x86_64", environ={})
    _libs.check_cpu(flags, machine="x86_64", environ={"ASLNET_ALLOW_NO_AVX2": "1"})
    _libs.check_cpu(flags | {"avx2"}, machine="x86_64", environ={})
    _libs.check_cpu(flags, machine="aarch64", environ={})   # oneDNN's own ISA there
    assert _libs.cpu_flags(tmp_path / "missing") is None


def test_a_numpy_too_old_is_refused_at_import():
    with pytest.raises(ImportError, match=r"NumPy >= 1\.23, found NumPy 1\.22\.4: pip install"):
        _libs.check_numpy("1.22.4")
    _libs.check_numpy("1.23.0")
    _libs.check_numpy("2.4.6")


def _setup_py_list(name):
    setup_py = REPO_ROOT / "setup.py"
    if not setup_py.exists():
        pytest.skip("not a source checkout")
    tree = ast.parse(setup_py.read_text())
    return next(ast.literal_eval(node.value) for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name)


def test_the_minimum_numpy_is_the_declared_dependency():
    """_libs.MIN_NUMPY and setup.py's numpy requirement are one rule in two places."""
    numpy_dep = next(d for d in _setup_py_list("DEPENDENCIES") if d.startswith("numpy"))
    assert numpy_dep == "numpy>=" + ".".join(map(str, _libs.MIN_NUMPY))


def test_the_runtime_onednn_is_the_one_built_against():
    """The extension is compiled against onednn-devel-cpu-gomp's headers (pyproject.toml's
    build requirements) and runs on onednn-cpu-gomp (setup.py's runtime dependency): the same
    version."""
    runtime = next(r for r in _setup_py_list("LIB_WHEELS") if r.startswith("onednn-cpu-gomp=="))
    tomllib = pytest.importorskip("tomllib")
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        build = tomllib.load(f)["build-system"]["requires"]
    devel = next(r for r in build if r.startswith("onednn-devel-cpu-gomp=="))
    assert devel.split("==")[1] == runtime.split("==")[1]


def test_the_version_has_one_home():
    from importlib import metadata
    try:
        installed = metadata.version("aslnet")
    except metadata.PackageNotFoundError:
        pytest.skip("aslnet has no installed metadata here")
    assert installed == aslnet.__version__


def test_sdist_manifest_carries_docs_and_benchmarks():
    # the sdist builds the docs site (mkdocs.yml, docs/, tools/build_docs.sh and the
    # benchmark tables it includes) and runs the benchmarks from the sdist alone
    manifest = REPO_ROOT / "MANIFEST.in"
    if not manifest.is_file():
        pytest.skip("not in a source tree (tools/check_dist.sh runs this file against a wheel)")
    lines = [l.split() for l in manifest.read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    included = {w for l in lines if l[0] == "include" for w in l[1:]}
    grafted = {l[1] for l in lines if l[0] == "graft"}
    assert "mkdocs.yml" in included
    assert {"docs", "benchmarks", "tools"} <= grafted
