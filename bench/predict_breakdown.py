"""Where one image's prediction time goes, ResNet-18 at 224 px on one thread: decode, preprocessing, the network.

    python bench/predict_breakdown.py [--arch resnet18] [--n 20] [--rounds 3]

An untrained network of the architecture (speed does not depend on the weights), exported with its ONNX graph;
medians over `--n` hymenoptera validation photos x `--rounds`. Prints decode, `model_input` (decode + presize +
crop + resize, exactly torch's integers), `resize_square` alone, Pillow's bilinear resize for reference, ONNX
Runtime's `session.run`, torch's forward, and the whole `predict` of both backends.
"""
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import io, time, argparse, tempfile, shutil
from pathlib import Path
import numpy as np, torch
from PIL import Image
from imgclf.core import set_seed, shared_data
from imgclf.data import from_folder
from imgclf.learner import build_learner
from imgclf.export import export_model
from imgclf.images import image_input, square_image
from imgclf.runtime import load_model, model_input, resize_square

def median_ms(f, xs, rounds):
    ts = []
    for _ in range(rounds):
        for x in xs: t = time.perf_counter(); f(x); ts.append(time.perf_counter() - t)
    return 1000*float(np.median(ts))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='resnet18'); p.add_argument('--n', type=int, default=20)
    p.add_argument('--rounds', type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    path = shared_data('hymenoptera')
    files = sorted((path/'val').rglob('*.jpg'))[:a.n]
    tmp = Path(tempfile.mkdtemp(prefix='imgclf-bench-breakdown-'))
    try:
        set_seed(42)
        dls = from_folder(path, valid='val', size=224, bs=16, num_workers=0)
        learn = build_learner(dls, a.arch, pretrained=False, device='cpu')
        d = export_model(learn, tmp/a.arch, onnx=True)
        onnx, tch = load_model(d, 'onnx', threads=1), load_model(d, 'torch', device='cpu')
        raw = [f.read_bytes() for f in files]
        sq = [square_image(image_input(b)[0], 460, 'crop', 'reflection', 2**62) for b in raw]
        xs = [onnx.to_tensor(b)[None] for b in raw]
        model = tch.model.eval()
        def fwd(x):
            with torch.inference_mode(): model(torch.as_tensor(x).float()/255)
        rows = {'decode (Pillow, RGB)': median_ms(lambda b: Image.open(io.BytesIO(b)).convert('RGB').load(), raw, a.rounds),
                'model_input (decode, presize, crop, resize)': median_ms(lambda b: model_input(b, onnx.prep), raw, a.rounds),
                'resize_square 460 -> 224 alone': median_ms(lambda x: resize_square(x, 224), sq, a.rounds),
                'Pillow bilinear 460 -> 224 (reference)': median_ms(
                    lambda x: Image.fromarray(x).resize((224, 224), Image.BILINEAR), sq, a.rounds),
                'ONNX Runtime session.run': median_ms(onnx.batch_probs, xs, a.rounds),
                'torch forward (no normalisation)': median_ms(fwd, xs, a.rounds),
                'predict, ONNX backend': median_ms(onnx.predict, raw, a.rounds),
                'predict, torch backend': median_ms(tch.predict, raw, a.rounds)}
    finally: shutil.rmtree(tmp, ignore_errors=True)
    print(f"{a.arch} at 224 px, 1 thread, {len(files)} photos x {a.rounds} rounds, load {os.getloadavg()[0]:.1f}")
    for k, v in rows.items(): print(f"{k:45s} {v:7.1f} ms")
    print(f"ONNX / torch: predict {rows['predict, ONNX backend']/rows['predict, torch backend']:.2f}x")

if __name__ == '__main__': main()
