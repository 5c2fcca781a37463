"""Fetch the project's public test data once, verify its checksums, and lay it out like `../shared/data`.

    python tools/fetch_test_data.py DEST              # download what is missing or wrong, then verify everything
    python tools/fetch_test_data.py DEST --verify     # verify only, never download: exit 1 if anything is missing or wrong
    python tools/fetch_test_data.py DEST --from DIR   # take the downloads from DIR (same file names) instead of the network
    python tools/fetch_test_data.py --digest FOLDER   # print the file count and tree digest of a laid-out folder

What is fetched, from where, and every checksum is in `tools/test_data.json` (the manifest):
- `download`: the checksum of the file as published upstream (md5 or sha256, and where it is published),
  checked before anything is extracted;
- `tree`: the file count and digest of the laid-out folder (sha256 of the sorted lines `<sha256 of file>  <path>`,
  `--digest` prints it), checked after every fetch and on every run, so a damaged cache is fetched again.
  A single-file dataset is checked with its download checksum instead.

The GitHub test workflow caches DEST with `actions/cache`, keyed on the manifest's hash, runs this script
(it downloads only what the cache lacks) and sets `IMGCLF_TEST_DATA=DEST` for the tests, which never download.
Standard library only: it runs before the project's environment is installed.
"""
import io, os, sys, json, time, shutil, hashlib, zipfile, tarfile, argparse, tempfile, ast, urllib.request
from pathlib import Path, PurePosixPath

MANIFEST = Path(__file__).resolve().parent/'test_data.json'
CHUNK = 1 << 20

class DataCheckError(Exception): "A download or a laid-out dataset whose checksum or layout is wrong"

def load_manifest(path=MANIFEST)->dict: return json.loads(Path(path).read_text())['datasets']

def file_digest(path, algo='sha256')->str:
    "Hex digest of a file, read in chunks"
    h = hashlib.new(algo)
    with open(path, 'rb') as f:
        for b in iter(lambda: f.read(CHUNK), b''): h.update(b)
    return h.hexdigest()

def tree_files(folder)->list:
    "Every regular file under `folder`, as sorted POSIX paths relative to it (symlinks are refused)"
    folder, res = Path(folder), []
    for dirpath, dirs, files in os.walk(folder):
        for n in files + [d for d in dirs if (Path(dirpath)/d).is_symlink()]:
            p = Path(dirpath)/n
            if p.is_symlink(): raise DataCheckError(f"{p} is a symlink: a laid-out dataset holds plain files only")
            res.append(p.relative_to(folder).as_posix())
    return sorted(res)

def tree_digest(folder)->dict:
    "`{'files': N, 'sha256': digest}` of a folder: sha256 of the sorted lines '<sha256 of file>  <relative path>'"
    h, files = hashlib.sha256(), tree_files(folder)
    for rel in files: h.update(f"{file_digest(Path(folder)/rel)}  {rel}\n".encode())
    return {'files': len(files), 'sha256': h.hexdigest()}

def _download_check(d:dict)->tuple:
    "(algorithm, expected hex digest) of a manifest entry's download"
    for algo in ('sha256', 'md5'):
        if d['download'].get(algo): return algo, d['download'][algo].lower()
    raise DataCheckError("the manifest gives no sha256 or md5 for the download")

def check_download(name:str, d:dict, path)->None:
    "Raise `DataCheckError` unless the downloaded file has the size and checksum the manifest publishes"
    size = d['download'].get('size')
    if size is not None and Path(path).stat().st_size != size:
        raise DataCheckError(f"{name}: the download is {Path(path).stat().st_size} bytes, the manifest says {size} ({d['url']})")
    algo, want = _download_check(d)
    got = file_digest(path, algo)
    if got != want: raise DataCheckError(f"{name}: the download's {algo} is {got}, the manifest says {want} ({d['url']})")

