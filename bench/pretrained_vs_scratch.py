"""Transfer learning vs training from scratch on PneumoniaMNIST, same data, same budget, judged on the official test split.

    python bench/pretrained_vs_scratch.py                   # efficientnet_lite0, 64 px, 4 epochs, class weights
    python bench/pretrained_vs_scratch.py --recipe tutorial # the tutorials' frozen-then-unfrozen recipe instead
    python bench/pretrained_vs_scratch.py --size 96 --epochs 8 --only pretrained   # a longer run, for the best figure

Both runs use the same arch, images ('medical' augmentation preset: no flips), batch size, epochs, learning rate
and class balancing; only the starting weights differ:
- `--recipe same` (default): everything trainable, `fit_one_cycle(epochs, lr)` (for the pretrained model: `unfreeze` first);
- `--recipe tutorial`: pretrained `fine_tune(epochs - 1, lr, freeze_epochs=1)`, scratch `fit_one_cycle(epochs, lr)`.
The training split here is 1:9 normal:pneumonia (the test split 3:5), so the loss is class-weighted by default
(`--balance weights`; or `oversample`, `none`). `--lr find` picks each learner's rate with `find_lr`.
Test accuracy is at the argmax, and separately with the decision threshold tuned on the validation set (never on
the test set). The published MedMNIST v2 test accuracies for the same test split are printed alongside.
"""
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # before torch loads: waiting threads sleep instead of spinning
import sys, time, json, random, argparse, platform, tempfile, warnings
from pathlib import Path
import numpy as np, torch

MEDMNIST = {'ResNet-18 (28 px)': 0.854, 'AutoKeras': 0.878, 'ResNet-50 (224 px)': 0.884, 'Google AutoML Vision': 0.946}

def subset(root, frac, seed=0):
    "A copy of `root` (hard links) keeping `frac` of each training class"
    dest = Path(tempfile.gettempdir())/f'imgclf-bench-pneumoniamnist-{frac}-{seed}'
    if dest.exists(): return dest
    rng = random.Random(seed)
    for split in ('train', 'valid', 'test'):
        for cdir in sorted((root/split).iterdir()):
            files = sorted(cdir.iterdir())
            if split == 'train': files = rng.sample(files, max(1, round(len(files)*frac)))
            (dest/split/cdir.name).mkdir(parents=True, exist_ok=True)
            for f in files: os.link(f, dest/split/cdir.name/f.name)
    return dest

def evaluate(learn, dls):
    "Test accuracy at argmax, at the threshold that is best on validation, and test ROC AUC"
    from sklearn.metrics import roc_auc_score
    with learn.no_bar(): (pv, tv), (pt, tt) = learn.get_preds(dl=dls[1]), learn.get_preds(dl=dls[2])
    pv, tv, pt, tt = pv[:, 1].numpy(), tv.numpy(), pt[:, 1].numpy(), tt.numpy()
    ths = np.linspace(0.02, 0.98, 97)
    th = float(ths[np.argmax([((pv >= t) == tv).mean() for t in ths])])
    return dict(test_acc=float(((pt >= 0.5) == tt).mean()), threshold=th, test_acc_tuned=float(((pt >= th) == tt).mean()),
                test_auc=float(roc_auc_score(tt, pt)), valid_acc=float(((pv >= 0.5) == tv).mean()))

def run(root, pretrained, a):
    from fastai.losses import CrossEntropyLossFlat
    from imgclf.core import set_seed
    from imgclf.data import from_folder
    from imgclf.loaders import class_weights
    from imgclf.learner import build_learner
    from imgclf.lr_find import find_lr
    set_seed(a.seed)
    dls = from_folder(root, test='test', size=a.size, bs=a.bs, num_workers=a.num_workers, preset='medical',
                      oversample=a.balance == 'oversample', cache='memory', seed=a.seed)
    loss = CrossEntropyLossFlat(weight=class_weights(dls)) if a.balance == 'weights' else None
    learn = build_learner(dls, a.arch, pretrained=pretrained, loss_func=loss)
    if pretrained and a.recipe == 'same': learn.unfreeze()
    t0 = time.perf_counter()
    lr = find_lr(learn, show_plot=False).lr if a.lr == 'find' else float(a.lr)
    t1 = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        if pretrained and a.recipe == 'tutorial': learn.fine_tune(a.epochs - 1, lr, freeze_epochs=1)
        else: learn.fit_one_cycle(a.epochs, lr)
    t2 = time.perf_counter()
    return dict(pretrained=pretrained, lr=lr, lr_find_s=round(t1-t0, 1), train_s=round(t2-t1, 1), n_train=len(dls.train_ds), **evaluate(learn, dls))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='efficientnet_lite0')
    p.add_argument('--size', type=int, default=64, help='training image size (the images are 28x28, upsampled)')
    p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--lr', default='3e-3', help="a learning rate, or 'find' for find_lr's recommendation per learner")
    p.add_argument('--recipe', choices=['same', 'tutorial'], default='same')
    p.add_argument('--balance', choices=['weights', 'oversample', 'none'], default='weights')
    p.add_argument('--train-fraction', type=float, default=1., help='train on this stratified fraction of the training split')
    p.add_argument('--num-workers', type=int, default=0)
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--only', choices=['pretrained', 'scratch'], default=None)
    p.add_argument('--json', default=None, help='also write the results here')
    a = p.parse_args()
    from imgclf.core import shared_data
    from imgclf.datasets import npz_to_folder
    npz = shared_data('pneumoniamnist.npz')
    if npz is None: sys.exit('no ../shared/data/pneumoniamnist.npz')
    warnings.filterwarnings('ignore')
    root = npz_to_folder(npz, Path(tempfile.gettempdir())/'imgclf-bench-pneumoniamnist', vocab=['normal', 'pneumonia'],
                         splits={'train': 'train', 'val': 'valid', 'test': 'test'})
    if a.train_fraction < 1: root = subset(root, a.train_fraction)
    cond = {**vars(a), 'cores': os.cpu_count(), 'torch_threads': torch.get_num_threads(), 'load_before': os.getloadavg(),
            'torch': torch.__version__, 'python': platform.python_version()}
    print('conditions:', json.dumps(cond), flush=True)
    out = []
    for pre in ([a.only == 'pretrained'] if a.only else [True, False]):
        r = run(root, pre, a); out.append(r)
        print(f"{'pretrained' if pre else 'scratch   '}: test acc {r['test_acc']:.3f} (threshold tuned on valid: {r['test_acc_tuned']:.3f} at {r['threshold']:.2f}), "
              f"test AUC {r['test_auc']:.3f}, valid acc {r['valid_acc']:.3f}, lr {r['lr']:.1e}, train {r['train_s']:.0f}s, {r['n_train']} training images", flush=True)
    print('MedMNIST v2 test accuracy, PneumoniaMNIST:', ', '.join(f'{k} {v:.3f}' for k, v in MEDMNIST.items()))
    if len(out) == 2: print(f"pretrained - scratch: {out[0]['test_acc'] - out[1]['test_acc']:+.3f} test accuracy, {out[0]['test_auc'] - out[1]['test_auc']:+.3f} test AUC")
    if a.json: Path(a.json).write_text(json.dumps(dict(conditions=cond, results=out), indent=2))

if __name__ == '__main__': main()
