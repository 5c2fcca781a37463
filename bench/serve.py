"""Serving speed, memory and robustness: `imgclf serve` under concurrent load, against raw `predict_batch`, on
each backend (torch, and the torch-free ONNX runtime).

    python bench/serve.py [--arch resnet18] [--size 224] [--backend torch onnx] [--concurrency 8] [--duration 20]
                          [--flood 15] [--threads N] [--raw-n 256]

1. Exports a model (an untrained `build_learner` network on ../shared/data/hymenoptera or the embedded
   digits, with its ONNX graph) and, for each `--backend`, measures raw in-process `predict_batch`
   throughput of that backend (`imgclf.runtime.load_model`) on the same JPEG bytes the clients send.
2. Starts the server (`imgclf.serve.serve(..., backend=)`) in a subprocess on a free port of 127.0.0.1. The
   ONNX server runs with torch, torchvision and fastai made impossible to import (`sys.modules[name] = None`),
   as in a deployment install without them; its resident memory (VmRSS) is read when it is idle (started,
   model loaded, no request yet), after the load test and after the flood. Goals (issue 17): runtime-only
   server idle RSS < 250 MB, < 400 MB after the flood; served / raw >= 0.8.
3. Runs a load generator in a *separate process* (this script with `--client`): `--concurrency` threads
   with keep-alive connections POST raw JPEGs to /predict for `--duration` seconds (at most
   `--max-requests`), and reports requests/s, p50/p99 latency and errors. Prints the ratio of served
   throughput to raw `predict_batch` throughput (goal: >= 0.75, i.e. serving overhead under 25%).
4. A bad-input flood for `--flood` seconds from another separate process (garbage bodies, wrong types,
   truncated images, decompression bombs, huge uploads, broken forms, bad and forbidden URLs, slow
   uploads), checking `/health` throughout: it must end with zero 5xx and /health answering.

Only 127.0.0.1 is ever contacted: every URL in the flood is an IP literal that the server refuses
before connecting, or is malformed; no host name needs a DNS lookup. Every loop is bounded.
"""
import argparse, http.client, json, os, random, shutil, socket, statistics, struct, subprocess, sys, tempfile, threading, time, zlib
from pathlib import Path

# ---- the client side (runs in its own process)
def _conn(port): return http.client.HTTPConnection('127.0.0.1', port, timeout=60)

def load(port, files, concurrency, duration, max_requests):
    "POST raw JPEGs from `concurrency` threads until `duration` s or `max_requests`: latencies and statuses"
    bodies = [Path(f).read_bytes() for f in files]
    lat, statuses, lock, stop = [], {}, threading.Lock(), time.monotonic() + duration
    count = [0]
    def worker(i):
        c = _conn(port)
        while time.monotonic() < stop:
            with lock:
                if count[0] >= max_requests: return
                count[0] += 1; n = count[0]
            body = bodies[(n*7 + i) % len(bodies)]
            t = time.perf_counter()
            try:
                c.request('POST', '/predict', body=body, headers={'Content-Type': 'image/jpeg'})
                r = c.getresponse(); r.read(); s = r.status
            except (OSError, http.client.HTTPException) as e:
                s = type(e).__name__; c.close(); c = _conn(port)
            with lock: lat.append(time.perf_counter() - t); statuses[str(s)] = statuses.get(str(s), 0) + 1
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in ts: t.start()
    for t in ts: t.join()
    wall = time.perf_counter() - t0
    ok = statuses.get('200', 0)
    lat_ms = sorted(1000*x for x in lat)
    return dict(requests=len(lat), ok=ok, wall=wall, rps=ok/wall, statuses=statuses,
                p50=statistics.median(lat_ms) if lat_ms else None, p99=lat_ms[min(len(lat_ms)-1, int(0.99*len(lat_ms)))] if lat_ms else None)

def _png_bomb(w=40_000, h=40_000):
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) + chunk(b'IEND', b'')

