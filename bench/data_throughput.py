"""Data throughput: plain fastai presizing vs imgclf with the presize cache, in the same run.

    python bench/data_throughput.py [--path ../shared/data/hymenoptera] [--bs 64] [--epochs 2]

Both pipelines use the same presize (460), final size (224), augmentation settings (fastai's
`aug_transforms` defaults), batch size and number of workers. Each runs `--epochs` full epochs over the
training set; the first is a warm-up (and, for imgclf, the DataLoaders build fills the cache), the figure
is images/second over the remaining, warm epochs. It prints both and their ratio, plus the conditions
(cores, load average, threads), because on a shared machine the load moves the figures.
"""
import os, sys, time, json, shutil, argparse, platform, tempfile, warnings
from pathlib import Path
import torch

def epoch_rate(dl, epochs):
    "images/s over epochs 2..`epochs` of `dl` (epoch 1 is a warm-up), and the per-epoch rates"
    rates = []
    for e in range(epochs):
        n, t = 0, time.perf_counter()
        for xb, yb in dl: n += len(xb)
        if e: rates.append(n/(time.perf_counter()-t))
    return sum(rates)/len(rates), rates

def fastai_dls(path, bs, presize, size, num_workers):
    from fastai.vision.all import ImageDataLoaders, Resize, aug_transforms, Normalize, imagenet_stats
    return ImageDataLoaders.from_folder(path, train='train', valid='val', bs=bs, num_workers=num_workers, device='cpu',
                                        item_tfms=Resize(presize), batch_tfms=[*aug_transforms(size=size), Normalize.from_stats(*imagenet_stats)])

def imgclf_dls(path, bs, presize, size, num_workers, cache, fastai_aug=False):
    from imgclf.data import from_folder
    from fastai.vision.augment import aug_transforms
    return from_folder(path, bs=bs, size=size, presize=presize, num_workers=num_workers, device='cpu', cache=cache,
                       batch_tfms=aug_transforms(size=size) if fastai_aug else None)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--path', default=None, help='dataset with train/ and val/ (default: shared hymenoptera)')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--presize', type=int, default=460)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--num-workers', type=int, default=None, help="DataLoader workers (default: fastai's, min(16, cores))")
    p.add_argument('--epochs', type=int, default=2, help='epochs per pipeline; the first is a warm-up')
    p.add_argument('--cache', default=None, help="imgclf cache: a folder (default: a fresh temp folder) or 'memory'")
    p.add_argument('--breakdown', action='store_true', help="also measure imgclf's cache with fastai's aug_transforms, and imgclf without the cache")
    p.add_argument('--json', default=None, help='also write the figures to this JSON file')
    a = p.parse_args()
    from imgclf.core import shared_data
    path = Path(a.path) if a.path else shared_data('hymenoptera')
    if path is None: sys.exit('no dataset: pass --path')
    warnings.filterwarnings('ignore')
    tmp = None if a.cache else tempfile.mkdtemp(prefix='imgclf-bench-cache-')  # removed at the end
    try: run(a, path, a.cache or tmp)
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)

def run(a, path, cache):
    cond = dict(cores=os.cpu_count(), torch_threads=torch.get_num_threads(), load_before=os.getloadavg(),
                torch=torch.__version__, python=platform.python_version(), bs=a.bs, presize=a.presize, size=a.size,
                num_workers=a.num_workers, epochs=a.epochs, path=str(path))
    import fastai; cond['fastai'] = fastai.__version__
    dls = fastai_dls(path, a.bs, a.presize, a.size, a.num_workers)
    base, base_epochs = epoch_rate(dls.train, a.epochs)
    print(f"plain fastai : {base:7.1f} images/s  (warm epochs: {', '.join(f'{r:.1f}' for r in base_epochs)})", flush=True)
    t = time.perf_counter(); dls = imgclf_dls(path, a.bs, a.presize, a.size, a.num_workers, cache); build = time.perf_counter()-t
    ours, our_epochs = epoch_rate(dls.train, a.epochs)
    print(f"imgclf+cache : {ours:7.1f} images/s  (warm epochs: {', '.join(f'{r:.1f}' for r in our_epochs)}; build + cache fill {build:.1f} s)")
    print(f"ratio        : {ours/base:7.2f}x")
    res = dict(fastai=base, imgclf=ours, ratio=ours/base, build_s=build)
    if a.breakdown:
        r, _ = epoch_rate(imgclf_dls(path, a.bs, a.presize, a.size, a.num_workers, cache, fastai_aug=True).train, a.epochs)
        print(f"  cache + fastai aug_transforms : {r:7.1f} images/s ({r/base:.2f}x)"); res['cache_fastai_aug'] = r
        r, _ = epoch_rate(imgclf_dls(path, a.bs, a.presize, a.size, a.num_workers, None).train, a.epochs)
        print(f"  no cache + FastAugment        : {r:7.1f} images/s ({r/base:.2f}x)"); res['no_cache_fast_aug'] = r
    cond['load_after'] = os.getloadavg()
    print('conditions   :', json.dumps(cond))
    if a.json: Path(a.json).write_text(json.dumps(dict(res, conditions=cond), indent=2))

if __name__ == '__main__': main()
