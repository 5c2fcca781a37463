"""Offline docs preview: render every notebook to HTML without Quarto, then check the pages.

    python tools/preview_docs.py                 # build _preview/ and check links, tracebacks, output sizes
    python tools/preview_docs.py --screenshot    # also take a full-page screenshot of every page (1280 px wide)
    python -m http.server -d _preview 8080       # browse it

The real site is built by Quarto from the same notebooks (`.github/workflows/deploy.yaml` runs `nbdev_docs`
into docs/). Here, `nbdev.serve.proc_nbs()` applies nbdev's doc processors (hidden cells dropped, `show_doc`
rendered, export cells cleaned) into `_proc/`, and nbconvert turns each processed notebook into a page.
Every page gets the sidebar from `nbs/sidebar.yml`, and `.ipynb` links become `.html` links.
"""
import re, sys, json, html, argparse, shutil
from pathlib import Path
from urllib.parse import urlparse, unquote

root = Path(__file__).resolve().parent.parent
out = root/'_preview'

def _sidebar():
    import yaml
    sb = yaml.safe_load((root/'nbs'/'sidebar.yml').read_text())['website']['sidebar']['contents']
    def _title(p):
        pp = root/'_proc'/p
        if not pp.exists(): return Path(p).stem
        nb = json.loads(pp.read_text())
        for c in nb['cells']:
            m = re.search(r'^#\s+(.+)$', ''.join(c['source']), re.M) if c['cell_type'] == 'markdown' else None
            if m: return m.group(1).strip()
            if c['cell_type'] == 'raw' and (m := re.search(r'^title:\s*(.+)$', ''.join(c['source']), re.M)): return str(yaml.safe_load(m.group(1)))  # proc_nbs quotes titles with colons
        return Path(p).stem
    def _items(entries):
        res = []
        for e in entries:
            if isinstance(e, str): res.append(('page', e, _title(e)))
            elif 'section' in e:
                sub = []
                for c in e['contents']:
                    if isinstance(c, dict) and 'auto' in c:
                        sub += [('page', str(p.relative_to(root/'nbs')), None) for p in sorted((root/'nbs').glob(c['auto']))]
                    else: sub.append(('page', c, None))
                res.append(('section', e['section'], [(k, p, _title(p)) for k, p, _ in sub]))
        return res
    return _items(sb)

def _nav(items, here):
    depth = len(Path(here).parts) - 1
    up = '../'*depth
    def link(p, t): return f'<li><a href="{up}{Path(p).with_suffix(".html")}">{html.escape(t)}</a></li>'
    parts = ['<nav class="imgclf-nav"><a class="brand" href="%sindex.html">imgclf</a><ul>' % up]
    for kind, a, b in items:
        if kind == 'page': parts.append(link(a, b))
        else: parts.append(f'<li class="sec">{html.escape(a)}<ul>' + ''.join(link(p, t) for _, p, t in b) + '</ul></li>')
    return ''.join(parts) + '</ul></nav>'

_css = """<style>
body{display:flex;margin:0} .imgclf-nav{width:230px;min-width:230px;padding:1rem;background:#f6f8fa;height:100vh;
position:sticky;top:0;overflow:auto;font-family:sans-serif;font-size:14px} .imgclf-nav ul{list-style:none;padding-left:.6rem}
.imgclf-nav .brand{font-weight:bold;font-size:20px;text-decoration:none} .imgclf-nav .sec{margin-top:.6rem;font-weight:bold}
.imgclf-nav .sec li{font-weight:normal} main.imgclf-page{flex:1;min-width:0;padding:0 1rem}
</style>"""

_attr = re.compile(r'\{(?:target|style|\.)[^}\n]*\}')
def _quartoish(nb):
    "Do what Quarto does with nbdev's processed notebooks: frontmatter title, `echo: false`, pandoc attributes"
    import nbformat
    cells = []
    for c in nb.cells:
        if c.cell_type == 'raw' and c.source.startswith('---'):
            import yaml
            fm = yaml.safe_load(c.source.strip().strip('-')) or {}
            md = f"# {str(fm.get('title', '')).strip()}" + (f"\n\n> {str(fm['description']).strip()}" if fm.get('description') else '')
            cells.append(nbformat.v4.new_markdown_cell(md)); continue
        if c.cell_type == 'code':
            lines = c.source.split('\n')
            dirs = [l for l in lines if l.lstrip().startswith('#|')]
            c.source = '\n'.join(l for l in lines if not l.lstrip().startswith('#|')).strip()
            if any('echo: false' in d for d in dirs) or not c.source: c.metadata.setdefault('tags', []).append('remove_input')
            for o in c.get('outputs', []):
                d = o.get('data', {})
                if 'text/markdown' in d: d['text/markdown'] = _attr.sub('', d['text/markdown'])
        if c.cell_type == 'markdown': c.source = _attr.sub('', c.source)
        cells.append(c)
    nb.cells = cells
    return nb

