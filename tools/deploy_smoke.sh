#!/usr/bin/env bash
# The torch-free deployment of nbs/15b_runtime.ipynb ("Deploying without torch"), done as a user would:
# 1. a model exported in the full environment (.venv, this checkout): an untrained ResNet-18 on the embedded
#    digits, with its ONNX graph, and the torch backend's prediction of one image;
# 2. a fresh venv with the wheel of this checkout installed --no-deps, then settings.ini's deploy_requirements:
#    checked to hold no torch, torchvision, fastai or pandas;
# 3. from that venv: `imgclf predict`, then `imgclf serve` on 127.0.0.1, /health and a real prediction over
#    HTTP (the same class as torch, probabilities within 1e-4), the server stopped by its pid;
# 4. the size of the deployment venv's site-packages next to the full install's (imgclf's requirements in .venv).
#   tools/deploy_smoke.sh          # VENV=... for another full environment
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
unset PYTHONPATH
BASE=${VENV:-.venv}; PY=$BASE/bin/python
t0=$(date +%s); say() { echo "-- [$(( $(date +%s) - t0 ))s] $*"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/imgclf-deploy.XXXXXX")
server=
cleanup() { if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
quiet() { # run a command with its output in a log, shown only when it fails
  local log; log=$work/$(date +%s%N).log
  if ! "$@" >"$log" 2>&1; then tail -40 "$log"; echo "FAILED: $*"; return 1; fi
}

say "the full environment exports a model with its ONNX graph, and predicts one image with torch"
PYTHONPATH=$repo "$PY" - "$work" <<'EOF'
import sys, json, warnings
from pathlib import Path
warnings.simplefilter('ignore')
from imgclf.datasets import sample_digits
from imgclf.data import from_folder
from imgclf.learner import build_learner
from imgclf.export import export_model
from imgclf.runtime import load_model
work, digits = Path(sys.argv[1]), sample_digits()
dls = from_folder(digits, size=32, bs=16, num_workers=0)
model = export_model(build_learner(dls, 'resnet18', pretrained=False), work/'model', onnx=True)
image = sorted((digits/'valid').rglob('*.png'))[0]
p = load_model(model, 'torch', device='cpu').predict(image)
(work/'expected.json').write_text(json.dumps(dict(image=str(image), label=p.label, probability=p.probability)))
print(f"exported {model.name}: {sorted(o.name for o in model.iterdir())}; torch says {p.label} ({p.probability:.4f})")
EOF

say "a fresh venv: the imgclf wheel without its dependencies, then deploy_requirements"
"$PY" tools/release.py copy-source "$work/src"
quiet "$PY" -m build --wheel --outdir "$work/dist" "$work/src"
"$PY" -m venv "$work/venv"
D=$work/venv/bin
reqs=$("$PY" -c "import configparser; c = configparser.ConfigParser(); c.read('settings.ini'); print(c['DEFAULT']['deploy_requirements'])")
quiet "$D/python" -m pip install --no-compile --no-deps "$work"/dist/imgclf-*.whl
# shellcheck disable=SC2086  # the requirements are words
quiet "$D/python" -m pip install --no-compile $reqs
"$D/python" -m pip list 2>/dev/null | grep -iE '^(imgclf|numpy|pillow|onnxruntime|pydantic|fastcore|starlette|hypercorn) ' | tr -s ' ' | paste -sd' ' -
"$D/python" -c "import importlib.util as u; bad = [m for m in ('torch', 'torchvision', 'fastai', 'pandas') if u.find_spec(m)]; assert not bad, f'the deployment venv has {bad}'"

mkdir "$work/run"; cd "$work/run"  # outside the checkout: imgclf comes from the venv
say "imgclf predict in the deployment venv"
image=$("$D/python" -c "import json, sys; print(json.load(open(sys.argv[1]))['image'])" "$work/expected.json")
"$D/imgclf" predict "$work/model" "$image" --json > "$work/predicted.json"
cat "$work/predicted.json" | tr -s ' \n' ' '; echo

say "imgclf serve in the deployment venv, on 127.0.0.1"
port=$("$D/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$D/imgclf" serve "$work/model" --port "$port" --log-level warning > "$work/server.log" 2>&1 &
server=$!
"$D/python" - "$port" "$work/expected.json" "$server" <<'EOF'
import sys, json, time, urllib.request
port, expected, pid = int(sys.argv[1]), json.load(open(sys.argv[2])), sys.argv[3]
base = f'http://127.0.0.1:{port}'
for _ in range(120):
    try: health = json.loads(urllib.request.urlopen(f'{base}/health', timeout=2).read()); break
    except OSError: time.sleep(0.5)
else: sys.exit("the server did not answer /health within 60 s")
print('health:', {k: health[k] for k in ('status', 'model', 'backend', 'imgclf_version')})
assert health['status'] == 'ok' and health['backend'] == 'onnx', health
req = urllib.request.Request(f'{base}/predict', data=open(expected['image'], 'rb').read(), headers={'Content-Type': 'image/png'})
got = json.loads(urllib.request.urlopen(req, timeout=30).read())
print(f"POST /predict: {got['label']} ({got['probability']:.4f}); torch in the full environment: {expected['label']} ({expected['probability']:.4f})")
assert got['label'] == expected['label'] and abs(got['probability'] - expected['probability']) <= 1e-4, (got, expected)
rss = next(int(l.split()[1]) for l in open(f'/proc/{pid}/status') if l.startswith('VmRSS:'))/1024
print(f"server RSS after one request: {rss:.0f} MB")
EOF
kill "$server"; wait "$server" 2>/dev/null || true; server=
grep -v "^INFO" "$work/server.log" | tail -5 || true

say "install sizes"
dep=$(du -sm "$("$D/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" | cut -f1)
full=$(cd "$repo" && PYTHONPATH=$repo "$PY" - <<'EOF'
# the distributions `pip install imgclf` brings (its requirements, recursively), as installed in this environment
import re, importlib.metadata as md
from packaging.requirements import Requirement
seen, todo, sizes = set(), ['imgclf'], {}
while todo:
    name = re.sub(r'[-_.]+', '-', todo.pop()).lower()
    if name in seen: continue
    seen.add(name)
    try: d = md.distribution(name)
    except md.PackageNotFoundError: continue
    sizes[name] = sum(p.stat().st_size for p in (d.locate_file(f) for f in d.files or []) if p.is_file())
    todo += [r.name for r in map(Requirement, d.requires or []) if not r.marker or r.marker.evaluate({'extra': ''})]
cuda = sum(v for k, v in sizes.items() if k.startswith(('nvidia-', 'triton', 'cuda-')))
print(f"{sum(sizes.values())/2**20:.0f} {(sum(sizes.values()) - cuda)/2**20:.0f}")
EOF
)
echo "deployment venv site-packages: ${dep} MB; full install (imgclf's requirements in $BASE): ${full% *} MB, ${full#* } MB without the CUDA libraries"
say "deployment smoke passed"
