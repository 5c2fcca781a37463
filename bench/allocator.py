"""What fixing glibc's malloc thresholds costs the model (the price of `serve`'s bounded memory, issue 14)

    python bench/allocator.py [--pairs 3] [--size 224] [--mmap 4194304] [--trim 67108864]

Runs, in fresh child processes alternating `--pairs` times, a single-threaded untrained resnet18 over 24 mixed
batches of 1 to 16 images of `--size` px, once with glibc's adaptive thresholds and once with them fixed by
`imgclf.serve.pin_malloc_thresholds(--mmap, --trim)` (what `serve` does), and prints each time, the medians and
their ratio. Linux/glibc only. The memory side of the trade is `bench/hostile.py`'s peak RSS growth.
"""
import argparse, os, statistics, subprocess, sys

CHILD = """
import sys, time, warnings, torch, torchvision
warnings.filterwarnings('ignore')
from imgclf.serve import pin_malloc_thresholds
if {mmap}: assert pin_malloc_thresholds({mmap}, {trim}), 'not glibc'
torch.set_num_threads(1)
m = torchvision.models.resnet18().eval()
xs = [torch.randn(b, 3, {size}, {size}) for b in (16, 3, 9, 1, 12, 16, 5, 8)]
with torch.inference_mode():
    m(xs[0]); t = time.perf_counter()
    for _ in range(3):
        for x in xs: m(x)
print(time.perf_counter() - t)
"""

def run(mmap, trim, size):
    out = subprocess.run([sys.executable, '-c', CHILD.format(mmap=mmap, trim=trim, size=size)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pairs', type=int, default=3); p.add_argument('--size', type=int, default=224)
    p.add_argument('--mmap', type=int, default=4 << 20); p.add_argument('--trim', type=int, default=64 << 20)
    a = p.parse_args()
    times = {0: [], a.mmap: []}
    for _ in range(a.pairs):
        for t in times: times[t].append(run(t, a.trim, a.size))
    glibc, pinned = (statistics.median(v) for v in times.values())
    print(f"glibc's adaptive threshold: {', '.join(f'{x:.1f}' for x in times[0])} s")
    print(f"fixed at mmap {a.mmap}, trim {a.trim} bytes: {', '.join(f'{x:.1f}' for x in times[a.mmap])} s")
    print(f"fixed / adaptive (medians): {pinned/glibc:.2f}   load average {os.getloadavg()[0]:.1f}")

if __name__ == '__main__': main()
