"""Import every imgclf module and run the demo's first steps; run by tools/smoke.sh under the newest fastai."""
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
from imgclf.cli import main
t = time.time()
with tempfile.TemporaryDirectory(prefix='imgclf-smoke-') as out: rc = main(['demo', '--smoke', '--out', out])
assert rc == 0, f"imgclf demo --smoke exited with {rc}"
print(f"smoke: imgclf demo --smoke passed in {time.time()-t:.0f}s")
