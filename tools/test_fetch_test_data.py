"""Offline tests of tools/fetch_test_data.py (run by tools/test.sh): checksums, layout, repair, refusal.

    python tools/test_fetch_test_data.py

Uses the local test data (`IMGCLF_TEST_DATA`, else a `shared/data` folder above the current one, as
`imgclf.core.shared_data` finds it) in two ways: its folders must have the tree digests the manifest records
(so the manifest matches what the tests here use), and archives built from them in the upstream layout
(with the clutter real archives carry: `models/`, `.DS_Store`, `__MACOSX/`) must lay out to exactly those
digests. The download checksums of those home-made archives are not the published ones, so those tests run
against a copy of the manifest that records them. Never touches the network. Prints SKIP without the data.
"""
import io, os, sys, json, shutil, tarfile, zipfile, tempfile, contextlib
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fetch_test_data as ftd

def local_data()->Path|None:
    env = os.environ.get('IMGCLF_TEST_DATA')
    cands = [Path(env)] if env else [p/'shared'/'data' for p in [Path.cwd(), *Path.cwd().parents]]
    return next((c for c in cands if (c/'mnist_tiny').is_dir() and (c/'hymenoptera').is_dir()), None)

def make_archives(src:Path, out:Path)->None:
    "mnist_tiny.tgz, hymenoptera_data.zip and pneumoniamnist.npz in `out`, laid out as upstream publishes them"
    out.mkdir(parents=True)
    with tarfile.open(out/'mnist_tiny.tgz', 'w:gz') as t:
        t.add(src/'mnist_tiny', arcname='mnist_tiny')
        for name, data in [('mnist_tiny/models/.keep', b''), ('mnist_tiny/history.csv', b'epoch\n'), ('mnist_tiny/train/3/._1.png', b'junk')]:
            info = tarfile.TarInfo(name); info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(out/'hymenoptera_data.zip', 'w') as z:
        for f in sorted((src/'hymenoptera').rglob('*')):
            z.write(f, 'hymenoptera_data/' + f.relative_to(src/'hymenoptera').as_posix())
        z.writestr('__MACOSX/hymenoptera_data/train/._x.jpg', b'junk'); z.writestr('hymenoptera_data/train/ants/.DS_Store', b'junk')
    shutil.copyfile(src/'pneumoniamnist.npz', out/'pneumoniamnist.npz')

def local_manifest(archives:Path, dest:Path)->Path:
    "The manifest with the download checksums of our home-made archives (tree digests unchanged)"
    m = json.loads(ftd.MANIFEST.read_text())
    for name, d in m['datasets'].items():
        f = archives/(d.get('file') or d['url'].split('?')[0].split('/')[-1])
        d['download'] = {'sha256': ftd.file_digest(f), 'size': f.stat().st_size}
    p = dest/'manifest.json'; p.write_text(json.dumps(m)); return p

def no_network(url, dest): raise AssertionError(f"tried to download {url}")

def main():
    "Run the tests with the fetch's own messages captured: shown only when a test fails"
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf): rc = _tests()
    except BaseException:
        print(buf.getvalue()); raise
    print('\n'.join(l for l in buf.getvalue().splitlines() if l.startswith(('SKIP', 'local ', 'fetch_test_data:'))))
    return rc

