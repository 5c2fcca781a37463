"""Developer helper: edit notebooks as plain text and run them in place.

    python tools/nbtool.py nb2py nbs/05_data.ipynb > /tmp/05_data.py   # notebook -> percent-format text
    python tools/nbtool.py py2nb /tmp/05_data.py nbs/05_data.ipynb    # text -> notebook (outputs dropped)
    python tools/nbtool.py run nbs/05_data.ipynb [--skip slow cuda]   # execute in place, keeping outputs

The text format is the "percent" format that Jupytext and VS Code read: `# %%` opens a code cell,
`# %% [markdown]` a markdown cell whose lines start with `# `. After `py2nb` + `run`, run `nbdev_clean`
so the notebook carries cell ids and clean metadata.
"""
import sys, json, argparse
from pathlib import Path

def nb2py(fn):
    nb = json.loads(Path(fn).read_text())
    out = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            out.append('# %% [markdown]\n' + '\n'.join(('# '+l) if l else '#' for l in src.split('\n')))
        else: out.append('# %%\n' + src)
    return '\n\n'.join(out) + '\n'

def _cells(text):
    cells, cur, kind = [], None, None
    for line in text.split('\n'):
        if line.startswith('# %%'):
            if cur is not None: cells.append((kind, cur))
            kind, cur = ('markdown' if '[markdown]' in line else 'code'), []
            continue
        if cur is None: continue
        if kind == 'markdown': line = line[2:] if line.startswith('# ') else line[1:] if line.startswith('#') else line
        cur.append(line)
    if cur is not None: cells.append((kind, cur))
    res = []
    for kind, lines in cells:
        while lines and not lines[-1].strip(): lines.pop()
        while lines and not lines[0].strip(): lines.pop(0)
        src = '\n'.join(lines)
        cell = dict(cell_type=kind, metadata={}, source=src.splitlines(keepends=True))
        if kind == 'code': cell.update(execution_count=None, outputs=[])
        res.append(cell)
    return res

def py2nb(src, dest):
    nb = dict(cells=_cells(Path(src).read_text()), nbformat=4, nbformat_minor=5,
              metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')))
    Path(dest).write_text(json.dumps(nb, indent=1) + '\n')

def run(fn, skip=()):
    "Execute `fn` in place with execnb (cwd = the notebook's folder), skipping cells flagged with `skip`."
    import os
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    fn = Path(fn).absolute()
    nb = read_nb(fn)
    proc = NBProcessor(fn, procs=FrontmatterProc, process=True)
    skip = set(skip)
    def _no_eval(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export'+'(' in cell.source: return True
        d = getattr(cell, 'directives_', {}) or {}
        if d.get('eval:', [''])[0].lower() == 'false': return True
        return skip & d.keys()
    for c, p in zip(nb.cells, proc.nb.cells): c.directives_ = getattr(p, 'directives_', {})
    old = os.getcwd(); os.chdir(fn.parent)
    try:
        sh = CaptureShell(fn)
        sh.run_all(nb, exc_stop=True, preproc=_no_eval)
    finally: os.chdir(old)
    for c in nb.cells: c.pop('directives_', None)
    write_nb(nb, fn)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('cmd', choices=['nb2py', 'py2nb', 'run'])
    p.add_argument('paths', nargs='+')
    p.add_argument('--skip', nargs='*', default=[], help='flags whose cells are not run (e.g. slow cuda e2e)')
    a = p.parse_args()
    if a.cmd == 'nb2py': sys.stdout.write(nb2py(a.paths[0]))
    elif a.cmd == 'py2nb': py2nb(*a.paths[:2])
    else:
        for f in a.paths: run(f, a.skip)
