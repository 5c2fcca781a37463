"""Release helpers: the version (settings.ini alone), the tag and CHANGELOG checks, and the built files' contents.

    python tools/release.py version               # the version in settings.ini
    python tools/release.py check-tag v0.2.0      # the tag must be 'v' + that version, with a CHANGELOG.md entry (and
                                                  # nothing left under '## Unreleased')
    python tools/release.py notes [VERSION]       # that version's CHANGELOG.md entry (default: settings.ini's)
    python tools/release.py check-dist DIST       # the sdist and wheel in DIST hold every file of the package
    python tools/release.py torch-site DEST       # DEST: links to this env's torch, torchvision and torch's dependencies
    python tools/release.py copy-source DEST      # DEST: the checkout's files, tracked and new (not ignored), to build from

`check-dist` derives what must be shipped from the package folder itself (`git ls-files imgclf`, or every
file in it outside a git checkout), so a module or data file added later is checked without editing this file.
`torch-site` lets a fresh venv reuse an installed torch through a `.pth` line while pip still resolves every
other dependency of the wheel (fastai, numpy, pandas...) as a user's `pip install imgclf` would.
Used by `tools/wheel_smoke.sh` and `.github/workflows/release.yaml`.
"""
import re, sys, json, shlex, tarfile, zipfile, argparse, subprocess
from configparser import ConfigParser
from pathlib import Path, PurePosixPath

root = Path(__file__).resolve().parent.parent

def settings()->dict:
    cfg = ConfigParser(delimiters=['=']); cfg.read(root/'settings.ini', encoding='utf-8')
    return dict(cfg['DEFAULT'])

def version()->str: return settings()['version']

def changelog_entry(ver:str)->str|None:
    "The text under CHANGELOG.md's '## X.Y.Z' heading (a date or words may follow the version), None if absent"
    p = root/'CHANGELOG.md'
    if not p.exists(): return None
    m = re.search(rf'^## \[?{re.escape(ver)}\]?(?:[ \t][^\n]*)?\n(.*?)(?=^## |\Z)', p.read_text(), re.M | re.S)
    return m.group(1).strip() if m else None

def check_tag(tag:str)->list:
    "Problems with releasing `tag`: it must be 'v' + settings.ini's version, and CHANGELOG.md must have that entry"
    ver, res = version(), []
    if tag != f'v{ver}': res.append(f"the tag {tag!r} is not 'v' + the version in settings.ini ({ver!r}): tag v{ver}, or bump settings.ini first")
    if not changelog_entry(ver): res.append(f"CHANGELOG.md has no '## {ver}' entry with text under it: write what this release changes")
    if changelog_entry('Unreleased'): res.append("CHANGELOG.md's '## Unreleased' has entries: move them under the release's heading")
    return res

def package_files()->tuple:
    "(every file of the package folder that must be shipped, True if that list is git's), as POSIX paths from the root"
    lib = settings()['lib_path']
    try:
        out = subprocess.run(['git', 'ls-files', '-z', '--', lib], cwd=root, capture_output=True, check=True).stdout
        files = [f for f in out.decode().split('\0') if f]
    except (OSError, subprocess.CalledProcessError): files = []
    tracked = bool(files)
    if not files: files = [p.relative_to(root).as_posix() for p in (root/lib).rglob('*') if p.is_file()]
    return sorted(f for f in files if '__pycache__' not in f and not f.endswith(('.pyc', '.pyo')) and (root/f).exists()), tracked

def copy_source(dest)->int:
    "Copy the checkout's files (tracked and new, not ignored) to `dest`: a clean tree to build from"
    import shutil
    out = subprocess.run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=root, capture_output=True, check=True).stdout
    n = 0
    for f in filter(None, out.decode().split('\0')):
        src = root/f
        if not src.is_file(): continue  # deleted but still tracked, or a submodule
        t = Path(dest)/f; t.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, t); n += 1
    return n

def _norm(req:str)->str:
    "A requirement in one spelling: no spaces, lower case, '-' for '_', its version bounds sorted"
    r = re.sub(r'\s+', '', req).lower().replace('_', '-')
    m = re.match(r'([a-z0-9.\-]+(?:\[[^\]]*\])?)(\(?)([^;)]*)\)?(;.*)?$', r)
    return r if not m else m.group(1) + ','.join(sorted(filter(None, m.group(3).split(',')))) + (m.group(4) or '')