def _tests():
    src = local_data()
    if src is None: print("SKIP: no local test data (IMGCLF_TEST_DATA or ../shared/data): the fetch tests are skipped"); return 0
    man = ftd.load_manifest()
    # 1. the manifest's tree digests are those of the data the tests use here (and what GitHub lays out)
    for name in ('mnist_tiny', 'hymenoptera'):
        got = ftd.tree_digest(src/name)
        assert got == {k: man[name]['tree'][k] for k in ('files', 'sha256')}, (name, got, man[name]['tree'])
    official = ftd.file_digest(src/'pneumoniamnist.npz', 'md5') == man['pneumoniamnist.npz']['download']['md5']
    print(f"local pneumoniamnist.npz is {'the official file' if official else 'not the official file (the thinned copy)'}: "
          f"{ftd.npz_counts(src/'pneumoniamnist.npz')}")
    with tempfile.TemporaryDirectory(prefix='imgclf-fetch-test-') as tmp:
        tmp = Path(tmp); arch, dest = tmp/'archives', tmp/'data'
        make_archives(src, arch); mpath = local_manifest(arch, tmp)
        # 2. lay out from archives: exactly the recorded trees, the clutter left out
        assert ftd.fetch(dest, mpath, from_dir=arch) == []
        for name in ('mnist_tiny', 'hymenoptera'): assert ftd.check_dataset(name, man[name], dest) is None, name
        assert not (dest/'mnist_tiny'/'models').exists() and not (dest/'mnist_tiny'/'history.csv').exists()
        assert sorted(p.name for p in dest.iterdir()) == ['hymenoptera', 'mnist_tiny', 'pneumoniamnist.npz']  # no temp folders left
        # 3. a second run (a cache hit) verifies and downloads nothing
        assert ftd.fetch(dest, mpath, downloader=no_network) == []
        # 4. a damaged or extra file is found, and only that dataset is fetched again
        f = sorted((dest/'hymenoptera'/'val'/'bees').iterdir())[0]; f.write_bytes(f.read_bytes()[:-1])
        (dest/'mnist_tiny'/'stray.txt').write_text('x')
        assert ftd.check_dataset('hymenoptera', man['hymenoptera'], dest).startswith('tree digest')
        assert ftd.check_dataset('mnist_tiny', man['mnist_tiny'], dest) == '1430 files, expected 1429'
        assert len(ftd.fetch(dest, mpath, verify_only=True)) == 2
        t0 = (dest/'pneumoniamnist.npz').stat().st_mtime_ns
        assert ftd.fetch(dest, mpath, from_dir=arch) == []
        assert (dest/'pneumoniamnist.npz').stat().st_mtime_ns == t0  # the good one was left alone
        # 5. a download whose size or checksum is wrong is refused, and nothing replaces the folder in place
        bad = tmp/'bad'; bad.mkdir(); (bad/'mnist_tiny.tgz').write_bytes(b'not the archive')
        shutil.rmtree(dest/'mnist_tiny'/'valid')
        probs = ftd.fetch(dest, mpath, from_dir=bad, names=['mnist_tiny'])
        assert len(probs) == 1 and 'the download is 15 bytes' in probs[0], probs
        try: ftd.check_download('mnist_tiny', man['mnist_tiny'], arch/'mnist_tiny.tgz'); raise AssertionError('accepted')
        except ftd.DataCheckError as e: assert 'bytes, the manifest says 342207' in str(e) or 'md5' in str(e), e
        # 6. archive members outside the archive, or links, are refused
        evil = tmp/'evil'; evil.mkdir()
        with zipfile.ZipFile(evil/'hymenoptera_data.zip', 'w') as z: z.writestr('hymenoptera_data/../../escape.txt', b'x')
        d = dict(man['hymenoptera'], download={'sha256': ftd.file_digest(evil/'hymenoptera_data.zip')})
        try: ftd.fetch_one('hymenoptera', d, tmp/'evil-dest', from_dir=evil); raise AssertionError('accepted')
        except ftd.DataCheckError as e: assert 'outside the archive' in str(e), e
        assert not (tmp/'escape.txt').exists()
        # 7. the command line: --verify fails on a broken tree, --digest prints the recorded digest
        assert ftd.main([str(dest), '--verify', '--manifest', str(mpath)]) == 1
        assert ftd.main([str(dest), '--manifest', str(mpath), '--from', str(arch)]) == 0
        assert ftd.main([str(dest), '--verify', '--manifest', str(mpath)]) == 0
    print("fetch_test_data: checksums, layout, repair and refusal tests passed")
    return 0

if __name__ == '__main__': sys.exit(main())
