"""imgclf's default training recipe vs plain fastai's `fine_tune`, on several real datasets, and the experiments that chose it.

    python bench/recipe.py                         # the comparison: every dataset, imgclf default vs plain fastai
    python bench/recipe.py --datasets pneumonia    # one dataset
    python bench/recipe.py exp --dataset digits --lr 2e-3 --lr-mult 10 --epochs 4 --seeds 0 1   # one experiment (a lever)
    python bench/recipe.py time --dataset pneumonia --sizes 32 48 64 96                        # seconds per epoch
    python bench/recipe.py finder --datasets pets hymenoptera --seeds 42 0 1   # the LR finder's check of 2e-3, two ways

Datasets (offline): PneumoniaMNIST from ../shared/data (1:9 training split, official val and test), hymenoptera
(ants/bees photos, valid only), the embedded digits (`imgclf demo`'s), mnist_tiny (valid only), Fashion-MNIST from
Debian's `dataset-fashion-mnist` package when installed (300/100 per class from its training set, 100 per class
test from t10k), and `fashion_imb` (the same with a 10:1 long-tailed training split, balanced valid and test).
Every choice is made on validation figures; test (held-out) figures are printed as the outcome only.
"""
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # before torch loads: waiting threads sleep instead of spinning
import sys, gzip, time, json, shutil, argparse, platform, tempfile, warnings
from pathlib import Path
import numpy as np, torch

# --- the imgclf API this script uses (one block: the library's module map may move) ---
from imgclf.core import set_seed, shared_data
from imgclf.datasets import npz_to_folder, sample_digits, arrays_to_folder, image_files
from imgclf.data import from_folder
from imgclf.loaders import class_weights
from imgclf.models import body_for
from imgclf.learner import build_learner, fit_head, fit_unfrozen
from imgclf.lr_find import find_lr
from imgclf.pipeline import train
import imgclf.pipeline as pipeline  # finder mode: stops train() at its LR check
from imgclf.lr_find import loss_rise
# ---

ARCH = 'efficientnet_lite0'
FASHION = Path('/usr/share/datasets/fashion-mnist')

# --- datasets ---------------------------------------------------------------------------------------------------
def _idx(fn):
    with gzip.open(fn) as f: b = f.read()
    if b[2] == 8 and b[3] == 3: return np.frombuffer(b, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(b, np.uint8, offset=8)

def _per_class(y, counts, rng, exclude=None):
    idx = []
    for c, n in enumerate(counts):
        pool = np.setdiff1d(np.flatnonzero(y == c), exclude if exclude is not None else [])
        idx += list(rng.choice(pool, n, replace=False))
    return np.array(idx)

def fashion(root, imbalanced=False):
    "Fashion-MNIST subsets: 300 (or 300 -> 30, long-tailed) train + 100 valid per class from train, 100 test per class from t10k"
    dest = root/('fashion_imb' if imbalanced else 'fashion')
    if (dest/'test').is_dir(): return dest
    X, y = _idx(FASHION/'train-images-idx3-ubyte.gz'), _idx(FASHION/'train-labels-idx1-ubyte.gz')
    Xt, yt = _idx(FASHION/'t10k-images-idx3-ubyte.gz'), _idx(FASHION/'t10k-labels-idx1-ubyte.gz')
    rng = np.random.default_rng(0)
    tr = _per_class(y, [round(300*10**(-c/9)) if imbalanced else 300 for c in range(10)], rng)
    va = _per_class(y, [100]*10, rng, exclude=tr)
    te = _per_class(yt, [100]*10, rng)
    names = ['tshirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot']
    for s, XX, yy, ii in (('train', X, y, tr), ('valid', X, y, va), ('test', Xt, yt, te)):
        arrays_to_folder(XX[ii], yy[ii], dest, s, vocab=names, overwrite=True)
    return dest

def datasets(root):
    "{name: dict(path, valid, test, size)}: the sets this machine has"
    root = Path(root); res = {}
    npz = shared_data('pneumoniamnist.npz', quiet=True)
    if npz: res['pneumonia'] = dict(path=npz_to_folder(npz, root/'pneumoniamnist', vocab=['normal', 'pneumonia'],
                                                       splits={'train': 'train', 'val': 'valid', 'test': 'test'}), valid='valid', test='test', size=64)
    hym = shared_data('hymenoptera', quiet=True)
    if hym: res['hymenoptera'] = dict(path=hym, valid='val', test=None, size=128)  # compare: imgclf's own size (224)
    res['digits'] = dict(path=sample_digits(root/'digits'), valid='valid', test='test', size=48)
    tiny = shared_data('mnist_tiny', quiet=True)
    if tiny: res['mnist_tiny'] = dict(path=tiny, valid='valid', test=None, size=48)
    if FASHION.is_dir():
        res['fashion'] = dict(path=fashion(root), valid='valid', test='test', size=48)
        res['fashion_imb'] = dict(path=fashion(root, True), valid='valid', test='test', size=48)
    return res

# --- training -----------------------------------------------------------------------------------------------------
def load(ds, size, seed, oversample=False, preset='default', bs=64):
    return from_folder(ds['path'], valid=ds['valid'], test=ds['test'], size=size, bs=bs, num_workers=0, preset=preset,
                       oversample=oversample, cache='memory', seed=seed)

def _epoch_cb():
    "Records valid loss/metrics after each epoch and keeps the weights of the epoch with the lowest validation loss"
    from fastai.callback.core import Callback
    class Keeper(Callback):
        order = 65
        def __init__(self): self.hist, self.best, self.best_state, self.best_epoch, self.times = [], float('inf'), None, None, []
        def before_epoch(self): self.t = time.perf_counter()
        def after_epoch(self):
            names, vals = self.recorder.metric_names[1:-1], self.recorder.values[-1]
            row = dict(zip(names, map(float, vals))); row['frozen'] = not all(p.requires_grad for p in self.learn.model.parameters())
            self.hist.append(row); self.times.append(time.perf_counter() - self.t)
            if not row['frozen'] and row['valid_loss'] < self.best:
                self.best, self.best_epoch = row['valid_loss'], len(self.hist)
                self.best_state = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}
    return Keeper()

