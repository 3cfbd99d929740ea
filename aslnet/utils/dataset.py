"""The tutorial's train/valid/test split of a class-per-folder image dataset, done safely."""
import math
import os
import shutil
import tempfile
import warnings
from multiprocessing.pool import ThreadPool

import numpy as np
from PIL import Image

from ..preprocessing.image import list_class_files

__all__ = ["split_dataset"]

SUBSETS = ("train", "valid", "test")
_PLACERS = {"copy": shutil.copy2, "link": os.link, "symlink": os.symlink}


def split_dataset(src, dst, valid=30, test=5, seed=0, mode="copy"):
    """Split ``src/<class>/<images>`` into ``dst/train``, ``dst/valid`` and ``dst/test``.

    Per class, a seeded random choice of ``valid`` then ``test`` images (an
    int: that many; a float below 1: that fraction, rounded down) leaves the
    rest for training: by default the tutorial's 30 and 5.  Images are listed
    as ``flow_from_directory`` lists them (sorted; files that do not decode
    completely are left out with a warning), so the split depends only on the
    files and ``seed``.  Every subset gets a folder for every class; hidden
    folders (``.ipynb_checkpoints``...) are not classes.

    mode: 'copy' (default), 'link' (hard links: no extra space, same file
    system only) or 'symlink'.  ``src`` is only read.  The split is built in a
    temporary folder beside ``dst`` and renamed into place, so ``dst`` is
    either absent or complete.  If ``dst`` already holds this same split
    (the same files in each subset and class), nothing is done; any other
    non-empty ``dst`` raises FileExistsError.

    Returns {subset: {class: count}}.
    """
    if mode not in _PLACERS:
        raise ValueError(f"mode must be one of {sorted(_PLACERS)}, got {mode!r}")
    src, dst = os.path.abspath(src), os.path.abspath(dst)
    if not os.path.isdir(src):
        raise FileNotFoundError(f"Dataset folder not found: {src}")
    real_src, real_dst = os.path.realpath(src), os.path.realpath(dst)   # through symlinks
    if os.path.commonpath([real_src, real_dst]) in (real_src, real_dst):
        raise ValueError(f"dst must lie outside src and not contain it: {dst} vs {src}")
    plan = _plan(src, valid, test, seed)
    summary = {subset: {c: len(files) for c, files in classes.items()}
               for subset, classes in plan.items()}
    if _holds(dst, plan, src):
        return summary
    _refuse_existing(dst)
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.partial-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)           # as os.makedirs would (mkdtemp: 0700)
    try:
        for subset, classes in plan.items():
            for cls, files in classes.items():
                for rel in files:  # rel: '<class>/<path in class folder>'
                    target = os.path.join(tmp, subset, rel)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    _PLACERS[mode](os.path.join(src, rel), target)
                os.makedirs(os.path.join(tmp, subset, cls), exist_ok=True)
        if os.path.isdir(dst):
            os.rmdir(dst)  # empty (checked above)
        try:
            os.rename(tmp, dst)
        except OSError:
            if not _holds(dst, plan, src):  # not a concurrent run's identical split
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _count(n, spec, name):
    """Images of a class of n for a count (int) or fraction (float in [0, 1))."""
    if isinstance(spec, float):
        if not 0 <= spec < 1:
            raise ValueError(f"{name} as a fraction must be in [0, 1), got {spec}")
        return math.floor(spec * n)
    if spec < 0:
        raise ValueError(f"{name} must be >= 0, got {spec}")
    return spec


def _plan(src, valid, test, seed):
    """{subset: {class: [file relative to src]}} for the split."""
    classes = [d for d in sorted(os.listdir(src))
               if os.path.isdir(os.path.join(src, d)) and not d.startswith(".")]
    if not classes:
        raise ValueError(f"No class folders in {src}")
    classes, files = list_class_files(src, classes=classes)
    with ThreadPool() as pool:
        broken = pool.map(lambda rel: _decodes(os.path.join(src, rel)),
                          [f for class_files in files for f in class_files])
    bad = {}
    for rel, reason in zip([f for class_files in files for f in class_files], broken):
        if reason is not None:
            bad[rel] = reason
            warnings.warn(f"Skipping {os.path.join(src, rel)}: it does not decode ({reason})")
    files = [[f for f in class_files if f not in bad] for class_files in files]
    for cls, class_files in zip(classes, files):
        if not class_files:
            warnings.warn(f"Class folder {os.path.join(src, cls)} holds no readable image")
    rng = np.random.RandomState(seed)  # its stream is fixed across NumPy versions
    plan = {subset: {} for subset in SUBSETS}
    for cls, class_files in zip(classes, files):
        n = len(class_files)
        n_valid, n_test = _count(n, valid, "valid"), _count(n, test, "test")
        if n_valid + n_test > n:
            raise ValueError(f"Class {cls!r} has {n} images: too few for {n_valid} valid "
                             f"and {n_test} test images")
        order = [class_files[i] for i in rng.permutation(n)]
        plan["valid"][cls] = sorted(order[:n_valid])
        plan["test"][cls] = sorted(order[n_valid:n_valid + n_test])
        plan["train"][cls] = sorted(order[n_valid + n_test:])
    return plan


def _decodes(path):
    """None if the whole image decodes, else why not (a truncated file passes
    the header check of flow_from_directory, then fails in the middle of fit)."""
    try:
        with Image.open(path) as img:
            img.load()
        return None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return str(e) or type(e).__name__


def _holds(dst, plan, src):
    """Whether dst holds exactly the planned subsets, class folders and files (same names and
    sizes as in src)."""
    if not os.path.isdir(dst) or sorted(os.listdir(dst)) != sorted(plan):
        return False
    for subset, classes in plan.items():
        root = os.path.join(dst, subset)
        if sorted(os.listdir(root)) != sorted(classes):
            return False
        found = sorted(os.path.relpath(os.path.join(d, f), root)
                       for d, _, names in os.walk(root) for f in names)
        if found != sorted(f for files in classes.values() for f in files):
            return False
        if any(os.path.getsize(os.path.join(root, f)) != os.path.getsize(os.path.join(src, f))
               for f in found):
            return False
    return True


def _refuse_existing(dst):
    if os.path.lexists(dst) and not (os.path.isdir(dst) and not os.listdir(dst)):
        raise FileExistsError(
            f"{dst} exists and does not hold this split (same source, valid, test and seed); "
            "remove it or choose another destination")
