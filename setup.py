"""Build of aslnet's C core, the extension ``aslnet._core``.

oneDNN and OpenBLAS come from PyPI wheels by default (``onednn-devel-cpu-gomp``
and ``scipy-openblas32``, listed as build requirements in pyproject.toml), so
``pip install .`` needs nothing but a C compiler.  To build against system
copies instead, set ``ASLNET_DNNL_ROOT`` (a prefix with include/ and lib/)
and/or ``ASLNET_OPENBLAS=system`` (links ``-lopenblas``).

``ASLNET_VENDORED_WHEEL=1`` (set by tools/build_wheel.sh) builds the extension
for the self-contained wheel: no runtime dependency on the oneDNN/OpenBLAS
wheels and no rpath of its own (``auditwheel repair`` copies the libraries into
``aslnet.libs/`` and the script sets the ``$ORIGIN`` RUNPATH).

The runtime dependencies live here (pyproject.toml declares them dynamic)
because they differ between that wheel and every other install.

``ASLNET_SANITIZE=address,undefined`` (any ``-fsanitize=`` list) builds a
sanitizer build of the whole package into build/sanitize/lib (never in place,
so the normal build is untouched): ``ASLNET_SANITIZE=address,undefined python
setup.py -q build``; see csrc/CONTRIBUTING-core.md for running the tests on it.
"""
import glob
import os
import sys
import tempfile
from importlib import metadata

import numpy
from setuptools import Extension, setup


def _dist_file_dir(dist_name, suffix):
    """Directory of the first file of installed distribution ending in suffix."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            return os.path.dirname(os.path.realpath(dist.locate_file(f)))
    return None


def _dnnl_dirs():
    root = os.environ.get("ASLNET_DNNL_ROOT")
    if root:
        return os.path.join(root, "include"), os.path.join(root, "lib")
    inc = _dist_file_dir("onednn-devel-cpu-gomp", "oneapi/dnnl/dnnl.h")
    lib = _dist_file_dir("onednn-cpu-gomp", "libdnnl.so.3")
    if inc is None or lib is None:
        sys.exit("aslnet: oneDNN not found: pip install onednn-devel-cpu-gomp, "
                 "or set ASLNET_DNNL_ROOT to a prefix with include/oneapi/dnnl/dnnl.h")
    return os.path.dirname(os.path.dirname(inc)), lib


def _openblas():
    if os.environ.get("ASLNET_OPENBLAS") == "system":
        return [], [], ["openblas"], []
    try:
        import scipy_openblas32 as sob
    except ImportError:
        sys.exit("aslnet: OpenBLAS not found: pip install scipy-openblas32, "
                 "or set ASLNET_OPENBLAS=system")
    return ([sob.get_include_dir()], [sob.get_lib_dir()], [sob.get_library()],
            [("ASL_SCIPY_OPENBLAS", "1")])


dnnl_inc, dnnl_lib = _dnnl_dirs()
blas_inc, blas_lib, blas_libs, blas_macros = _openblas()

VENDORED = os.environ.get("ASLNET_VENDORED_WHEEL") == "1"

# The runtime libraries' wheels (pinned as the build requirements in pyproject.toml:
# the extension is built against these headers).
LIB_WHEELS = ["onednn-cpu-gomp==2023.2.0", "scipy-openblas32>=0.3.27"]
DEPENDENCIES = [
    "numpy>=1.23",              # aslnet/_libs.py MIN_NUMPY says the same (tested)
    "pillow>=9.1",
    "h5py>=3.7",
    "flatbuffers>=23",
    "tflite>=2.18",
    "tqdm>=4.60",
]


def _persistent(path):
    """False for a temporary directory (pip's isolated build environment): an
    rpath there would be dead after the build, and world-writable."""
    tmp = os.path.realpath(tempfile.gettempdir()) + os.sep
    return not (os.path.realpath(path) + os.sep).startswith(tmp) and "pip-build-env" not in path


if VENDORED:
    rpaths = []
else:
    # Where the shared libraries are at run time, relative to aslnet/_core*.so:
    # wheels put libdnnl in <prefix>/lib and OpenBLAS in site-packages.  The
    # build-time directories cover in-place (development) builds against a
    # persistent environment; aslnet/_libs.py preloads the libraries anyway.
    rpaths = ["$ORIGIN/../../..", "$ORIGIN/../scipy_openblas32/lib",
              *[p for p in [dnnl_lib, *blas_lib] if _persistent(p)]]

compile_args = ["-std=c11", "-O3", "-fopenmp", "-Wall", "-Wextra", "-fvisibility=hidden"]
link_args = ["-fopenmp", *[f"-Wl,-rpath,{p}" for p in rpaths]]
options = {}
sanitize = os.environ.get("ASLNET_SANITIZE", "").strip()
if sanitize:
    if any(a in ("--inplace", "-i", "develop", "editable_wheel", "bdist_wheel")
           for a in sys.argv):
        sys.exit("aslnet: ASLNET_SANITIZE builds into build/sanitize only: "
                 "run 'python setup.py build' (not in place, not a wheel)")
    # UBSan non-recoverable, so that an error fails the run; -fno-wrapv keeps
    # signed overflow undefined (and so reported)
    san = [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all",
           "-fno-omit-frame-pointer", "-fno-wrapv", "-g"]
    compile_args = [a for a in compile_args if a != "-O3"] + ["-O1", *san]
    link_args += san
    options = {"build": {"build_lib": "build/sanitize/lib",
                         "build_temp": "build/sanitize/temp"}}

core = Extension(
    "aslnet._core",
    sources=sorted(glob.glob("csrc/*.c")),
    include_dirs=["csrc", dnnl_inc, numpy.get_include(), *blas_inc],
    library_dirs=[dnnl_lib, *blas_lib],
    libraries=["dnnl", *blas_libs, "m"],
    define_macros=blas_macros,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(ext_modules=[core], options=options,
      install_requires=DEPENDENCIES + ([] if VENDORED else LIB_WHEELS))