def _metrics(probs, targs, threshold=None):
    from sklearn.metrics import balanced_accuracy_score
    p = probs.numpy(); t = targs.numpy()
    pred = (p[:, 1] >= threshold).astype(int) if threshold is not None else p.argmax(1)
    nll = float(-np.log(np.clip(p[np.arange(len(t)), t], 1e-7, 1)).mean())
    return dict(acc=round(float((pred == t).mean()), 4), bal=round(float(balanced_accuracy_score(t, pred)), 4), nll=round(nll, 4))

def _threshold(probs, targs):
    "The threshold on P(class 1) with the best balanced accuracy on these (validation) predictions"
    from sklearn.metrics import roc_curve
    fpr, tpr, th = roc_curve(targs.numpy(), probs[:, 1].numpy())
    i = int(np.argmax(tpr - fpr)); return float(min(th[i], 1.0))

def _preds(learn, dl, tta):
    with learn.no_bar(), learn.no_logging():
        if not tta: return learn.get_preds(dl=dl)
        return learn.tta(dl=dl, item_tfms=list(dl.after_item.fs), batch_tfms=list(learn.dls.train.after_batch.fs))

def evaluate(learn, dls, tta=False):
    "{valid: metrics, test: metrics (when there is a test set), valid_th / test_th for two classes}"
    pv, tv = _preds(learn, dls.valid, tta); res = dict(valid=_metrics(pv, tv))
    if dls.test_idx: pt, tt = _preds(learn, dls[2], tta); res['test'] = _metrics(pt, tt)
    if pv.shape[1] == 2:
        th = _threshold(pv, tv); res['threshold'] = round(th, 4); res['valid_th'] = _metrics(pv, tv, th)
        if dls.test_idx: res['test_th'] = _metrics(pt, tt, th)
    return res

