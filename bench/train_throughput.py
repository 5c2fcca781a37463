"""Training throughput: imgclf's default recipe vs the plain fastai recipe, same data, arch, size and batch size, one run.

    python bench/train_throughput.py                          # CPU: resnet18, 128 px, hymenoptera
    python bench/train_throughput.py --arch resnet34 --size 224 --bs 256 --repeat 40 --epochs 3   # on a GPU

plain fastai : ImageDataLoaders.from_folder(item_tfms=Resize(presize), batch_tfms=[*aug_transforms(size=size), Normalize])
               + vision_learner(dls, <torchvision arch>, pretrained=False) + fit_one_cycle   (fp32, as the tutorials)
imgclf       : imgclf.data.from_folder(size, presize, cache=<temp folder>) + imgclf.learner.build_learner(pretrained=False)
               + fit_one_cycle   (its defaults: the device found, bf16/fp16 mixed precision and channels_last on CUDA)

The figure is images/second of the *training* phase of each epoch (validation not counted), averaged over the
epochs after the first (a warm-up: cudnn autotuning, cache filling, worker start-up). Weights are random on both
sides (throughput does not depend on them, and torchvision weights cannot be downloaded offline).
`--repeat k` lists every training image k times, to make epochs long enough to time on a fast GPU.
On a GPU it also prints the fraction of the compute bound: training costs about 3x the forward pass, e.g. 22 GFLOP
per image for resnet34 at 224 px (scaled by (size/224)^2), against `--peak-tflops` (H100 dense bf16: 990).
"""
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # before torch loads: waiting threads sleep instead of spinning
import sys, time, json, shutil, argparse, platform, tempfile, warnings
from pathlib import Path
import torch

GFLOP_224 = {'resnet18': 10.9, 'resnet34': 22.0, 'resnet50': 24.6}  # forward+backward GFLOP per 224 px image (3x fwd, 2 FLOP/MAC)

def timer_cb():
    "A fastai callback timing the training phase of every epoch (with CUDA synchronisation)"
    from fastai.callback.core import Callback
    class TrainTimer(Callback):
        order = 100
        def before_fit(self): self.rates = []
        def _sync(self):
            if torch.cuda.is_available(): torch.cuda.synchronize()
        def before_train(self): self._sync(); self.n, self.t = 0, time.perf_counter()
        def after_batch(self):
            if self.training: self.n += self.xb[0].shape[0]
        def after_train(self): self._sync(); self.rates.append(self.n/(time.perf_counter() - self.t))
    return TrainTimer()

def repeated(path, k, valid, dest):
    "A copy of `path` in `dest` (hard links where possible) listing each training image `k` times"
    if k <= 1: return path
    for f in (path/'train').rglob('*'):
        if not f.is_file(): continue
        for i in range(k):
            t = dest/'train'/f.parent.name/f'{f.stem}_{i}{f.suffix}'; t.parent.mkdir(parents=True, exist_ok=True)
            try: os.link(f, t)
            except OSError: shutil.copy(f, t)
    shutil.copytree(path/valid, dest/valid)
    return dest

def plain_fastai(path, a, valid):
    import torchvision
    from fastai.vision.all import ImageDataLoaders, Resize, aug_transforms, Normalize, imagenet_stats, vision_learner
    dls = ImageDataLoaders.from_folder(path, train='train', valid=valid, bs=a.bs, num_workers=a.num_workers,
                                       item_tfms=Resize(a.presize), batch_tfms=[*aug_transforms(size=a.size), Normalize.from_stats(*imagenet_stats)])
    return vision_learner(dls, getattr(torchvision.models, a.arch), pretrained=False)

def imgclf_recipe(path, a, valid):
    from imgclf.data import from_folder
    from imgclf.learner import build_learner
    dls = from_folder(path, valid=valid, size=a.size, presize=a.presize, bs=a.bs, num_workers=a.num_workers,
                      cache=tempfile.mkdtemp(dir=a.tmp, prefix='cache-'))
    return build_learner(dls, a.arch, pretrained=False, device=a.device)

