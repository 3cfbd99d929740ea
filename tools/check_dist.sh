#!/usr/bin/env bash
# CI for what users install: the self-contained wheels (CPython 3.10-3.13) and the sdist.
#
#     ASLNET_SHARED=../shared tools/check_dist.sh
#
# 1. tools/build_wheel.sh for each CPython 3.10-3.13 (pyenv's, or python3.X on PATH): the wheels
#    and the sdist in dist/;
# 2. each wheel into a fresh venv: `aslnet --version`, and the ImageNet MobileNet predicts the
#    shared reference photos as their float64 reference does (smoke.py below); the onednn /
#    scipy-openblas32 wheels must not have come in;
# 3. python3's wheel venv again in a mount namespace where the system's libgomp is /dev/null
#    (the wheel must use its own): the smoke test, `aslnet classify`, and tests/test_packaging.py
#    + tests/test_threads.py (one copy of each library in /proc/self/maps, RUNPATHs, threads);
#    then the onednn-cpu-gomp and scipy-openblas32 wheels beside it: still one copy of each;
# 4. the sdist into a fresh venv (compiled there): the smoke test and the same tests.
# The tests run from a copy outside the repository, so that `import aslnet` is the installed one.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export ASLNET_SHARED="${ASLNET_SHARED:-$(cd .. && pwd)/shared}"
export ASLNET_WEIGHTS="$ASLNET_SHARED/weights"
WORK="$ROOT/build/check-dist"
rm -rf "$WORK"
mkdir -p "$WORK/run/tests"
export ASLNET_HOME="$WORK/home"
T0=$(date +%s)
step() { echo "check_dist [$(( $(date +%s) - T0 )) s]: $*"; }

PYTHONS=()
for v in 3.10 3.11 3.12 3.13; do
    py=$(ls -d "$HOME"/.pyenv/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$py" ] || py=$(command -v "python$v" || true)
    [ -n "$py" ] || { echo "check_dist: CPython $v not found (pyenv or python$v on PATH)" >&2; exit 1; }
    PYTHONS+=("$py")
done
MAIN_TAG=$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')

step "building the wheels and the sdist"
rm -f dist/aslnet-*.whl dist/aslnet-*.tar.gz
tools/build_wheel.sh "${PYTHONS[@]}"
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' aslnet/__init__.py)

cp tests/__init__.py tests/conftest.py tests/test_packaging.py tests/test_threads.py "$WORK/run/tests/"
cat > "$WORK/run/smoke.py" <<'EOF'
"""The ImageNet MobileNet on the shared reference inputs: the top-1 class of the float64
reference, and probabilities within 1e-2 of its softmax.  Bound: float32 reproduces the logits to
~1e-4 relative (shared/README.md), <= 2.5e-3 absolute on logits up to ~25; softmax moves p_i by
at most sum_j |p_i (delta_ij - p_j)| * max|dz| = 2 p_i (1 - p_i) max|dz| <= max|dz| / 2, so
~1.3e-3: 1e-2 leaves room for another CPU's kernels (a smoke test of the installed package; the
suite checks the numbers closely)."""
import os
import sys

import numpy as np

import aslnet
from aslnet.applications.mobilenet import MobileNet

ref = os.path.join(os.environ["ASLNET_WEIGHTS"], "reference")
model = MobileNet(weights="imagenet", weights_dir=os.environ["ASLNET_WEIGHTS"])
names = ("cat", "bird", "grace_hopper", "parrot")
x = np.stack([np.load(os.path.join(ref, f"{n}.input.npy")) for n in names])
p = model.predict(x, verbose=0)
for n, row in zip(names, p):
    logits = np.load(os.path.join(ref, f"{n}.logits.npy")).astype(np.float64)[1:]
    q = np.exp(logits - logits.max())
    q /= q.sum()
    gap = float(np.abs(row - q).max())
    assert row.argmax() == q.argmax() and gap < 1e-2, (n, row.argmax(), q.argmax(), gap)
print(f"smoke: aslnet {aslnet.__version__} from {os.path.dirname(aslnet.__file__)}, Python "
      f"{sys.version.split()[0]}, {aslnet.get_num_threads()} threads: top-1 of {len(names)} "
      "reference photos as the reference")
EOF

install() {   # install VENV PYTHON DIST: a fresh venv with DIST (and pytest)
    "$2" -m venv "$1"
    "$1/bin/pip" install -q "$3" pytest
}

for py in "${PYTHONS[@]}"; do
    tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    whl=$(ls dist/aslnet-"$VERSION"-"$tag"-"$tag"-manylinux*_x86_64.whl)
    step "installing $whl"
    install "$WORK/$tag" "$py" "$whl"
    if "$WORK/$tag/bin/pip" list 2>/dev/null | grep -i -E "^(onednn|scipy-openblas32) "; then
        echo "check_dist: the wheel pulled in the libraries' own wheels" >&2; exit 1
    fi
    "$WORK/$tag/bin/aslnet" --version
    (cd "$WORK/run" && "$WORK/$tag/bin/python" smoke.py)
done

step "python3's wheel ($MAIN_TAG) with the system libgomp hidden"
GOMP=/usr/lib/x86_64-linux-gnu/libgomp.so.1
V="$WORK/$MAIN_TAG"
(cd "$WORK/run" && unshare -m sh -c "mount --bind /dev/null $GOMP && set -e
    if python3 -c 'import ctypes; ctypes.CDLL(\"libgomp.so.1\")' 2>/dev/null; then
        echo 'check_dist: libgomp is not hidden' >&2; exit 1
    fi
    $V/bin/python smoke.py
    $V/bin/aslnet classify --weights \"$ASLNET_WEIGHTS\" \"$ASLNET_WEIGHTS/reference/cat.bmp\" \
        | grep Egyptian > /dev/null
    $V/bin/python -m pytest -q -p no:cacheprovider tests")

step "python3's wheel beside the onednn-cpu-gomp and scipy-openblas32 wheels"
# aslnet must still load only its own copies (no preload of theirs): one of each in the process.
"$V/bin/pip" install -q "$(sed -n 's/.*"\(onednn-cpu-gomp==[^"]*\)".*/\1/p' setup.py)" \
    scipy-openblas32
(cd "$WORK/run" && "$V/bin/python" -m pytest -q -p no:cacheprovider tests/test_packaging.py \
    -k "one_copy or layout")

step "installing the sdist (compiles the C core)"
install "$WORK/sdist" python3 "dist/aslnet-$VERSION.tar.gz"
(cd "$WORK/run" && "$WORK/sdist/bin/python" smoke.py &&
    "$WORK/sdist/bin/python" -m pytest -q -p no:cacheprovider tests)

step "done: $(ls dist/ | tr '\n' ' ')"