def imgclf_run(ds, seed=0, size=None, lr=2e-3, lr_mult=10, freeze_epochs=1, epochs=4, balance='none', smoothing=0.,
               tta=False, preset='default', num_it=100, bs=64):
    "One training run of a recipe: everything measured on the same model (last epoch, best-validation-loss epoch, TTA)"
    from fastai.losses import CrossEntropyLossFlat
    size = size or ds['size']; t0 = time.perf_counter(); set_seed(seed)
    dls = load(ds, size, seed, oversample=balance == 'oversample', preset=preset, bs=bs)
    w = class_weights(dls) if balance == 'weights' else None
    learn = build_learner(dls, ARCH, pretrained=True, loss_func=CrossEntropyLossFlat(weight=w, label_smoothing=smoothing), channels_last=True)
    t1 = time.perf_counter(); finder = None
    if lr in ('finder', 'valley', 'minimum', 'steep', 'slide'):
        finder = find_lr(learn, num_it=num_it, show_plot=False)
        lr = finder.lr if lr == 'finder' else finder.suggestions[lr]
    t2 = time.perf_counter(); keep = _epoch_cb()
    with learn.no_bar(), learn.no_logging():
        if freeze_epochs: fit_head(learn, freeze_epochs, lr, pct_start=0.99, cbs=keep)
        fit_unfrozen(learn, epochs, slice(lr/2/lr_mult, lr/2) if freeze_epochs else slice(lr/lr_mult, lr), pct_start=0.3, div=5., cbs=keep)
    t3 = time.perf_counter()
    res = dict(last=evaluate(learn, dls))
    if tta: res['tta'] = evaluate(learn, dls, tta=True)
    t4 = time.perf_counter()
    if keep.best_state is not None and keep.best_epoch != len(keep.hist):
        learn.model.load_state_dict(keep.best_state); res['best'] = evaluate(learn, dls)
    else: res['best'] = res['last']
    return dict(kind='imgclf', size=size, seed=seed, lr=lr, lr_mult=lr_mult, freeze_epochs=freeze_epochs, epochs=epochs, balance=balance,
                smoothing=smoothing, finder=finder.suggestions if finder else None, best_epoch=keep.best_epoch, hist=keep.hist,
                epoch_s=[round(t, 1) for t in keep.times], data_s=round(t1-t0, 1), lr_find_s=round(t2-t1, 1), train_s=round(t3-t2, 1),
                eval_s=round(t4-t3, 1), n_train=len(dls.train_ds), load=os.getloadavg()[0], **res)

def _effnet(pretrained=True):
    "EfficientNet-Lite0 (imgclf's offline ImageNet weights) as a torchvision-style model, for fastai's `vision_learner`"
    return torch.nn.Sequential(body_for(ARCH, pretrained=pretrained), torch.nn.AdaptiveAvgPool2d(1))

def fastai_run(ds, seed=0, size=None, epochs=4, bs=64, preset='default'):
    "Plain fastai: `vision_learner` with the same body and data + `learn.fine_tune(epochs)`, every default"
    from fastai.vision.learner import vision_learner, create_head
    from fastai.metrics import accuracy
    from fastai.callback.channelslast import ChannelsLast
    size = size or ds['size']; t0 = time.perf_counter(); set_seed(seed)
    dls = load(ds, size, seed, preset=preset, bs=bs)
    # custom_head = the head vision_learner would build (fastai cannot count this body's features itself)
    learn = vision_learner(dls, _effnet, metrics=accuracy, cbs=ChannelsLast(), custom_head=create_head(1280, dls.c))
    t1 = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(epochs)
    t2 = time.perf_counter()
    return dict(kind='fastai', size=size, seed=seed, epochs=epochs, data_s=round(t1-t0, 1), train_s=round(t2-t1, 1),
                load=os.getloadavg()[0], last=evaluate(learn, dls))

# --- epoch timing ---------------------------------------------------------------------------------------------------
def time_epochs(ds, sizes, seed=0, n_batches=None, bs=64):
    "Seconds per training epoch (frozen and unfrozen, validation included) at each size"
    res = []
    for s in sizes:
        set_seed(seed); t0 = time.perf_counter(); dls = load(ds, s, seed, bs=bs); td = time.perf_counter() - t0
        learn = build_learner(dls, ARCH, pretrained=True, channels_last=True); keep = _epoch_cb()
        with learn.no_bar(), learn.no_logging():
            fit_head(learn, 1, 1e-3, cbs=keep); fit_unfrozen(learn, 1, slice(1e-5, 1e-3), cbs=keep)
        res.append(dict(size=s, n_train=len(dls.train_ds), n_valid=len(dls.valid_ds), data_s=round(td, 1),
                        frozen_s=round(keep.times[0], 1), unfrozen_s=round(keep.times[1], 1), load=os.getloadavg()))
        print(json.dumps(res[-1]), flush=True)
    return res

