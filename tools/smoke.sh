#!/usr/bin/env bash
# Smoke check against the NEWEST fastai/fastcore from the package index (users who `pip install imgclf`
# get those), while the dev toolchain in .venv stays pinned for nbdev 2.
# .venv-latest reuses .venv's torch (a .pth line appended after its own site-packages, so its newer
# fastai/fastcore/fastprogress win) and imports imgclf from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${VENV:-.venv}
LATEST=.venv-latest
[ -x "$LATEST/bin/python" ] || python3 -m venv "$LATEST"
site=$("$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
lsite=$("$LATEST/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$site" > "$lsite/zz_imgclf_base_env.pth"
"$LATEST/bin/python" -m pip install -q -U fastai fastcore fastprogress 2>&1 | grep -v "is ignored: it is neither a file nor a directory" | grep -v "^Not uninstalling\|outside environment" || true
PYTHONPATH="$PWD" "$LATEST/bin/python" tools/smoke.py