def _bad_requests(jpeg, max_bytes):
    "(name, method, path, body, headers) of every kind of bad request"
    rnd = random.Random(0)
    garbage = bytes(rnd.getrandbits(8) for _ in range(5000))
    form = lambda data, ctype: (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\nContent-Type: ' + ctype.encode() +
                                b'\r\n\r\n' + data + b'\r\n--b--\r\n')
    mp = {'Content-Type': 'multipart/form-data; boundary=b'}
    urls = ['file:///etc/passwd', 'http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/a.jpg', 'http://192.168.1.1/a.jpg',
            'http://[::1]/a.jpg', 'http://[fd00::1]/a.jpg', 'http://127.0.0.1:1/a.jpg', 'http://0.0.0.0/a.jpg', 'gopher://127.0.0.1:70/',
            'http://[::1', 'http://:80/a.jpg', 'http://127.0.0.1:99999/', 'ftp://127.0.0.1/a.jpg', '', 'not a url at all', 'http://user:pw@127.0.0.1/']
    reqs = [('garbage as jpeg', 'POST', '/predict', garbage, {'Content-Type': 'image/jpeg'}),
            ('garbage with jpeg magic', 'POST', '/predict', b'\xff\xd8\xff' + garbage, {'Content-Type': 'image/jpeg'}),
            ('text', 'POST', '/predict', b'hello', {'Content-Type': 'text/plain'}),
            ('json', 'POST', '/predict', b'{"a": 1}', {'Content-Type': 'application/json'}),
            ('empty', 'POST', '/predict', b'', {'Content-Type': 'image/jpeg'}),
            ('truncated jpeg', 'POST', '/predict', jpeg[:len(jpeg)//3], {'Content-Type': 'image/jpeg'}),
            ('png bomb', 'POST', '/predict', _png_bomb(), {'Content-Type': 'image/png'}),
            ('huge upload', 'POST', '/predict', b'\xff\xd8\xff' + b'\0'*(max_bytes + 1000), {'Content-Type': 'image/jpeg'}),
            ('form without file', 'POST', '/predict', b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n--b--\r\n', mp),
            ('broken form', 'POST', '/predict', b'--b\r\nbroken', mp),
            ('form with text', 'POST', '/predict', form(b'hello', 'text/plain'), mp),
            ('form with garbage', 'POST', '/predict', form(b'GIF89a' + garbage, 'image/gif'), mp),
            ('GET predict', 'GET', '/predict', None, {}), ('unknown path', 'GET', '/../../etc/passwd', None, {})]
    from urllib.parse import quote
    reqs += [(f'url {u!r}', 'GET', f'/classify-url?url={quote(u)}', None, {}) for u in urls]
    return reqs

def slow_upload(port, seconds):
    "Send a body one byte per second: the server must answer 408 when the request's time is up"
    s = socket.create_connection(('127.0.0.1', port), timeout=seconds + 30)
    s.sendall(b'POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n\xff\xd8\xff')
    t = time.monotonic()
    try:
        while time.monotonic() - t < seconds:
            s.sendall(b'\0'); time.sleep(1)
            s.setblocking(False)
            try:
                data = s.recv(4096)
                if data: return data.split(b'\r\n')[0].decode(errors='replace')
            except BlockingIOError: pass
            finally: s.setblocking(True)
        s.settimeout(30); return s.recv(4096).split(b'\r\n')[0].decode(errors='replace')
    except OSError as e: return f'connection closed ({type(e).__name__})'
    finally: s.close()

def flood(port, jpeg_file, seconds, max_bytes, slow_seconds):
    "Send every bad request over and over for `seconds`, checking /health in between: statuses seen"
    reqs, stop, statuses, health = _bad_requests(Path(jpeg_file).read_bytes(), max_bytes), time.monotonic() + seconds, {}, []
    slow = []
    slow_threads = [threading.Thread(target=lambda: slow.append(slow_upload(port, slow_seconds))) for _ in range(2)]
    for t in slow_threads: t.start()
    lock = threading.Lock()
    def worker(i):
        c, k = _conn(port), i
        while time.monotonic() < stop:
            name, method, path, body, headers = reqs[k % len(reqs)]; k += 3
            try:
                c.request(method, path, body=body, headers=headers); r = c.getresponse(); r.read(); s = r.status
                if r.getheader('Connection', '').lower() == 'close': c.close(); c = _conn(port)
            except (OSError, http.client.HTTPException) as e: s = f'{type(e).__name__}'; c.close(); c = _conn(port)
            with lock: statuses.setdefault(name, {}); statuses[name][str(s)] = statuses[name].get(str(s), 0) + 1
            if k % 10 == 0:
                try: h = _conn(port); h.request('GET', '/health'); hr = h.getresponse(); hr.read(); health.append(hr.status); h.close()
                except OSError as e: health.append(type(e).__name__)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts: t.start()
    for t in ts + slow_threads: t.join()
    return dict(statuses=statuses, health=health, slow=slow)

# ---- the driver
def start_server(model_dir, threads=None, **kwargs):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    if kwargs.get('backend') == 'torch': pre = f"import torch; torch.set_num_threads({threads}); " if threads else ''
    else: pre = "import sys; sys.modules.update(torch=None, torchvision=None, fastai=None); "  # a torch-free server
    code = pre + f"from imgclf.serve import serve; serve({str(model_dir)!r}, port={port}, log_level='error', **{kwargs!r})"
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(240):
        if proc.poll() is not None: sys.exit(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            c = _conn(port); c.request('GET', '/health')
            if c.getresponse().status == 200: return proc, port
        except OSError: time.sleep(0.5)
    proc.kill(); sys.exit("the server did not start within 120 s")

def rss_mb(pid):
    "The resident memory of process `pid` in MB (Linux)"
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'): return int(line.split()[1])/1024
    return float('nan')

def client_process(*args):
    "Run this script in client mode in a separate process; return its JSON result"
    out = subprocess.run([sys.executable, __file__, '--client', json.dumps(args)], capture_output=True, text=True, timeout=900)
    if out.returncode: sys.exit(f"the client failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='resnet18'); p.add_argument('--size', type=int, default=224)
    p.add_argument('--backend', nargs='+', default=['torch', 'onnx'], help="'torch', 'onnx' and/or 'int8'")
    p.add_argument('--concurrency', type=int, default=8); p.add_argument('--duration', type=float, default=20.)
    p.add_argument('--max-requests', type=int, default=5000); p.add_argument('--flood', type=float, default=15.)
    p.add_argument('--max-batch', type=int, default=32); p.add_argument('--client', help=argparse.SUPPRESS)
    p.add_argument('--raw-n', type=int, default=256, help='images per raw predict_batch run (fewer on a busy machine)')
    p.add_argument('--threads', type=int, help='torch CPU threads in the server and the raw run (default: torch\'s choice)')
    a = p.parse_args()
    if a.client:
        kind, *args = json.loads(a.client)
        print(json.dumps(load(*args) if kind == 'load' else flood(*args))); return

    import warnings; warnings.simplefilter('ignore')
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    from imgclf.core import shared_data, set_seed
    from imgclf.datasets import sample_digits
    from imgclf.data import from_folder
    path = shared_data('hymenoptera', quiet=True) or sample_digits()
    valid = path/('val' if (path/'val').exists() else 'valid')
    set_seed(42)
    dls = from_folder(path, valid=valid.name, size=a.size, bs=32, num_workers=0)
    tmp = tempfile.mkdtemp(prefix='imgclf-bench-serve-')  # the exported model, removed at the end
    try: run(a, path, valid, dls, Path(tmp))
    finally: shutil.rmtree(tmp, ignore_errors=True)

def run(a, path, valid, dls, tmp):
    from fastai.vision.all import get_image_files
    from imgclf.learner import build_learner
    from imgclf.export import export_model, add_onnx
    model_dir = export_model(build_learner(dls, a.arch, pretrained=False, device='cpu'), tmp/'model', onnx=True)
    if 'int8' in a.backend: add_onnx(model_dir, int8=valid, max_drop=1.)  # speed only: the network is untrained
    files = [str(f) for f in sorted(get_image_files(valid)) if f.suffix.lower() in ('.jpg', '.jpeg')][:64] or [str(f) for f in sorted(get_image_files(valid))[:64]]
    print(f"{a.arch} at {a.size}px on the CPU, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{len(files)} images from {path}")
    res = {b: run_backend(a, b, model_dir, files) for b in a.backend}
    print(f"\n{'backend':8} {'raw img/s':>9} {'served req/s':>12} {'served/raw':>10} {'p50 ms':>7} {'RSS idle':>9} "
          f"{'after load':>10} {'after flood':>11} {'flood':>6}")
    for b, r in res.items():
        print(f"{b:8} {r['raw']:9.1f} {r['rps']:12.1f} {r['rps']/r['raw']:10.2f} {r['p50']:7.0f} {r['idle']:7.0f}MB "
              f"{r['loaded']:8.0f}MB {r['flooded']:9.0f}MB {r['flood']:>6}")
    for b in set(res) - {'torch'}:
        r = res[b]
        print(f"goals ({b}): idle RSS {r['idle']:.0f} MB (< 250), after the flood {r['flooded']:.0f} MB (< 400), "
              f"served/raw {r['rps']/r['raw']:.2f} (>= 0.8)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")

def run_backend(a, backend, model_dir, files):
    "Raw throughput, then the server on `backend`: its memory, served throughput and the flood check"
    import torch
    from imgclf.runtime import load_model
    if a.threads: torch.set_num_threads(a.threads)
    clf = load_model(model_dir, backend, device='cpu', threads=a.threads if backend != 'torch' else None)
    bodies = [Path(f).read_bytes() for f in files]
    clf.predict_batch(bodies[:a.max_batch], bs=a.max_batch)  # warm-up
    def raw_ips(bs, n=a.raw_n):
        items = (bodies * (n // len(bodies) + 1))[:n]
        t = time.perf_counter(); clf.predict_batch(items, bs=bs); return n/(time.perf_counter() - t)
    raws = {bs: max(raw_ips(bs), raw_ips(bs)) for bs in sorted({a.concurrency, a.max_batch})}
    raw = max(raws.values())  # the reference is the best raw figure: a conservative ratio
    del clf
    print(f"\n[{backend}] raw predict_batch (same bytes, in-process, best of 2 x {a.raw_n} images): "
          + ', '.join(f'bs {b}: {v:.1f} img/s' for b, v in raws.items()))
    proc, port = start_server(model_dir, a.threads, backend=backend, max_batch=a.max_batch, timeout=10.)
    try:
        time.sleep(2); idle = rss_mb(proc.pid)
        client_process('load', port, files[:8], 2, 3., 50)  # warm-up
        r = client_process('load', port, files, a.concurrency, a.duration, a.max_requests)
        loaded = rss_mb(proc.pid)
        print(f"[{backend}] served: {r['rps']:.1f} requests/s with {a.concurrency} concurrent clients for {r['wall']:.0f} s, "
              f"p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, statuses {r['statuses']}")
        f = client_process('flood', port, files[0], a.flood, 10_000_000, min(a.flood, 14.))
        flooded = rss_mb(proc.pid)
        c = _conn(port); c.request('GET', '/health'); hr = c.getresponse(); health = json.loads(hr.read()); hs = hr.status
        # a server may refuse a huge upload by answering 413 and closing before the client finished sending: a reset is fine there
        five = {f'{k}: {s}': v for k, d in f['statuses'].items() for s, v in d.items()
                if s.startswith('5') or (not s.isdigit() and not (k == 'huge upload' and s in ('ConnectionResetError', 'BrokenPipeError')))}
        seen = {}
        for d in f['statuses'].values():
            for s, v in d.items(): seen[s] = seen.get(s, 0) + v
        print(f"[{backend}] bad-input flood ({a.flood:g} s, {sum(seen.values())} requests): statuses {dict(sorted(seen.items()))}; "
              f"/health during the flood {sorted(set(map(str, f['health'])))} ({len(f['health'])} checks); slow uploads got {f['slow']}")
        print(f"[{backend}] after the flood /health answers {hs} (backend {health.get('backend')}); 5xx or broken connections: {five or 'none'}")
        ok = hs == 200 and not five and all(str(h) == '200' for h in f['health']) and health.get('backend') == backend
        print(f"[{backend}] flood check:", "PASS" if ok else "FAIL")
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
    return dict(raw=raw, rps=r['rps'], p50=r['p50'], idle=idle, loaded=loaded, flooded=flooded, flood='PASS' if ok else 'FAIL')

if __name__ == '__main__': main()