# --- the comparison --------------------------------------------------------------------------------------------
def imgclf_default(ds, seed=0, size=None, out=None, **kwargs):
    "`imgclf train DATA --size SIZE` with every other option at its default: its held-out figures and wall time"
    t0 = time.perf_counter()
    m = train(ds['path'], out, size=size or ds['size'], valid=ds['valid'], test=ds['test'] or '', seed=seed, review=0,
              overwrite=True, progress=False, quiet=True, num_workers=0, **kwargs)
    held = m.get('test', m['valid'])
    return dict(kind='imgclf', seed=seed, size=m['size'], acc=held['accuracy'], bal=held.get('balanced_accuracy'),
                on='test' if 'test' in m else 'valid', valid=m['valid']['accuracy'], seconds=round(time.perf_counter()-t0, 1),
                epochs=m.get('recipe', {}).get('epochs', {}).get('value'), load=os.getloadavg()[0], recipe=m.get('recipe'))

def compare(ds, a):
    "For each dataset: imgclf's default vs plain fastai's fine_tune at the same size and epochs, side by side"
    names = a.datasets or list(ds)
    print(f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    print(f"{'dataset':12s} {'size':>4s} {'on':5s} | {'imgclf acc':>10s} {'bal':>6s} {'time':>6s} | {'fastai acc':>10s} {'bal':>6s} {'time':>6s} | load")
    for n in names:
        for s in a.seeds:
            out = Path(tempfile.mkdtemp(prefix=f'imgclf-bench-recipe-{n}-'))
            if n == 'hymenoptera' and not a.size: ds[n] = {**ds[n], 'size': None}  # photos: the default size
            try: r = imgclf_default(ds[n], s, a.size, out, **({'time_budget': a.time_budget} if a.time_budget else {}))
            finally: shutil.rmtree(out, ignore_errors=True)
            f = fastai_run(ds[n], s, r['size'], epochs=max(1, (r['epochs'] or 4)), bs=a.bs)
            fh = f['last'].get('test', f['last']['valid']); fs = f['data_s'] + f['train_s']
            print(f"{n:12s} {r['size']:4d} {r['on']:5s} | {r['acc']:10.4f} {r['bal'] or float('nan'):6.4f} {r['seconds']:5.0f}s | "
                  f"{fh['acc']:10.4f} {fh['bal']:6.4f} {fs:5.0f}s | {os.getloadavg()[0]:.1f}", flush=True)
            _log(dict(mode='compare', dataset=n, imgclf=r, fastai=f), a.log)

# --- the LR finder's check of 2e-3 -------------------------------------------------------------------------------
def pets_standin(root):
    "The pets tutorial's stand-in: hymenoptera's photos in one folder, named `ant_N.jpg` / `bee_N.jpg`"
    dest = Path(root)/'pets_standin'
    if not dest.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=root))
        photos = [f for f in image_files(shared_data('hymenoptera')) if f.suffix == '.jpg']
        for b, c in [('ant', 'ants'), ('bee', 'bees')]:
            for n, f in enumerate([f for f in photos if f.parent.name == c], 1): shutil.copy(f, tmp/f'{b}_{n}{f.suffix}')
        tmp.rename(dest)
    return dict(path=dest, kw=dict(label_re=r'^(.*)_\d+\..*$', valid_pct=0.2))

