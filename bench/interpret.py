"""Interpretation speed (issue 5): fastai's `ClassificationInterpretation` vs `imgclf.interpret.Interpreter`
on the same learner and validation set, in the same run, and the 100-class / 50,000-prediction scale check.

    python bench/interpret.py [--path ../shared/data/hymenoptera] [--arch efficientnet_lite0] [--size 160]

The task, for both: build the interpretation object, then the confusion matrix, the classification report
(printed), the top-9-losses grid and `most_confused`. fastai's `confusion_matrix()`, `most_confused()` and
`print_classification_report()` each predict the whole validation set again, and `plot_top_losses` predicts
its 9 images again; ours predicts once and reads the cache (the top-losses grid loads its 9 images).
A warm-up pass over the validation set runs first so both find the files in the OS cache.
Goal: ours at most half of fastai's time (ratio <= 0.5).

Scale: an `Interpreter` over 50,000 predictions on 100 classes draws its confusion matrix (rendered to pixels)
and computes its classification report; goal: under 5 s. scikit-learn's `classification_report` on the same
predictions is timed alongside for reference.
"""
import os, sys, io, time, argparse, platform, warnings, contextlib
from pathlib import Path

def timed(f):
    t = time.perf_counter(); res = f(); return time.perf_counter() - t, res

def learner(path, arch, size, bs):
    "A plain fastai DataLoaders on `path` (train/, val/) and an imgclf learner on it (no training needed for timing)"
    from fastai.vision.all import ImageDataLoaders, Resize, Normalize, imagenet_stats
    from imgclf.learner import build_learner
    dls = ImageDataLoaders.from_folder(path, train='train', valid='val', bs=bs, num_workers=0, device='cpu',
                                       item_tfms=Resize(size), batch_tfms=Normalize.from_stats(*imagenet_stats))
    return build_learner(dls, arch, pretrained=arch == 'efficientnet_lite0', device='cpu')

def fastai_task(learn):
    from fastai.interpret import ClassificationInterpretation
    interp = ClassificationInterpretation.from_learner(learn)
    interp.confusion_matrix()
    with contextlib.redirect_stdout(io.StringIO()): interp.print_classification_report()
    interp.plot_top_losses(9)
    interp.most_confused()

def imgclf_task(learn):
    from imgclf.interpret import Interpreter
    interp = Interpreter.from_learner(learn)
    interp.confusion_matrix()
    with contextlib.redirect_stdout(io.StringIO()): interp.print_classification_report()
    interp.plot_top_losses(9)
    interp.most_confused()

def scale(n=50_000, c=100, seed=0):
    "Seconds to draw the 100-class confusion matrix and compute the report, and sklearn's report, for reference"
    import torch, torch.nn.functional as F, matplotlib.pyplot as plt, sklearn.metrics as skm
    from imgclf.interpret import Interpreter
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, c, (n,), generator=g)
    preds = torch.where(torch.rand(n, generator=g) > 0.7, (targets + torch.randint(1, 4, (n,), generator=g)) % c, targets)
    probs = (torch.randn(n, c, generator=g) + 6*F.one_hot(preds, c)).softmax(1)
    def ours():
        it = Interpreter(probs, targets, [f'class_{i:02d}' for i in range(c)])
        fig = it.plot_confusion_matrix(); fig.canvas.draw(); plt.close(fig)
        return it.classification_report()
    t_ours, _ = timed(ours)
    t_sk, _ = timed(lambda: skm.classification_report(targets, probs.argmax(1), zero_division=0))
    return t_ours, t_sk

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--path', default=None, help='dataset with train/ and val/ (default: shared hymenoptera)')
    p.add_argument('--arch', default='efficientnet_lite0')
    p.add_argument('--size', type=int, default=160)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s)')
    a = p.parse_args()
    warnings.filterwarnings('ignore')
    import matplotlib; matplotlib.use('Agg')
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    from imgclf.core import shared_data
    path = Path(a.path) if a.path else shared_data('hymenoptera')
    if path is None: sys.exit('no dataset: pass --path')
    import matplotlib.pyplot as plt
    learn = learner(path, a.arch, a.size, a.bs)
    n = len(learn.dls.valid.items)
    with learn.no_bar():
        t_warm, _ = timed(lambda: learn.get_preds())
        t_fastai, _ = timed(lambda: fastai_task(learn)); plt.close('all')
        t_ours, _ = timed(lambda: imgclf_task(learn)); plt.close('all')
    t_scale, t_sk = scale()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"data: {path.name} valid, {n} images at {a.size}px, arch {a.arch}, one prediction pass {t_warm:.2f} s")
    print(f"fastai ClassificationInterpretation: {t_fastai:.2f} s")
    print(f"imgclf Interpreter:                  {t_ours:.2f} s")
    print(f"ratio imgclf/fastai: {t_ours/t_fastai:.2f} (goal <= 0.5: {'PASS' if t_ours/t_fastai <= 0.5 else 'FAIL'})")
    print(f"scale, 100 classes x 50,000 predictions, confusion matrix drawn + report: {t_scale:.2f} s "
          f"(goal < 5 s: {'PASS' if t_scale < 5 else 'FAIL'}); sklearn classification_report alone: {t_sk:.2f} s")

if __name__ == '__main__': main()
