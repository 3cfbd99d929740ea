#!/usr/bin/env bash
# Build the documentation site into site/: mkdocs build --strict (warnings are errors).
#
#   tools/build_docs.sh                          # quick tutorial run (see below): 3 min on 2 busy cores
#   ASLNET_DOCS_FULL=1 tools/build_docs.sh       # the full tutorial (10 + 20 + 8 epochs)
#   ASLNET_DOCS_EXECUTE=false tools/build_docs.sh   # the notebook's code without outputs
#
# Installs the `docs` extra of pyproject.toml into the venv ($PYTHON, default .venv/bin/python)
# when it is missing.  The tutorial notebook (notebooks/sign_language_digits.ipynb, kept
# without outputs) is executed while the site builds (mkdocs-jupyter): the full tutorial
# trains for ~5 minutes on 2 quiet cores and far longer on a busy machine, so by default it
# runs on a subset with the parameters its own test uses (12 images per class, 1 epoch,
# fine_tune 2 + 1 epochs); the Getting started page says so.  It needs the shared data and
# weights ($ASLNET_SHARED, default ../shared); without them the notebook is rendered
# unexecuted, with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"

if ! "$PY" -c 'import mkdocs, material, mkdocstrings_handlers.python, mkdocs_jupyter, griffe_inherited_docstrings' 2>/dev/null; then
    echo "build_docs: installing the docs extra into $("$PY" -c 'import sys; print(sys.prefix)')"
    "$PY" - > /tmp/aslnet-docs-requirements.$$ <<'PYEOF'
try:
    import tomllib
except ImportError:                  # Python 3.10
    import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["docs"]))
PYEOF
    "$PY" -m pip install -q -r /tmp/aslnet-docs-requirements.$$
    rm -f /tmp/aslnet-docs-requirements.$$
fi

SHARED="${ASLNET_SHARED:-$(cd .. && pwd)/shared}"
export ASLNET_DOCS_EXECUTE="${ASLNET_DOCS_EXECUTE:-true}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/aslnet-docs.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
if [ "$ASLNET_DOCS_EXECUTE" = true ]; then
    if [ -d "$SHARED/data/sign-language-digits" ] && [ -d "$SHARED/weights" ]; then
        # the notebook's parameters (its second cell); it runs with docs/ as its folder
        export ASLNET_DATA="$SHARED/data/sign-language-digits" ASLNET_WEIGHTS="$SHARED/weights"
        export ASLNET_WORK="$WORK/work" ASLNET_HOME="${ASLNET_HOME:-$WORK/home}"
        if [ "${ASLNET_DOCS_FULL:-0}" != 1 ]; then
            export ASLNET_MAX_PER_CLASS=12 ASLNET_VALID=3 ASLNET_TEST=2 ASLNET_EPOCHS=1 \
                   ASLNET_FINE_TUNE=1 ASLNET_HEAD_EPOCHS=2 ASLNET_FT_EPOCHS=1
        fi
    else
        echo "build_docs: WARNING: no shared data under $SHARED (set ASLNET_SHARED):" \
             "the tutorial is rendered without executing it" >&2
        export ASLNET_DOCS_EXECUTE=false
    fi
fi

export NO_MKDOCS_2_WARNING=1                 # mkdocs-material's banner about its successor
"$(dirname "$PY")/mkdocs" build --strict -d site "$@"
echo "build_docs: site/ built ($(find site -name '*.html' | wc -l) pages; tutorial executed: $ASLNET_DOCS_EXECUTE)"