def check_dataset(name:str, d:dict, dest)->str|None:
    "None if `dest/name` is laid out as the manifest says, else what is wrong"
    p = Path(dest)/name
    if d['extract'] == 'none':
        if not p.is_file(): return 'missing'
        algo, want = _download_check(d)
        got = file_digest(p, algo)
        return None if got == want else f"{algo} is {got}, expected {want}"
    if not p.is_dir(): return 'missing'
    try: got = tree_digest(p)
    except DataCheckError as e: return str(e)
    want = d['tree']
    if got['files'] != want['files']: return f"{got['files']} files, expected {want['files']}"
    return None if got['sha256'] == want['sha256'] else f"tree digest is {got['sha256']}, expected {want['sha256']}"

def _safe_member(name:str, root:str)->PurePosixPath|None:
    "The path of an archive member inside `root` (the archive's top folder), None for members to leave out"
    p = PurePosixPath(name)
    if p.is_absolute() or '..' in p.parts: raise DataCheckError(f"archive member {name!r} points outside the archive")
    if not p.parts or p.parts[0] != root or len(p.parts) < 2: return None
    if any(part.startswith('.') or part == '__MACOSX' for part in p.parts): return None  # .DS_Store, ._x, __MACOSX
    return PurePosixPath(*p.parts[1:])

def extract(name:str, d:dict, archive, out)->None:
    "Lay out `archive` into the new folder `out`: only the manifest's `keep` entries of its top folder `root`"
    keep, root, out = set(d['keep']), d['root'], Path(out)
    def wanted(rel): return rel is not None and rel.parts[0] in keep
    def write(rel, src):
        t = out.joinpath(*rel.parts); t.parent.mkdir(parents=True, exist_ok=True)
        with open(t, 'wb') as f: shutil.copyfileobj(src, f)
    out.mkdir(parents=True)
    if d['extract'] == 'zip':
        with zipfile.ZipFile(archive) as z:
            for m in z.infolist():
                rel = _safe_member(m.filename, root)
                if m.is_dir() or not wanted(rel): continue
                with z.open(m) as src: write(rel, src)
    elif d['extract'] == 'tgz':
        with tarfile.open(archive, 'r:gz') as t:
            for m in t:
                rel = _safe_member(m.name, root)
                if not wanted(rel): continue
                if m.issym() or m.islnk(): raise DataCheckError(f"{name}: archive member {m.name!r} is a link")
                if not m.isfile(): continue
                write(rel, t.extractfile(m))
    else: raise DataCheckError(f"{name}: unknown extract kind {d['extract']!r}")
    missing = keep - {p.name for p in out.iterdir()}
    if missing: raise DataCheckError(f"{name}: the archive has no {sorted(missing)} under {root}/")

def download(url:str, dest, tries:int=4, timeout:float=60)->None:
    "Download `url` to the file `dest`, retrying with a growing pause"
    for i in range(tries):
        try:
            req = urllib.request.Request(url, headers={'User-Agent': 'imgclf-test-data-fetch'})
            with urllib.request.urlopen(req, timeout=timeout) as r, open(dest, 'wb') as f: shutil.copyfileobj(r, f, CHUNK)
            return
        except OSError as e:
            if i == tries - 1: raise DataCheckError(f"could not download {url}: {e}") from e
            wait = 5 * 2**i
            print(f"  download failed ({e}); again in {wait}s", flush=True); time.sleep(wait)

