"""Hostile clients against `imgclf serve`: does the server stay up, bounded and answering? (issue 14)

    python bench/hostile.py [--size 224] [--flood 1500] [--half-open 300] [--seconds 8] [--backend auto]

1. Exports a tiny model (an untrained resnet18 on imgclf's embedded digits, at `--size`, presize size*460/224)
   and starts `imgclf.serve.serve` in a subprocess on a free port of 127.0.0.1, with 127.0.0.1 allowed for
   /classify-url. Two small local servers play the image hosts: one serves an image, the other sends its
   response headers one byte every 0.3 s.
2. While a monitor thread asks for `/health` every 0.2 s (latency and status) and another samples the server's
   resident memory every 20 ms, it runs, one after the other:
   - strips: 81-byte PNGs of 20000x1, 1x20000 and 2000x1 pixels, 5 times each, to /predict;
   - slow headers: 8 /classify-url requests to the slow host (twice the fetching threads), then 4 honest ones;
   - half-open: `--half-open` connections that send `GET /health HTTP/1.1\\r\\nHost: x\\r\\n` and wait, plus 20
     that send one more header byte every 0.5 s, for `--seconds` s;
   - a flood of `--flood` bad requests from 16 threads (truncated, mutated and bomb images, strips, wrong and
     missing content types, broken forms, forms with two files, huge declared lengths, empty bodies, forbidden
     and malformed URLs, non-ASCII URLs, URLs of 20 KB and 1 MB).
3. Prints the status counts, the number of 5xx, `/health`'s worst latency and failures, and the growth of the
   server's peak RSS over its RSS after a warm-up. Done means: 0 5xx, /health answered within 2 s throughout,
   peak RSS growth under 200 MB.

Only 127.0.0.1 is contacted: every other address in the flood is refused by the server before it connects,
and the hosts it may fetch from are the two local servers. Every loop is bounded in count and time; the
servers are stopped by their pid (the local hosts by shutdown) and the temporary folder is removed.
"""
import argparse, collections, concurrent.futures, http.client, http.server, io, json, os, random, re, shutil, socket
import subprocess, sys, tempfile, threading, time, warnings
from pathlib import Path

def png(w, h, v=128):
    from PIL import Image
    b = io.BytesIO()
    Image.new('L', (w, h), v).save(b, 'PNG')
    return b.getvalue()

def export_tiny(size, dest):
    "An untrained resnet18 on the embedded digits at `size`, exported to `dest`"
    warnings.filterwarnings('ignore')
    from imgclf.datasets import sample_digits
    from imgclf.data import from_folder
    from imgclf.learner import build_learner
    from imgclf.export import export_model
    dls = from_folder(sample_digits(), size=size, bs=16, num_workers=0)
    return export_model(build_learner(dls, 'resnet18', pretrained=False), dest/'tiny'), next((sample_digits()/'train').rglob('*.png'))

# ---- the server and the local image hosts
def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def start_server(model_dir, port, **kwargs):
    code = (f"from imgclf.serve import serve; serve({str(model_dir)!r}, port={port}, log_level='error', "
            f"allow_hosts=['127.0.0.1'], url_timeout=2, timeout=10, **{kwargs!r})")
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        if proc.poll() is not None: raise RuntimeError(proc.stderr.read().decode()[-2000:])
        try:
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=2)
            c.request('GET', '/health')
            if c.getresponse().status == 200: return proc
        except OSError: time.sleep(0.3)
    proc.kill()
    raise RuntimeError('the server did not start')

def stop(proc):
    proc.terminate()
    try: proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

def hosts(image):
    "Two local image hosts on 127.0.0.1: an honest one and one that sends its headers a byte every 0.3 s"
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            if self.path.startswith('/slow'):
                for b in b'HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Pad: ' + b'.'*30 + b'\r\n\r\n':
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.3)
            else:
                self.send_response(200)
                self.send_header('Content-Type', 'image/png')
                self.send_header('Content-Length', str(len(image)))
                self.end_headers()
                self.wfile.write(image)
    class S(http.server.ThreadingHTTPServer):
        daemon_threads = True
        def handle_error(self, *a): pass  # the server hangs up on the slow host: expected
    s = S(('127.0.0.1', 0), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s, f'http://127.0.0.1:{s.server_address[1]}'

# ---- measuring
def status_kb(pid, key):
    return int(re.search(key + r':\s+(\d+)', Path(f'/proc/{pid}/status').read_text()).group(1))

class Monitor:
    "/health every 0.2 s and the server's RSS every 20 ms, in threads, until `stop`"
    def __init__(self, port, pid):
        self.port, self.pid, self.done, self.lat, self.fails, self.rss = port, pid, threading.Event(), [], [], []
        self.phases = []
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.health, self.memory)]
        for t in self.threads: t.start()
    def health(self):
        while not self.done.wait(0.2):
            t = time.monotonic()
            try:
                c = http.client.HTTPConnection('127.0.0.1', self.port, timeout=5)
                c.request('GET', '/health')
                st = c.getresponse().status
                c.close()
            except OSError as e: st = type(e).__name__
            self.lat.append(time.monotonic() - t)
            if st != 200: self.fails.append(st)
    def memory(self):
        while not self.done.wait(0.02): self.rss.append(status_kb(self.pid, 'VmRSS'))
    def mark(self, phase): self.phases.append((phase, len(self.rss)))
    def peaks(self, base):
        "The growth of the sampled RSS over `base`, in MB, phase by phase"
        ends = [i for _, i in self.phases[1:]] + [len(self.rss)]
        return {p: round((max(self.rss[i:j] or [base]) - base)/1024, 1) for (p, i), j in zip(self.phases, ends)}
    def stop(self):
        self.done.set()
        for t in self.threads: t.join()