def check_dist(dist)->list:
    "Problems with the sdist and wheel in `dist`: names, version, files, requirements, entry point"
    s, ver, res = settings(), version(), []
    name = s['lib_name']; lib = s['lib_path']
    dist = Path(dist)
    whls, sdists = sorted(dist.glob('*.whl')), sorted(dist.glob('*.tar.gz'))
    if len(whls) != 1 or len(sdists) != 1: return [f"{dist} should hold one wheel and one sdist, not {[p.name for p in dist.iterdir()]}"]
    whl, sd = whls[0], sdists[0]
    if not whl.name.startswith(f'{name}-{ver}-'): res.append(f"wheel {whl.name} is not version {ver} of {name}")
    if sd.name != f'{name}-{ver}.tar.gz': res.append(f"sdist {sd.name} is not {name}-{ver}.tar.gz")
    want, tracked = package_files()
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        missing = [f for f in want if f not in names]
        if missing: res.append(f"the wheel lacks {missing}: a module outside the package, or a data file MANIFEST.in does not include")
        extra = sorted(n for n in names if n.startswith(f'{lib}/') and n not in want) if tracked else []
        if extra: res.append(f"the wheel ships files git does not track: {extra} (left-overs in {lib}/? commit or remove them)")
        tops = {n.split('/')[0] for n in names} - {lib, f'{name}-{ver}.dist-info'}
        if tops: res.append(f"the wheel installs more than {lib}/: {sorted(tops)}")
        init = z.read(f'{lib}/__init__.py').decode() if f'{lib}/__init__.py' in names else ''
        m = re.search(r'''^__version__\s*=\s*['"]([^'"]+)['"]''', init, re.M)
        if not m or m.group(1) != ver: res.append(f"{lib}/__init__.py says __version__ {m and m.group(1)!r}, settings.ini {ver!r}: run nbdev_export")
        info = f'{name}-{ver}.dist-info'
        meta = z.read(f'{info}/METADATA').decode() if f'{info}/METADATA' in names else ''
        reqs = {_norm(l.split(':', 1)[1]) for l in meta.splitlines() if l.startswith('Requires-Dist:') and 'extra ==' not in l}
        wanted = {_norm(r) for r in shlex.split(s.get('requirements', ''))}
        if reqs != wanted: res.append(f"the wheel's requirements differ from settings.ini: extra {sorted(reqs - wanted)}, missing {sorted(wanted - reqs)}")
        eps = z.read(f'{info}/entry_points.txt').decode() if f'{info}/entry_points.txt' in names else ''
        for cs in s.get('console_scripts', '').split():
            cmd, target = cs.split('=', 1)
            if not re.search(rf'^{re.escape(cmd)}\s*=\s*{re.escape(target)}\s*$', eps, re.M): res.append(f"the wheel has no console script {cs}")
    with tarfile.open(sd) as t:
        prefix = f'{name}-{ver}/'
        names = {m.name[len(prefix):] for m in t.getmembers() if m.name.startswith(prefix)}
        need = want + ['settings.ini', 'setup.py', 'pyproject.toml', 'README.md', 'LICENSE', 'CHANGELOG.md']
        missing = [f for f in need if f not in names]
        if missing: res.append(f"the sdist lacks {missing}: add them to MANIFEST.in")
    print(f"check-dist: {whl.name} ({len(want)} package files) and {sd.name}: {'ok' if not res else 'PROBLEMS'}")
    return res

def torch_site(dest)->list:
    "Make `dest` a folder of links to this env's torch, torchvision and torch's dependencies (not torchvision's)"
    from importlib import metadata
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name as canon
    dest = Path(dest); dest.mkdir(parents=True, exist_ok=True)
    todo, seen, done = [('torch', frozenset())], {}, set()
    while todo:  # requirements with extras (torch's `cuda-toolkit[cublas,...]`) bring those extras' requirements
        n, extras = todo.pop(); n = canon(n)
        if (n, extras) in done: continue
        done.add((n, extras))
        try: d = seen.get(n) or metadata.distribution(n)
        except metadata.PackageNotFoundError: continue  # an optional or platform-specific one that is not installed
        seen[n] = d
        for r in d.requires or []:
            r = Requirement(r)
            if r.marker is None or any(r.marker.evaluate({'extra': e}) for e in ('', *extras)): todo.append((r.name, frozenset(r.extras)))
    seen['torchvision'] = metadata.distribution('torchvision')
    tops = set()
    for d in seen.values():
        base = Path(d.locate_file(''))
        for f in d.files or []:
            parts = PurePosixPath(f).parts
            if parts and parts[0] != '..': tops.add((base, parts[0]))
    for base, top in sorted(tops):
        link = dest/top
        if not link.exists() and (base/top).exists(): link.symlink_to(base/top)
    print(f"torch-site: {len(seen)} distributions linked in {dest}: {', '.join(sorted(seen))}")
    return sorted(seen)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    sub.add_parser('version')
    sub.add_parser('check-tag').add_argument('tag')
    sub.add_parser('notes').add_argument('version', nargs='?')
    sub.add_parser('check-dist').add_argument('dist')
    sub.add_parser('torch-site').add_argument('dest')
    sub.add_parser('copy-source').add_argument('dest')
    a = ap.parse_args(argv)
    if a.cmd == 'version': print(version()); return 0
    if a.cmd == 'notes':
        e = changelog_entry(a.version or version())
        if e is None: print(f"CHANGELOG.md has no entry for {a.version or version()}", file=sys.stderr); return 1
        print(e); return 0
    if a.cmd == 'torch-site': torch_site(a.dest); return 0
    if a.cmd == 'copy-source': print(f"copy-source: {copy_source(a.dest)} files in {a.dest}"); return 0
    probs = check_tag(a.tag) if a.cmd == 'check-tag' else check_dist(a.dist)
    for p in probs: print(f"FAIL: {p}", file=sys.stderr)
    if not probs and a.cmd == 'check-tag': print(f"release {a.tag}: settings.ini says {version()}, CHANGELOG.md has its entry")
    return 1 if probs else 0

if __name__ == '__main__': sys.exit(main())