def build():
    "Process the notebooks as the docs build does, render them; returns (pages, sidebar items, nbdev's warnings)"
    import warnings
    from nbdev.serve import proc_nbs
    from nbconvert import HTMLExporter
    import nbformat
    with warnings.catch_warnings(record=True) as caught:  # in this process (n_workers=0), so that they can be counted
        warnings.simplefilter('always')
        proc = Path(proc_nbs(force=True, n_workers=0))
    warned = [f"nbdev: a cell mixes imports and other code (it runs alone in the docs build; split it): {str(w.message).splitlines()[2]!r}"
              for w in caught if 'imports and other code' in str(w.message)]
    if out.exists(): shutil.rmtree(out)
    items = _sidebar()
    from traitlets.config import Config
    c = Config(); c.TagRemovePreprocessor.remove_input_tags = {'remove_input'}; c.TagRemovePreprocessor.enabled = True
    exp = HTMLExporter(template_name='lab', config=c, exclude_input_prompt=True, exclude_output_prompt=True)
    pages = []
    for nbp in sorted(proc.rglob('*.ipynb')):
        rel = nbp.relative_to(proc)
        if any(p.startswith(('.', '_')) for p in rel.parts): continue
        nb = _quartoish(nbformat.read(nbp, as_version=4))
        body, _ = exp.from_notebook_node(nb)
        body = re.sub(r'href="([^"#:]+)\.ipynb(#[^"]*)?"', lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
        body = body.replace('<body', '<body', 1)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + _nav(items, str(rel)) + '<main class="imgclf-page">', body, count=1)
        body = body.replace('</body>', '</main></body>', 1).replace('</head>', _css + '</head>', 1)
        dest = out/rel.with_suffix('.html')
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body)
        pages.append(dest)
    for f in proc.rglob('*'):  # images and other files the pages link to
        if f.is_file() and f.suffix not in ('.ipynb', '.yml', '.css') and not any(p.startswith('_') for p in f.relative_to(proc).parts):
            d = out/f.relative_to(proc); d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, d)
    return pages, items, warned

def check(pages, items, max_output_kb=300):
    "Broken links/images, raw tracebacks, giant outputs, and sidebar entries without a page"
    problems = []
    for kind, a, b in items:
        for p in ([a] if kind == 'page' else [p for _, p, _ in b]):
            if not (root/'nbs'/p).exists(): problems.append(f'sidebar.yml lists {p}, which does not exist')
    for page in pages:
        text = page.read_text()
        body = re.sub(r'<nav class="imgclf-nav">.*?</nav>', '', text, flags=re.S)
        for attr, url in re.findall(r'(href|src)="([^"]+)"', body):
            u = urlparse(url)
            if u.scheme or url.startswith(('#', 'data:', 'mailto:', '//')): continue
            target = (page.parent/unquote(u.path)).resolve()
            if not target.exists(): problems.append(f'{page.relative_to(out)}: broken {attr} {url}')
        for m in re.findall(r'Traceback \(most recent call last\)|<span class="ansi-red-fg">[A-Za-z]+Error', body):
            problems.append(f'{page.relative_to(out)}: raw traceback in an output'); break
        for o in re.findall(r'<div class="jp-OutputArea-output[^"]*"[^>]*>(.*?)</div>\s*</div>', body, flags=re.S):
            if len(o.encode()) > max_output_kb*1024: problems.append(f'{page.relative_to(out)}: an output of {len(o.encode())//1024} KB'); break
    return problems

def screenshot(pages, dest=out/'_screens'):
    import subprocess, threading, http.server, socketserver, functools
    from playwright.sync_api import sync_playwright
    exe = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    if not exe: print('no chromium found: skipping screenshots'); return []
    dest.mkdir(parents=True, exist_ok=True)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(out))
    srv = socketserver.TCPServer(('127.0.0.1', 0), handler); port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    shots, errors = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
              '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'])
        pg = b.new_page(viewport={'width': 1280, 'height': 900})
        for page in pages:
            rel = page.relative_to(out)
            pg.goto(f'http://127.0.0.1:{port}/{rel}', wait_until='load')
            broken = pg.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
            if broken: errors.append(f'{rel}: {broken} image(s) failed to load in the browser')
            f = dest/(str(rel).replace('/', '__') + '.png')
            pg.screenshot(path=str(f), full_page=True); shots.append(f)  # the whole page, 1280 px wide
        b.close()
    srv.shutdown()
    return shots, errors

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--screenshot', action='store_true', help='a full-page screenshot of every page (1280 px wide) in headless Chromium')
    a = ap.parse_args()
    pages, items, warned = build()
    problems = warned + check(pages, items)  # a cell mixing imports and code runs alone in the docs build: it may fail there
    if a.screenshot:
        shots, errs = screenshot(pages); problems += errs
        print(f'{len(shots)} screenshots in {out/"_screens"}')
    print(f'{len(pages)} pages in {out}')
    for p in problems: print('PROBLEM:', p)
    sys.exit(1 if problems else 0)
