"""Write README.md from nbs/index.ipynb (what `nbdev_readme` does with Quarto, which these machines lack).

    python tools/make_readme.py          # rewrite README.md
    python tools/make_readme.py --check  # exit 1 if README.md is out of date

Hidden cells (`#| hide`) are dropped, `#| echo: false` cells show only their outputs, text outputs become
code blocks and images are written to nbs/images/readme/ and linked, as on the docs home page. Relative links
and images in the markdown (relative to nbs/, where the docs live) are made relative to the repository root.
"""
import sys, json, re, base64, argparse, hashlib, posixpath
from pathlib import Path

root = Path(__file__).resolve().parent.parent
_dir = re.compile(r'^\s*#\|\s*(.*)$')

def _directives(src):
    lines = src.split('\n')
    d = [m.group(1).strip() for l in lines if (m := _dir.match(l))]
    return d, '\n'.join(l for l in lines if not _dir.match(l)).strip()

_link = re.compile(r'(\]\()([^)\s]+)')
def _relink(md):
    "Markdown links and images relative to nbs/ (the docs) made relative to the repository root (the README)"
    def f(m):
        u = m.group(2)
        if re.match(r'([A-Za-z][A-Za-z0-9+.-]*:|#|/)', u): return m.group(0)
        return m.group(1) + posixpath.normpath('nbs/' + u)
    return _link.sub(f, md)

def _outputs(outs, imgs):
    res = []
    for o in outs:
        if o.get('output_type') == 'stream': res.append('```\n' + ''.join(o['text']).rstrip() + '\n```')
        elif 'data' in o:
            d = o['data']
            if 'image/png' in d:
                b = base64.b64decode(d['image/png'])
                name = f'readme_{hashlib.sha1(b).hexdigest()[:10]}.png'
                imgs[name] = b
                res.append(f'![](nbs/images/readme/{name})')
            elif 'text/markdown' in d: res.append(''.join(d['text/markdown']).strip())
            elif 'text/plain' in d: res.append('```\n' + ''.join(d['text/plain']).rstrip() + '\n```')
    return res

def render(nb_path=root/'nbs'/'index.ipynb'):
    nb = json.loads(Path(nb_path).read_text())
    parts, imgs = [], {}
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown': parts.append(_relink(src.strip())); continue
        d, code = _directives(src)
        if any(x == 'hide' or x.startswith('export') for x in d) or 'include: false' in d: continue
        if 'echo: false' not in d and code: parts.append('```python\n' + code + '\n```')
        parts += _outputs(c.get('outputs', []), imgs)
    return '\n\n'.join(p for p in parts if p) + '\n', imgs

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--check', action='store_true'); a = ap.parse_args()
    md, imgs = render()
    img_dir = root/'nbs'/'images'/'readme'
    if a.check:
        stale = (root/'README.md').read_text() != md or any(not (img_dir/n).exists() for n in imgs)
        if stale: print('FAIL: README.md is out of date with nbs/index.ipynb: run python tools/make_readme.py and commit'); sys.exit(1)
        print('README.md is up to date'); sys.exit(0)
    (root/'README.md').write_text(md)
    if img_dir.exists():
        for p in img_dir.glob('readme_*.png'):
            if p.name not in imgs: p.unlink()
    for n, b in imgs.items(): img_dir.mkdir(parents=True, exist_ok=True); (img_dir/n).write_bytes(b)
    print(f'wrote README.md ({len(imgs)} images)')
