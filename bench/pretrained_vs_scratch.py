"""Transfer learning vs training from scratch on PneumoniaMNIST, same data, same budget, judged on the official test split.

    python bench/pretrained_vs_scratch.py [--arch efficientnet_lite0] [--size 64] [--epochs 4] [--oversample]

Both runs use the same arch, images, augmentation ('medical' preset: no flips), batch size and number of epochs:
the pretrained model runs `fine_tune(epochs, freeze_epochs=1)` (one frozen epoch, then `epochs` unfrozen), the
model from scratch `fit_one_cycle(epochs + 1)`. Learning rates come from `find_lr` unless `--lr` is given.
Test accuracy is reported at the argmax and, separately, with the decision threshold tuned on the validation
set (never on the test set). The published MedMNIST v2 figures for the same test split are printed alongside.
Run it on a quiet machine: with OMP_WAIT_POLICY unset and other processes busy, torch's threads spin.
"""
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # before torch loads: threads that wait sleep instead of spinning
import sys, time, json, argparse, platform, tempfile, warnings
from pathlib import Path
import numpy as np, torch

MEDMNIST = {'ResNet-18 (28 px)': 0.854, 'ResNet-50 (224 px)': 0.884, 'AutoKeras': 0.878, 'Google AutoML Vision': 0.946}

def evaluate(learn, dls):
    "Test accuracy at argmax, at the threshold that is best on validation, and test ROC AUC"
    from sklearn.metrics import roc_auc_score
    pv, tv = learn.get_preds(dl=dls[1]); pt, tt = learn.get_preds(dl=dls[2])
    pv, tv, pt, tt = pv[:, 1].numpy(), tv.numpy(), pt[:, 1].numpy(), tt.numpy()
    ths = np.linspace(0.02, 0.98, 97)
    th = float(ths[np.argmax([((pv >= t) == tv).mean() for t in ths])])
    return dict(test_acc=float(((pt >= 0.5) == tt).mean()), threshold=th, test_acc_tuned=float(((pt >= th) == tt).mean()),
                test_auc=float(roc_auc_score(tt, pt)), valid_acc=float(((pv >= 0.5) == tv).mean()))

def run(root, pretrained, a):
    from imgclf.core import set_seed
    from imgclf.data import from_folder
    from imgclf.learner import build_learner
    from imgclf.lr_find import find_lr
    set_seed(a.seed)
    dls = from_folder(root, test='test', size=a.size, bs=a.bs, num_workers=a.num_workers, preset='medical',
                      oversample=a.oversample, cache='memory', seed=a.seed)
    learn = build_learner(dls, a.arch, pretrained=pretrained)
    t0 = time.perf_counter()
    lr = a.lr or find_lr(learn, show_plot=False).lr
    t1 = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        if pretrained: learn.fine_tune(a.epochs, lr, freeze_epochs=1)
        else: learn.fit_one_cycle(a.epochs + 1, lr)
    t2 = time.perf_counter()
    res = dict(pretrained=pretrained, lr=float(lr), lr_find_s=round(t1-t0, 1), train_s=round(t2-t1, 1), **evaluate(learn, dls))
    res['n_train'] = len(dls.train_ds)
    return res

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='efficientnet_lite0')
    p.add_argument('--size', type=int, default=64, help='training image size (the images are 28x28, upsampled)')
    p.add_argument('--epochs', type=int, default=4, help='unfrozen epochs (pretrained) = epochs-1 from scratch')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--lr', type=float, default=None, help='default: find_lr on each learner')
    p.add_argument('--oversample', action='store_true', help='balance the classes of the training set (1:9 here)')
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
    cond = dict(arch=a.arch, size=a.size, epochs=a.epochs, bs=a.bs, oversample=a.oversample, seed=a.seed, cores=os.cpu_count(),
                torch_threads=torch.get_num_threads(), load_before=os.getloadavg(), torch=torch.__version__, python=platform.python_version())
    print('conditions:', json.dumps(cond), flush=True)
    out = []
    for pre in ([a.only == 'pretrained'] if a.only else [True, False]):
        r = run(root, pre, a); out.append(r)
        print(f"{'pretrained' if pre else 'scratch   '}: test acc {r['test_acc']:.3f} (threshold tuned on valid: {r['test_acc_tuned']:.3f} at {r['threshold']:.2f}), "
              f"test AUC {r['test_auc']:.3f}, valid acc {r['valid_acc']:.3f}, lr {r['lr']:.1e}, train {r['train_s']:.0f}s + lr_find {r['lr_find_s']:.0f}s", flush=True)
    print('MedMNIST v2 test accuracy, PneumoniaMNIST:', ', '.join(f'{k} {v:.3f}' for k, v in MEDMNIST.items()))
    if len(out) == 2: print(f"pretrained - scratch: {out[0]['test_acc'] - out[1]['test_acc']:+.3f} test accuracy")
    if a.json: Path(a.json).write_text(json.dumps(dict(conditions=cond, results=out), indent=2))

if __name__ == '__main__': main()
