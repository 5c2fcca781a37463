"""Import every imgclf module and run `imgclf demo --smoke`; run by tools/smoke.sh under the newest fastai.

    python tools/smoke.py [--no-demo]   # --no-demo: imports only (tools/wheel_smoke.sh runs the demo as a command)
"""
import sys, importlib, pkgutil, tempfile, time
from pathlib import Path
import fastai, fastcore, torch
import imgclf
print(f"smoke: fastai {fastai.__version__}, fastcore {fastcore.__version__}, torch {torch.__version__}, imgclf from {Path(imgclf.__file__).parent}")
mods = [m.name for m in pkgutil.iter_modules(imgclf.__path__) if not m.name.startswith('_')]
for m in mods: importlib.import_module(f'imgclf.{m}')
bad = sorted(m for m in sys.modules if m == 'nbdev' or m.startswith('nbdev.'))
assert not bad, f"the runtime package must not import nbdev, but {bad} were imported"
print(f"smoke: imported {len(mods)} modules without nbdev: {', '.join(mods)}")
if '--no-demo' in sys.argv[1:]: sys.exit(0)
from imgclf.cli import main
t = time.time()
with tempfile.TemporaryDirectory(prefix='imgclf-smoke-') as out: rc = main(['demo', '--smoke', '--out', out])
assert rc == 0, f"imgclf demo --smoke exited with {rc}"
print(f"smoke: imgclf demo --smoke passed in {time.time()-t:.0f}s")