def smoothed_rule(res, prior=2e-3):
    "The recipe's first check: the smoothed curve at `prior` above the lowest of its first tenth (at least 3 points)"
    x, y = np.log10(np.asarray(res.lrs[:len(res.loss)], dtype=float)), np.asarray(res.loss, dtype=float)
    return float(np.interp(np.log10(prior), x, y, right=np.inf)) > float(np.min(y[:max(3, len(y)//10)]))

class _Found(Exception): pass

def finder_check(ds, names, seeds):
    "For each dataset and seed, the finder `train(DATA)` runs (stopped there): the smoothed-curve check and `loss_rise`"
    real = pipeline.recipe_lr
    def catch(res, *a, **k): raise _Found(res)
    print(f"{'dataset':12s} {'seed':>4s} {'batches':>7s} | {'smoothed says risen':>19s} | {'loss_rise':>9s} {'> 2':>5s} | valley")
    pipeline.recipe_lr = catch
    try:
        for n in names:
            for s in seeds:
                d, out, res = ds[n], Path(tempfile.mkdtemp(prefix='imgclf-bench-finder-')), None
                kw = d.get('kw') or dict(valid=d['valid'], test=d['test'] or '')
                try: train(d['path'], out, seed=s, review=0, overwrite=True, progress=False, quiet=True, **kw)
                except _Found as e: res = e.args[0]
                finally: shutil.rmtree(out, ignore_errors=True)
                if res is None: raise RuntimeError(f"{n}: train() trained without checking 2e-3 (lr not 'auto'?)")
                z = loss_rise(res, 2e-3)
                print(f"{n:12s} {s:4d} {len(res.loss):7d} | {str(smoothed_rule(res)):>19s} | {z:9.2f} {str(z > 2):>5s} | "
                      f"{res.lr:.1e}", flush=True)
    finally: pipeline.recipe_lr = real

# --- main --------------------------------------------------------------------------------------------------------
def _log(rec, fn):
    if fn:
        Path(fn).parent.mkdir(parents=True, exist_ok=True)
        with open(fn, 'a') as f: f.write(json.dumps(rec) + '\n')

def _short(r):
    o = r['best'] if 'best' in r else r['last']; l = r['last']
    s = f"{r['kind']:6s} seed {r['seed']} valid acc {l['valid']['acc']:.4f} bal {l['valid']['bal']:.4f} nll {l['valid']['nll']:.3f}"
    if 'test' in l: s += f" | test acc {l['test']['acc']:.4f} bal {l['test']['bal']:.4f}"
    if 'best' in r: s += f" | best-epoch {r['best_epoch']} valid acc {o['valid']['acc']:.4f} bal {o['valid']['bal']:.4f}"
    if 'tta' in r: s += f" | tta valid acc {r['tta']['valid']['acc']:.4f} bal {r['tta']['valid']['bal']:.4f}"
    if 'valid_th' in l: s += f" | th {l['threshold']:.3f} valid bal {l['valid_th']['bal']:.4f}"
    return s + f" | train {r['train_s']}s load {r['load']:.1f}"

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('mode', nargs='?', default='compare', choices=['compare', 'exp', 'time', 'finder'])
    p.add_argument('--dataset', default='digits'); p.add_argument('--datasets', nargs='*')
    p.add_argument('--seeds', type=int, nargs='*', default=[0]); p.add_argument('--size', type=int)
    p.add_argument('--sizes', type=int, nargs='*', default=[32, 48, 64])
    p.add_argument('--lr', default='2e-3'); p.add_argument('--lr-mult', type=float, default=10)
    p.add_argument('--freeze-epochs', type=int, default=1); p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--balance', default='none', choices=['none', 'weights', 'oversample'])
    p.add_argument('--smoothing', type=float, default=0.); p.add_argument('--tta', action='store_true')
    p.add_argument('--preset', default='default'); p.add_argument('--bs', type=int, default=64)
    p.add_argument('--fastai', action='store_true', help='exp: plain fastai fine_tune(epochs) instead')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--time-budget', help="compare: imgclf's run gets this time budget (e.g. 10m)")
    p.add_argument('--root', default=str(Path(tempfile.gettempdir())/'imgclf-bench-recipe'))
    p.add_argument('--log', help='append one JSON line per run to this file')
    a = p.parse_args()
    torch.set_num_threads(a.threads); warnings.filterwarnings('ignore')
    ds = datasets(a.root)
    if a.mode == 'time':
        for r in time_epochs(ds[a.dataset], a.sizes, bs=a.bs): _log(dict(mode='time', dataset=a.dataset, **r), a.log)
        return
    if a.mode == 'compare': return compare(ds, a)
    if a.mode == 'finder':
        if shared_data('hymenoptera', quiet=True): ds['pets'] = pets_standin(a.root)
        return finder_check(ds, a.datasets or list(ds), a.seeds)
    if a.mode == 'exp':
        for s in a.seeds:
            lr = a.lr if a.lr in ('finder', 'valley', 'minimum', 'steep', 'slide') else float(a.lr)
            r = (fastai_run(ds[a.dataset], s, a.size, a.epochs, bs=a.bs, preset=a.preset) if a.fastai else
                 imgclf_run(ds[a.dataset], s, a.size, lr, a.lr_mult, a.freeze_epochs, a.epochs, a.balance, a.smoothing, a.tta, a.preset, bs=a.bs))
            r.update(dataset=a.dataset); print(a.dataset, _short(r), flush=True); _log(r, a.log)
        return

if __name__ == '__main__': main()
