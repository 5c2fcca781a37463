#!/usr/bin/env bash
# The package as users get it: build the sdist and, from it, the wheel (as `python -m build` does for PyPI),
# `twine check` them, check that they hold every file of imgclf/ (tools/release.py check-dist), install the
# wheel (not editable) into a fresh venv with the NEWEST fastai and fastcore, and run the smoke test there
# (`imgclf demo --smoke`, then tools/smoke.py's imports), outside the checkout. Catches what the editable dev install
# hides: a module or data file missing from the wheel, a wrong requirement, code that needs the dev pins.
#   tools/wheel_smoke.sh        # torch: .venv's, reused through a .pth (links to torch and its dependencies only)
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu tools/wheel_smoke.sh   # torch installed from that index
#   DIST=dist tools/wheel_smoke.sh                                             # keep the built files in dist/
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
unset PYTHONPATH  # imgclf must come from the wheel, never from this checkout
BASE=${VENV:-.venv}
if [ -x "$BASE/bin/python" ]; then PY=$BASE/bin/python; else PY=${PYTHON:-python3}; fi
t0=$(date +%s); say() { echo "-- [$(( $(date +%s) - t0 ))s] $*"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/imgclf-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
DIST=${DIST:-$work/dist}
mkdir -p "$DIST"; DIST=$(cd "$DIST" && pwd); rm -f "$DIST"/imgclf-*
quiet() { # run a command with its output in a log, shown only when it fails
  local log; log=$work/$(date +%s%N).log
  if ! "$@" >"$log" 2>&1; then tail -40 "$log"; echo "FAILED: $*"; return 1; fi
}

say "build the sdist, and the wheel from it, from a copy of the checkout (its files, not what git ignores)"
"$PY" tools/release.py copy-source "$work/src"
quiet "$PY" -m build --outdir "$DIST" "$work/src"
ls -l "$DIST"
say "twine check, and every file of imgclf/ in the wheel and the sdist"
"$PY" -m twine check --strict "$DIST"/*
"$PY" tools/release.py check-dist "$DIST"

say "a fresh venv: the wheel and its requirements at their newest versions"
"$PY" -m venv "$work/venv"
V=$work/venv/bin
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  quiet "$V/python" -m pip install --no-compile torch torchvision --index-url "$TORCH_INDEX_URL"
else
  "$PY" tools/release.py torch-site "$work/torch-site"
  echo "$work/torch-site" > "$("$V/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_imgclf_torch.pth"
fi
quiet "$V/python" -m pip install --no-compile "$DIST"/imgclf-*.whl  # no .pyc: halves the time
"$V/python" -m pip list 2>/dev/null | grep -iE '^(imgclf|fastai|fastcore|fastprogress|torch|torchvision|numpy|pandas|pillow|matplotlib) ' | tr -s ' ' | paste -sd' ' -

say "smoke test outside the checkout: the imgclf command (demo --smoke), then tools/smoke.py (every module imports, without nbdev)"
mkdir "$work/run"; cd "$work/run"
"$V/python" -c "import sys, imgclf; assert imgclf.__file__.startswith(sys.prefix), f'imgclf imported from {imgclf.__file__}, not from the venv'"
"$V/imgclf" demo --smoke --out "$work/demo" | tail -5
"$V/python" "$repo/tools/smoke.py" --no-demo
say "wheel smoke passed"
