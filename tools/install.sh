#!/usr/bin/env bash
# Set up a development environment in .venv from a fresh clone, offline-friendly:
#   tools/install.sh            # then: .venv/bin/imgclf demo
# Installs the package (editable) with the pinned nbdev 2 toolchain, a Jupyter kernel for Voila, and,
# when run as root on Debian/Ubuntu, Chromium for the browser tests. Set VENV to use another folder.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
t0=$(date +%s)

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q -c tools/constraints.txt -e ".[dev,e2e]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
# fail loudly if the install did not happen (grep above hides only the mirror warnings)
"$VENV/bin/python" -c "import imgclf, nbdev, fastai, torch; print('imgclf', imgclf.__version__, '| fastai', fastai.__version__, '| torch', torch.__version__, '| nbdev', nbdev.__version__)"
# a kernel spec inside the venv: Voila (cleaner browser test) and nbconvert need one
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null

# Chromium for the browser (e2e) tests: Debian's package, never a downloaded build.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt) for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser tests will be skipped"
  else
    echo "note: chromium not found; install it (apt-get install chromium) to run the browser tests"
  fi
fi
echo "install done in $(( $(date +%s) - t0 ))s: activate with 'source $VENV/bin/activate'"
