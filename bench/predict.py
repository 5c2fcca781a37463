"""Prediction speed by backend: fastai's `learn.predict` / `get_preds`, imgclf's torch `Classifier`, and the
torch-free runtime on ONNX Runtime (fp32 and int8).

    python bench/predict.py [--arch resnet18 efficientnet_lite0] [--size 224] [--n 30] [--batch-n 192] [--bs 64]

For each architecture, one run: a learner from `imgclf.learner.build_learner` on ../shared/data/hymenoptera
(or the embedded digits), exported with `export_model` (weights + ONNX graph), its int8 graph added with
`add_onnx(..., int8=valid)` (calibrated on the validation images; the accuracy gate is off here, since an
untrained network's accuracy means nothing: this measures speed), then loaded on each backend with
`imgclf.runtime.load_model`. All on the CPU, on the same files, after a warm-up.

- latency: the median time of one `predict(path)` (decode + preprocess + network), with ONE thread
  everywhere (`torch.set_num_threads(1)`, ONNX Runtime `threads=1`), the backends taking turns on each image;
- throughput: images per second of one batch call over `--batch-n` files (`get_preds(test_dl)` for fastai,
  `predict_batch` for imgclf), with every core (torch and ONNX Runtime threads = the CPU count), the best of
  two rounds in which the backends take turns.

Goals (issue 17): ONNX fp32 latency <= 0.5x torch `Classifier` and <= 0.4x fastai `learn.predict`; ONNX fp32
batch throughput >= 1.5x torch `Classifier`. Also prints the largest probability difference from the torch
`Classifier` (fp32 ONNX: <= 1e-4 by the parity test) and the load average before and after.
"""
import argparse, os, time, tempfile, statistics, warnings
from pathlib import Path
import numpy as np, torch

def median_ms(fns, items):
    """Median milliseconds of each `fns[name](o)` over `items`, after two warm-up calls each. The backends take
    turns on every item, so a swing of the machine's load hits them all alike"""
    for fn in fns.values(): fn(items[0]); fn(items[1])
    ts = {name: [] for name in fns}
    for o in items:
        for name, fn in fns.items():
            t = time.perf_counter(); fn(o); ts[name].append(time.perf_counter() - t)
    return {name: 1000*statistics.median(v) for name, v in ts.items()}

def per_second(fns, items, rounds=2):
    """Items per second of one call `fns[name](items)`, after a warm-up call on a few: the best of `rounds`
    rounds in which the backends take turns (the least disturbed call of each on a shared machine)"""
    for fn in fns.values(): fn(items[:8])
    best = dict.fromkeys(fns, 0.)
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter(); fn(items); best[name] = max(best[name], len(items)/(time.perf_counter() - t))
    return best

def bench_arch(arch, a, path, valid, files, tmp):
    from imgclf.core import set_seed
    from imgclf.data import from_folder
    from imgclf.learner import build_learner
    from imgclf.export import export_model, add_onnx
    from imgclf.runtime import load_model
    set_seed(42)
    dls = from_folder(path, valid=valid.name, size=a.size, bs=a.bs, num_workers=0)
    learn = build_learner(dls, arch, pretrained=False, device='cpu')
    d = export_model(learn, tmp/arch, onnx=True)
    if not a.no_int8: add_onnx(d, int8=valid, max_drop=1.)
    single, many = files[:a.n], (files*(a.batch_n//len(files) + 1))[:a.batch_n]
    models = {'torch Classifier': load_model(d, 'torch', device='cpu'), 'ONNX fp32': load_model(d, 'onnx', threads=1)}
    if not a.no_int8: models['ONNX int8'] = load_model(d, 'int8', threads=1)
    ref = models['torch Classifier'].get_probs(single[:8]).numpy()
    torch.set_num_threads(1)
    with learn.no_bar(), learn.no_logging():
        lat = median_ms({'fastai learn.predict': learn.predict} | {n: m.predict for n, m in models.items()}, single)
    rows = {name: dict(latency=ms) for name, ms in lat.items()}
    for name, m in models.items(): rows[name]['diff'] = float(np.abs(np.asarray(m.get_probs(single[:8])) - ref).max())
    torch.set_num_threads(os.cpu_count())
    for name in [n for n in models if n != 'torch Classifier']:  # the same graphs, every core
        models[name] = load_model(d, 'onnx' if name == 'ONNX fp32' else 'int8', threads=os.cpu_count())
    batch = {'fastai learn.predict': lambda items: learn.get_preds(dl=learn.dls.test_dl(items, bs=a.bs, num_workers=0))}
    batch |= {name: (lambda items, m=m: m.predict_batch(items, bs=a.bs)) for name, m in models.items()}
    with learn.no_bar(), learn.no_logging():
        for name, ips in per_second(batch, many).items(): rows[name]['throughput'] = ips
    return rows

def report(arch, a, rows):
    t, f = rows['torch Classifier'], rows['fastai learn.predict']
    print(f"\n{arch} at {a.size} px: latency = median of {a.n} x predict(path), 1 thread; "
          f"throughput = {a.batch_n} images in one batch call (bs {a.bs}), {os.cpu_count()} threads")
    print(f"{'backend':22} {'latency ms':>10} {'vs torch':>9} {'vs fastai':>9} {'img/s':>8} {'vs torch':>9} {'max |dp|':>9}")
    for name, r in rows.items():
        diff = f"{r['diff']:.1e}" if 'diff' in r else '-'
        print(f"{name:22} {r['latency']:10.1f} {r['latency']/t['latency']:8.2f}x {r['latency']/f['latency']:8.2f}x "
              f"{r['throughput']:8.1f} {r['throughput']/t['throughput']:8.2f}x {diff:>9}")
    o = rows['ONNX fp32']
    print(f"goals: ONNX fp32 latency {o['latency']/t['latency']:.2f}x torch (<= 0.5), {o['latency']/f['latency']:.2f}x fastai "
          f"(<= 0.4); batch throughput {o['throughput']/t['throughput']:.2f}x torch (>= 1.5)")

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', nargs='+', default=['resnet18', 'efficientnet_lite0'])
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--n', type=int, default=30, help='images for the per-image latency')
    p.add_argument('--batch-n', type=int, default=192, help='images for the batch throughput')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--no-int8', action='store_true', help='skip the int8 graph')
    a = p.parse_args()
    warnings.simplefilter('ignore')
    from fastai.vision.all import get_image_files
    from imgclf.core import shared_data
    from imgclf.datasets import sample_digits
    path = shared_data('hymenoptera', quiet=True) or sample_digits()
    valid = path/('val' if (path/'val').exists() else 'valid')
    files = sorted(get_image_files(valid))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; data {path}")
    with tempfile.TemporaryDirectory(prefix='imgclf-bench-predict-') as tmp:
        for arch in a.arch: report(arch, a, bench_arch(arch, a, path, valid, files, Path(tmp)))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")

if __name__ == '__main__': main()
