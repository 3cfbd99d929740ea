"""Import-time checks and the loading of the C core, ``aslnet._core``.

Two layouts:

- the self-contained wheel (tools/build_wheel.sh): oneDNN, OpenBLAS and
  libgomp are in ``site-packages/aslnet.libs/`` under hashed names, found
  through the extension's ``$ORIGIN`` RUNPATH.  Nothing is preloaded, so the
  process holds one copy of each even where the onednn-cpu-gomp or
  scipy-openblas32 wheels are installed too.
- a development or source install: oneDNN and OpenBLAS come from the
  onednn-cpu-gomp and scipy-openblas32 wheels (libgomp from the system).
  They are preloaded here, which covers what the extension's rpaths cannot
  (editable installs, --user or --target installs, a build environment that
  is gone) without any LD_LIBRARY_PATH: already-loaded libraries satisfy the
  extension's dependencies by their soname.

What a user can fix (a missing system library, a CPU without AVX2, a NumPy
too old) is an ImportError that says what to do, not a loader's traceback.
"""
import ctypes
import importlib
import os
import platform
import re
from importlib import metadata

MIN_NUMPY = (1, 23)             # as the dependency in setup.py (a test checks they agree)

VENDORED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "aslnet.libs")

# soname -> (what it is, Debian/Ubuntu package, RHEL/Fedora package)
_SYSTEM_LIBS = {
    "libgomp.so.1": ("the GNU OpenMP runtime", "libgomp1", "libgomp"),
    "libstdc++.so.6": ("the GNU C++ runtime", "libstdc++6", "libstdc++"),
    "libgcc_s.so.1": ("the GCC runtime", "libgcc-s1", "libgcc"),
}


def vendored():
    """True in the self-contained wheel (its libraries in aslnet.libs/)."""
    return os.path.isdir(VENDORED_DIR)


def check_numpy(version=None):
    import numpy
    version = version or numpy.__version__
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if parts < MIN_NUMPY:
        need = ".".join(map(str, MIN_NUMPY))
        raise ImportError(f"aslnet needs NumPy >= {need}, found NumPy {version}: "
                          f"pip install -U 'numpy>={need}'")


def cpu_flags(path="/proc/cpuinfo"):
    """The first CPU's feature flags (Linux), None where they cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def check_cpu(flags=None, machine=None, environ=os.environ):
    """oneDNN's fast kernels need AVX2 (x86-64-v3: Intel Haswell, AMD Excavator
    and later); without it oneDNN falls back to slow reference code."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return
    flags = cpu_flags() if flags is None else flags
    if flags is None or "avx2" in flags or environ.get("ASLNET_ALLOW_NO_AVX2") == "1":
        return
    raise ImportError("aslnet needs an x86-64 CPU with AVX2 (Intel Haswell / AMD Excavator, "
                      "2013, or later); this CPU has no avx2 flag in /proc/cpuinfo, so "
                      "oneDNN would run its slow reference code or fail. Run on a newer CPU "
                      "(or set ASLNET_ALLOW_NO_AVX2=1 to import anyway, slowly).")


def explain_load_error(error):
    """An ImportError saying what to install for a library the loader could
    not find or load (``error``: the loader's OSError or ImportError)."""
    text = str(error)
    for lib, (what, deb, rpm) in _SYSTEM_LIBS.items():
        if re.search(r"(^|[/\s])" + re.escape(lib) + ":", text):
            return ImportError(
                f"aslnet needs the system library {lib} ({what}), which is missing or "
                f"cannot be loaded: apt-get install {deb} (Debian/Ubuntu) or dnf install "
                f"{rpm} (RHEL/Fedora); or install aslnet's self-contained manylinux wheel, "
                f"which carries its own libraries. (The loader said: {text})")
    return ImportError(f"aslnet's C core could not be loaded: {text}. Reinstall aslnet with "
                       "its dependencies (pip install --force-reinstall aslnet).")


def _dist_file(dist, suffix):
    try:
        files = metadata.distribution(dist).files or ()
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            path = os.path.realpath(f.locate())
            if os.path.exists(path):
                return path
    return None


def preload():
    """Load oneDNN and OpenBLAS from their wheels (not in the vendored wheel)."""
    if vendored():
        return
    paths = [_dist_file("onednn-cpu-gomp", "libdnnl.so.3")]
    try:
        import scipy_openblas32
        lib_dir = scipy_openblas32.get_lib_dir()
        paths += [os.path.join(lib_dir, f) for f in sorted(os.listdir(lib_dir))
                  if f.startswith("lib" + scipy_openblas32.get_library()) and ".so" in f][:1]
    except ImportError:
        pass
    for path in paths:
        if path:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def load():
    """Check the platform, then import ``aslnet._core``."""
    check_numpy()
    check_cpu()
    try:
        preload()
        return importlib.import_module("aslnet._core")
    except OSError as e:
        raise explain_load_error(e) from None
    except ImportError as e:
        if not re.search(r"\.so[.\d]*: ", str(e)):      # not a loader's error
            raise
        raise explain_load_error(e) from None


load()