def request(port, method, path, body=None, headers=None, timeout=30):
    "The status of one request, or the name of the error that ended it"
    try:
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError as e: return type(e).__name__
    except http.client.HTTPException as e: return type(e).__name__

def form(parts):
    "A multipart body with `parts` [(field, filename, content type, bytes)], and its content type"
    b = b''.join(b'--xx\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n%s\r\n'
                 % (f.encode(), n.encode(), ct.encode(), d) for f, n, ct, d in parts) + b'--xx--\r\n'
    return b, {'Content-Type': 'multipart/form-data; boundary=xx'}

def bad_requests(good, host):
    "The kinds of bad request of the flood: (name, method, path, body, headers)"
    rng, strip = random.Random(0), png(20000, 1)
    def mutated():
        b = bytearray(good)
        for _ in range(rng.randint(1, 4)): b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b[:rng.randrange(8, len(b)+1)])
    bomb = png(1, 1)[:16] + (40_000).to_bytes(4, 'big')*2 + png(1, 1)[24:]
    two, two_ct = form([('file', 'a.png', 'image/png', good), ('other', 'b.png', 'image/png', good)])
    broken, broken_ct = b'--xx\r\nbroken', {'Content-Type': 'multipart/form-data; boundary=xx'}
    q = lambda u: '/classify-url?url=' + u
    return [
        ('mutated image', 'POST', '/predict', mutated, {'Content-Type': 'image/png'}),
        ('strip', 'POST', '/predict', strip, {'Content-Type': 'image/png'}),
        ('bomb header', 'POST', '/predict', bomb, {'Content-Type': 'image/png'}),
        ('truncated', 'POST', '/predict', good[:len(good)//2], {'Content-Type': 'image/png'}),
        ('text', 'POST', '/predict', b'hello', {'Content-Type': 'text/plain'}),
        ('no type', 'POST', '/predict', b'\x00'*100, {}),
        ('empty', 'POST', '/predict', b'', {'Content-Type': 'image/png'}),
        ('huge length', 'POST', '/predict', b'x', {'Content-Type': 'image/png', 'Content-Length': str(10**12)}),
        ('two files', 'POST', '/predict', two, two_ct),
        ('broken form', 'POST', '/predict', broken, broken_ct),
        ('get predict', 'GET', '/predict', None, {}),
        ('metadata url', 'GET', q('http://169.254.169.254/latest/meta-data/'), None, {}),
        ('private url', 'GET', q('http://10.0.0.1/a.png'), None, {}),
        ('file url', 'GET', q('file:///etc/passwd'), None, {}),
        ('bad port', 'GET', q('http://127.0.0.1:99999/a.png'), None, {}),
        ('non-ascii url', 'GET', q(urlquote(host + '/img/é.png')), None, {}),
        ('20 KB url', 'GET', q('http://127.0.0.1/' + 'a'*20_000), None, {}),
        ('1 MB url', 'GET', q('http://127.0.0.1/' + 'a'*1_000_000), None, {}),
        ('unknown path', 'GET', '/admin', None, {}),
    ]

def urlquote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe='')

# ---- the phases
def strips(port, statuses):
    for data in [png(20000, 1), png(1, 20000), png(2000, 1)]*5:
        statuses['strips'][request(port, 'POST', '/predict', data, {'Content-Type': 'image/png'})] += 1

def slow_headers(port, host, statuses):
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        slow = [ex.submit(request, port, 'GET', '/classify-url?url=' + urlquote(f'{host}/slow{i}')) for i in range(8)]
        time.sleep(0.3)
        honest = [ex.submit(request, port, 'GET', '/classify-url?url=' + urlquote(f'{host}/img{i}.png'))
                  for i in range(4)]
        for f in slow: statuses['slow headers'][f.result()] += 1
        for f in honest: statuses['honest urls'][f.result()] += 1

def half_open(port, n, seconds, statuses):
    socks = []
    try:
        for _ in range(n + 20):
            s = socket.create_connection(('127.0.0.1', port))
            socks.append(s)
            s.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\n' + (b'X-Slow: ' if len(socks) > n else b''))
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            for s in socks[n:]:
                try: s.sendall(b'.')
                except OSError: pass
            time.sleep(0.5)
        closed = 0
        for s in socks:
            s.settimeout(0.2)
            try:
                while s.recv(4096): pass
                closed += 1
            except ConnectionError: closed += 1
            except TimeoutError: pass
        statuses['half-open'][f'closed by the server after {seconds:g} s'] = closed
        statuses['half-open'][f'still open after {seconds:g} s'] = len(socks) - closed
    finally:
        for s in socks: s.close()

def flood(port, kinds, n, statuses, key='flood'):
    def one(i):
        name, method, path, body, headers = kinds[i % len(kinds)]
        return name, request(port, method, path, body() if callable(body) else body, headers)
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        for name, st in ex.map(one, range(n)):
            statuses[key][st] += 1
            statuses[f'{key} kinds'][f'{name} {st}'] += 1

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=224); p.add_argument('--flood', type=int, default=1500)
    p.add_argument('--half-open', type=int, default=300); p.add_argument('--seconds', type=float, default=8.)
    p.add_argument('--max-pixels', type=int, default=25_000_000, help="the server's max_pixels (create_app's default)")
    p.add_argument('--max-batch', type=int, default=32, help="the server's max_batch (create_app's default)")
    p.add_argument('--backend', default='auto', help="the server's backend: auto (ONNX when exported), onnx or torch")
    p.add_argument('--mmap-threshold', type=int, default=4 << 20, help="serve's mmap_threshold (0: glibc's own)")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='imgclf-hostile-'))
    proc = host_server = None
    try:
        model_dir, image = export_tiny(a.size, tmp)
        good, port = image.read_bytes(), free_port()
        host_server, host = hosts(good)
        proc = start_server(model_dir, port, max_pixels=a.max_pixels, max_batch=a.max_batch, backend=a.backend,
                            mmap_threshold=a.mmap_threshold)
        for _ in range(5): request(port, 'POST', '/predict', good, {'Content-Type': 'image/png'})  # warm up
        base = status_kb(proc.pid, 'VmRSS')
        honest = [('valid image', 'POST', '/predict', good, {'Content-Type': 'image/png'})]
        mon, statuses, t0 = Monitor(port, proc.pid), collections.defaultdict(collections.Counter), time.monotonic()
        try:
            for name, phase in [('honest load', lambda: flood(port, honest, 300, statuses, 'honest load')),
                                ('strips', lambda: strips(port, statuses)),
                                ('slow headers', lambda: slow_headers(port, host, statuses)),
                                ('half-open', lambda: half_open(port, a.half_open, a.seconds, statuses)),
                                ('flood', lambda: flood(port, bad_requests(good, host), a.flood, statuses))]:
                mon.mark(name)
                phase()
        finally: mon.stop()
        n5xx = sum(v for k, c in statuses.items() if 'kinds' not in k and k != 'half-open'
                   for s, v in c.items() if isinstance(s, int) and s >= 500)
        res = dict(max_pixels=a.max_pixels, max_batch=a.max_batch, seconds=round(time.monotonic() - t0, 1), statuses={k: dict(v) for k, v in statuses.items() if 'kinds' not in k},
                   n_5xx=n5xx, health_checks=len(mon.lat), health_failures=len(mon.fails),
                   health_max_latency_s=round(max(mon.lat), 3), rss_base_mb=round(base/1024),
                   peak_rss_growth_mb=round((max(mon.rss) - base)/1024, 1), by_phase_mb=mon.peaks(base), load_average=[round(x, 2) for x in os.getloadavg()])
        print(json.dumps(res, indent=1))
        kinds = collections.defaultdict(list)
        for k, v in statuses['flood kinds'].items(): kinds[k.rsplit(' ', 1)[0]].append(f"{k.rsplit(' ', 1)[1]} x{v}")
        print('flood, by kind:', '; '.join(f"{k}: {', '.join(v)}" for k, v in kinds.items()))
        ok = n5xx == 0 and not mon.fails and max(mon.lat) < 2 and res['peak_rss_growth_mb'] < 200
        print('PASS' if ok else 'FAIL', '(0 5xx, /health within 2 s throughout, peak RSS growth < 200 MB)')
        return 0 if ok else 1
    finally:
        if proc is not None: stop(proc)
        if host_server is not None: host_server.shutdown(); host_server.server_close()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': sys.exit(main())
