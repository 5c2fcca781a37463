"""DDP overhead: images/second of training through `imgclf.distributed` under torchrun vs the same training in one plain process.

    python bench/distributed.py                                   # CPU smoke run: resnet18, 32 px, gloo
    python bench/distributed.py --arch resnet34 --size 224 --bs 256 --n-train 400 --repeat 8 --epochs 3   # one GPU (NCCL)
    python bench/distributed.py --arch resnet34 --size 224 --bs 256 --nproc 8 ...                        # 8 GPUs: scaling

plain : one process, `build_learner` + `fit_resumable` (imgclf's defaults: mixed precision and channels_last on CUDA)
ddp   : `torchrun --nproc_per_node N`, the same calls inside `distributed_context(learn, force=True)` (DDP, NCCL on
        CUDA / gloo on CPU, SyncBatchNorm on CUDA, `ShardedDL`, metrics gathered), `bs` per process

Both train on the embedded digits (`imgclf.datasets.sample_digits`, upscaled to `--size`) through the in-memory
presize cache, so the data pipeline is cheap and the figure is the model's. The figure is images/second of the
*training* phase of each epoch (all ranks together), the first epoch being a warm-up. With `--nproc 1` it prints
the overhead of DDP (goal on one H100: under 5%); with N processes, the scaling efficiency against N x plain.
"""
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import sys, time, json, shutil, socket, argparse, subprocess, tempfile
from pathlib import Path
import torch

def timer_cb():
    "A fastai callback timing the training phase of every epoch (images of all ranks; CUDA synchronised)"
    from fastai.callback.core import Callback
    from imgclf.distributed import world_size
    class TrainTimer(Callback):
        order = 100
        def before_fit(self): self.rates = getattr(self, 'rates', [])
        def _sync(self):
            if torch.cuda.is_available(): torch.cuda.synchronize()
        def before_train(self): self._sync(); self.n, self.t = 0, time.perf_counter()
        def after_batch(self):
            if self.training: self.n += self.xb[0].shape[0]*world_size()
        def after_train(self): self._sync(); self.rates.append(self.n/(time.perf_counter() - self.t))
    return TrainTimer()

def worker(a):
    from imgclf.core import set_seed
    from imgclf.data import from_folder
    from imgclf.learner import build_learner
    from imgclf.distributed import distributed_context, rank_zero, rank_zero_first
    from imgclf.resumable import fit_resumable
    set_seed(0)
    with rank_zero_first(): dls = from_folder(a.data, size=a.size, bs=a.bs, num_workers=a.num_workers, preset='none', cache='memory')
    learn = build_learner(dls, a.arch, pretrained=False)
    timer = timer_cb(); learn.add_cb(timer)
    with distributed_context(learn, force=a.worker == 'ddp'), learn.no_bar(), learn.no_logging():
        fit_resumable(learn, a.epochs, 1e-3, Path(a.out)/a.worker)
        device = str(next(learn.model.parameters()).device)
    if rank_zero():
        warm = timer.rates[1:] or timer.rates
        print('RESULT ' + json.dumps(dict(worker=a.worker, images_per_s=sum(warm)/len(warm), rates=timer.rates, device=device,
                                          bs=learn.dls.train.bs, accuracy=float(learn.recorder.values[-1][2]))), flush=True)

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def run(a, kind, data, out):
    args = [str(Path(__file__).resolve()), '--worker', kind, '--data', str(data), '--out', str(out), '--arch', a.arch, '--size', str(a.size),
            '--bs', str(a.bs), '--epochs', str(a.epochs), '--num-workers', str(a.num_workers)]
    cmd = [sys.executable, *args] if kind == 'plain' else [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(a.nproc),
           '--master_addr', '127.0.0.1', '--master_port', str(free_port()), *args]
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'TMPDIR': str(out.parent)}  # torchrun's log folders go with the rest
    if not torch.cuda.is_available(): env.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1)//a.nproc)))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith('RESULT ')]
    if p.returncode or not lines: sys.exit(f"{kind} run failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return json.loads(lines[-1][7:])

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='resnet18'); p.add_argument('--size', type=int, default=32); p.add_argument('--bs', type=int, default=32)
    p.add_argument('--epochs', type=int, default=3); p.add_argument('--nproc', type=int, default=1)
    p.add_argument('--n-train', type=int, default=60, help='training digits per class'); p.add_argument('--repeat', type=int, default=1, help='list the training images this many times')
    p.add_argument('--num-workers', type=int, default=0)
    p.add_argument('--worker', choices=['plain', 'ddp']); p.add_argument('--data'); p.add_argument('--out')
    a = p.parse_args()
    if a.worker: return worker(a)
    tmp = Path(tempfile.mkdtemp(prefix='imgclf-bench-ddp-'))  # data and runs, removed at the end
    try: compare(a, tmp)
    finally: shutil.rmtree(tmp, ignore_errors=True)

def compare(a, tmp):
    from imgclf.datasets import sample_digits
    data = sample_digits(tmp/'digits', n_train=a.n_train, n_valid=20, n_test=0)
    for i in range(1, a.repeat):
        for f in list((data/'train').rglob('*.png')):
            if '_r' not in f.stem: os.link(f, f.with_name(f'{f.stem}_r{i}.png'))
    print(f"{a.arch} {a.size}px bs {a.bs}/process, {sum(1 for _ in (data/'train').rglob('*.png'))} training images, {a.epochs} epochs (first = warm-up), "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}")
    plain, ddp = run(a, 'plain', data, tmp/'runs'), run(a, 'ddp', data, tmp/'runs')
    for r in (plain, ddp): print(f"  {r['worker']:5s}: {r['images_per_s']:9.1f} images/s (epochs: {', '.join(f'{x:.1f}' for x in r['rates'])}) on {r['device']}, valid accuracy {r['accuracy']:.3f}")
    ratio = ddp['images_per_s']/(a.nproc*plain['images_per_s'])
    if a.nproc == 1: print(f"DDP overhead: {100*(1-ratio):.1f}% (ddp/plain = {ratio:.3f}; goal: overhead under 5%)")
    else: print(f"scaling efficiency with {a.nproc} processes: {ratio:.3f} (ddp / ({a.nproc} x plain))")

if __name__ == '__main__': main()