def measure(make, path, a, valid):
    t = time.perf_counter(); learn = make(path, a, valid); build = time.perf_counter() - t
    cb = timer_cb()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(a.epochs, 1e-3, cbs=cb)
    warm = cb.rates[1:] or cb.rates
    return dict(images_per_s=sum(warm)/len(warm), epochs=[round(r, 1) for r in cb.rates], build_s=round(build, 1),
                device=str(learn.dls.device), precision=getattr(learn, 'imgclf', {}).get('precision', 'fp32'))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--path', default=None, help='dataset with train/ and val/ or valid/ (default: shared hymenoptera)')
    p.add_argument('--arch', default='resnet18', choices=list(GFLOP_224))
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--presize', type=int, default=None, help='default: size*460/224, as fastai presizes 460 for 224')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--epochs', type=int, default=3, help='the first is a warm-up')
    p.add_argument('--repeat', type=int, default=1, help='list each training image this many times')
    p.add_argument('--num-workers', type=int, default=None, help="DataLoader workers (default: fastai's, min(16, cores))")
    p.add_argument('--device', default=None, help="imgclf's device (default: cuda, then mps, then cpu); plain fastai picks its own")
    p.add_argument('--peak-tflops', type=float, default=990., help='compute bound of the GPU (H100 SXM dense bf16: 990)')
    p.add_argument('--only', choices=['fastai', 'imgclf'], default=None)
    p.add_argument('--json', default=None)
    a = p.parse_args()
    a.presize = a.presize or int(round(a.size*460/224))
    from imgclf.core import shared_data
    path = Path(a.path) if a.path else shared_data('hymenoptera')
    if path is None: sys.exit('no dataset: pass --path')
    valid = next(v for v in ('val', 'valid') if (path/v).is_dir())
    warnings.filterwarnings('ignore')
    a.tmp = Path(tempfile.mkdtemp(prefix='imgclf-bench-train-'))  # repeated data and caches, removed at the end
    try: run(a, path, valid)
    finally: shutil.rmtree(a.tmp, ignore_errors=True)

def run(a, path, valid):
    data = repeated(path, a.repeat, valid, a.tmp/'data')
    import fastai
    cond = dict(arch=a.arch, size=a.size, presize=a.presize, bs=a.bs, epochs=a.epochs, repeat=a.repeat, num_workers=a.num_workers,
                cores=os.cpu_count(), torch_threads=torch.get_num_threads(), load_before=os.getloadavg(), torch=torch.__version__,
                fastai=fastai.__version__, python=platform.python_version(),
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, path=str(path))
    print('conditions:', json.dumps(cond), flush=True)
    res = {}
    for name, make in (('fastai', plain_fastai), ('imgclf', imgclf_recipe)):
        if a.only and a.only != name: continue
        r = res[name] = measure(make, data, a, valid)
        line = f"{'plain fastai' if name == 'fastai' else 'imgclf      '}: {r['images_per_s']:8.1f} images/s  ({r['device']}, {r['precision']}; epochs: {r['epochs']})"
        if 'cuda' in r['device']:
            tflops = r['images_per_s']*GFLOP_224[a.arch]*(a.size/224)**2/1e3
            r['fraction_of_peak'] = tflops/a.peak_tflops
            line += f"  {tflops:.0f} TFLOP/s = {100*r['fraction_of_peak']:.1f}% of {a.peak_tflops:.0f}"
        print(line, flush=True)
    if len(res) == 2: print(f"ratio imgclf / plain fastai: {res['imgclf']['images_per_s']/res['fastai']['images_per_s']:.2f}x")
    if a.json: Path(a.json).write_text(json.dumps(dict(conditions=cond, results=res), indent=2))

if __name__ == '__main__': main()
