"""Prediction speed: fastai's `learn.predict` / `get_preds` vs imgclf's `Classifier.predict` / `predict_batch`.

    python bench/predict.py [--arch resnet18] [--size 224] [--n 30] [--batch-n 150] [--bs 64] [--threads N]

One model, one run: a learner from `imgclf.learner.build_learner` on ../shared/data/hymenoptera (or the
embedded digits), exported with `export_model` and loaded back with `load_classifier`. Both sides run on the
CPU (or the GPU when `--device cuda`) on the same files, after a warm-up, and their probabilities are
checked to agree. Prints the per-image latency (median) of each, the batch throughput of each, and the
ratios. Goals (issue 7): 10x lower single-image latency on CPU, batch throughput at least fastai's.
"""
import argparse, os, time, tempfile, statistics, warnings
from pathlib import Path
import torch

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='resnet18'); p.add_argument('--size', type=int, default=224)
    p.add_argument('--n', type=int, default=30, help='images for the per-image latency')
    p.add_argument('--batch-n', type=int, default=150, help='images for the batch throughput')
    p.add_argument('--bs', type=int, default=64); p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice); 1 is steadier on a busy machine')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    warnings.simplefilter('ignore')
    from fastai.vision.all import get_image_files
    from imgclf.core import shared_data, set_seed
    from imgclf.datasets import sample_digits
    from imgclf.data import from_folder
    from imgclf.learner import build_learner
    from imgclf.export import export_model, load_classifier
    path = shared_data('hymenoptera', quiet=True) or sample_digits()
    valid = path/('val' if (path/'val').exists() else 'valid')
    set_seed(42)
    dls = from_folder(path, valid=valid.name, size=a.size, bs=a.bs, device=a.device)
    learn = build_learner(dls, a.arch, pretrained=False, device=a.device)
    with tempfile.TemporaryDirectory(prefix='imgclf-bench-') as tmp:  # the export is loaded into memory: remove it
        clf = load_classifier(export_model(learn, Path(tmp)/'model'), device=a.device)
    files = sorted(get_image_files(valid))
    print(f"{a.arch} at {a.size}px on {a.device}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; data {path}")

    def latency(fn, items):
        fn(items[0]); fn(items[1])  # warm-up
        ts = []
        for o in items: t = time.perf_counter(); fn(o); ts.append(time.perf_counter() - t)
        return 1000*statistics.median(ts)
    single = files[:a.n]
    with learn.no_bar(), learn.no_logging():
        fa = latency(learn.predict, single)
        ours = latency(clf.predict, single)
        diff = max((learn.predict(o)[2].cpu() - clf.predict(o).probs).abs().max().item() for o in single[:5])
    print(f"per image (median of {len(single)}): fastai learn.predict {fa:.1f} ms | Classifier.predict {ours:.1f} ms | "
          f"{fa/ours:.1f}x lower latency (goal 10x) | max prob difference {diff:.1e}")

    many = (files * (a.batch_n // len(files) + 1))[:a.batch_n]
    def throughput(fn):
        fn(many[:a.bs])  # warm-up
        t = time.perf_counter(); out = fn(many); return len(many)/(time.perf_counter() - t), out
    with learn.no_bar(), learn.no_logging():
        fa_ips, fa_p = throughput(lambda items: learn.get_preds(dl=learn.dls.test_dl(items, bs=a.bs))[0])
    ours_ips, preds = throughput(lambda items: clf.predict_batch(items, bs=a.bs))
    ours_p = torch.stack([o.probs for o in preds])
    print(f"batch of {len(many)} (bs {a.bs}): fastai get_preds(test_dl) {fa_ips:.1f} img/s | Classifier.predict_batch {ours_ips:.1f} img/s | "
          f"ratio {ours_ips/fa_ips:.2f}x (goal >= 1) | max prob difference {(fa_p.cpu() - ours_p).abs().max().item():.1e}")

if __name__ == '__main__': main()