def fetch_one(name:str, d:dict, dest, from_dir=None, downloader=download)->None:
    "Get the download (from `from_dir` or the network), check it, lay it out in place of `dest/name`"
    dest = Path(dest); dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix='.fetch-') as tmp:
        tmp = Path(tmp)
        fname = d.get('file') or PurePosixPath(d['url'].split('?')[0]).name
        if from_dir is not None: src = Path(from_dir)/fname
        else:
            src = tmp/fname
            print(f"  downloading {d['url']}", flush=True); downloader(d['url'], src)
        if not src.exists(): raise DataCheckError(f"{name}: {src} does not exist")
        check_download(name, d, src)
        new = tmp/'new'
        if d['extract'] == 'none': shutil.copyfile(src, new)
        else: extract(name, d, src, new)
        if d['extract'] != 'none':
            got, want = tree_digest(new), d['tree']
            if got != {'files': want['files'], 'sha256': want['sha256']}:
                raise DataCheckError(f"{name}: laid out {got['files']} files with tree digest {got['sha256']}, the manifest says "
                                     f"{want['files']} files, {want['sha256']}: the archive's contents changed, or the layout code did")
        target = dest/name
        if target.is_dir() and not target.is_symlink(): shutil.rmtree(target)
        elif target.exists() or target.is_symlink(): target.unlink()
        os.replace(new, target)

def npz_counts(path)->dict:
    "{split: {label: count}} of a MedMNIST-style npz (`<split>_labels` uint8 arrays), read with the standard library"
    res = {}
    with zipfile.ZipFile(path) as z:
        for n in sorted(z.namelist()):
            if not n.endswith('_labels.npy'): continue
            b = z.read(n)
            hlen = int.from_bytes(b[8:10], 'little') if b[6] == 1 else int.from_bytes(b[8:12], 'little')
            start = 10 if b[6] == 1 else 12
            hdr = ast.literal_eval(b[start:start+hlen].decode('latin1'))
            if hdr['descr'] not in ('|u1', '<u1', 'u1'): continue
            data = b[start+hlen:]
            res[n[:-len('_labels.npy')]] = {v: data.count(bytes([v])) for v in sorted(set(data))}
    return res

def fetch(dest, manifest=MANIFEST, from_dir=None, verify_only=False, downloader=download, names=None)->list:
    "Check every dataset in `dest`; fetch those missing or wrong (unless `verify_only`); return the problems left"
    datasets, problems = load_manifest(manifest), []
    for name, d in datasets.items():
        if names and name not in names: continue
        why = check_dataset(name, d, dest)
        if why is None: print(f"ok       {name}"); continue
        if verify_only: problems.append(f"{name}: {why}"); print(f"WRONG    {name}: {why}"); continue
        print(f"fetching {name} ({why})", flush=True)
        try: fetch_one(name, d, dest, from_dir=from_dir, downloader=downloader)
        except DataCheckError as e: problems.append(str(e)); print(f"FAILED   {e}"); continue
        why = check_dataset(name, d, dest)
        if why: problems.append(f"{name}: {why}"); print(f"FAILED   {name}: {why}")
        else: print(f"ok       {name} (fetched)")
    return problems

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('dest', nargs='?', help="the folder to lay the data out in (IMGCLF_TEST_DATA points the tests at it)")
    ap.add_argument('--verify', action='store_true', help="check only, never download")
    ap.add_argument('--from', dest='from_dir', help="a folder that holds the downloads, instead of the network")
    ap.add_argument('--manifest', default=str(MANIFEST), help="the manifest (default: tools/test_data.json)")
    ap.add_argument('--digest', metavar='FOLDER', help="print the file count and tree digest of FOLDER and exit")
    a = ap.parse_args(argv)
    if a.digest: print(json.dumps(tree_digest(a.digest))); return 0
    if not a.dest: ap.error("give DEST (or --digest FOLDER)")
    t = time.time()
    problems = fetch(a.dest, a.manifest, from_dir=a.from_dir, verify_only=a.verify)
    npz = Path(a.dest)/'pneumoniamnist.npz'
    if npz.is_file(): print(f"pneumoniamnist.npz labels per split: {npz_counts(npz)}")
    if problems:
        print(f"test data in {a.dest}: {len(problems)} problem(s):\n  " + '\n  '.join(problems)); return 1
    print(f"test data in {a.dest}: every checksum matches the manifest ({time.time()-t:.0f}s)"); return 0

if __name__ == '__main__': sys.exit(main())
