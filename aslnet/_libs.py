"""Load the C core's shared libraries (oneDNN, OpenBLAS) from their wheels
before ``aslnet._core`` is imported.

The extension carries rpaths for the usual install layouts; this covers the
rest (editable installs, --user or --target installs, a build environment
that is gone) without any LD_LIBRARY_PATH.  Already-loaded libraries satisfy
the extension's dependencies by their soname."""
import ctypes
import os
from importlib import metadata


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


preload()
