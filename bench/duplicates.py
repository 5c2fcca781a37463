"""Near-duplicate search at scale (issue 6): `imgclf.similar.near_duplicates` on 100,000 random 512-d
embeddings with 100 planted near-duplicate pairs.

Goal: every planted pair found, under 30 s and under 2 GiB peak memory, on 2 CPU cores.

    python bench/duplicates.py                      # the goal's setting
    python bench/duplicates.py --n 20000 --cores 1  # smaller / other settings

Each measurement runs in a fresh child process pinned to `--cores` CPUs (torch limited to as many threads).
Peak memory is that child's peak resident set size (`ru_maxrss`): it includes Python, torch and the
embeddings themselves, not just the search. For comparison the dense approach (one N x N similarity
matrix, as fastai v1's `DatasetFormatter.from_similars` did) is timed on a subset in the same run, next to
ours on the same subset, and the ratio is printed; at the full size the dense matrix alone would need
N*N*4 bytes.
"""
import argparse, multiprocessing as mp, os, resource, time


def _pin(cores):
    import torch
    if hasattr(os, 'sched_setaffinity'):
        avail = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, avail[:cores])
    torch.set_num_threads(cores)


def _data(n, dim, n_pairs, noise, seed):
    "Random unit-ish vectors; rows b[k] are noisy copies of rows a[k] (cosine about 0.96 for noise 0.25)"
    import numpy as np
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((n, dim), dtype=np.float32)
    idx = rng.choice(n, 2*n_pairs, replace=False)
    a, b = idx[:n_pairs], idx[n_pairs:]
    E[b] = E[a] + noise*rng.standard_normal((n_pairs, dim), dtype=np.float32)
    return E, {tuple(sorted(p)) for p in zip(a.tolist(), b.tolist())}


def _ours(args, q):
    _pin(args.cores)
    from imgclf.similar import near_duplicates
    E, planted = _data(args.n, args.dim, args.pairs, args.noise, args.seed)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    df = near_duplicates(E, args.threshold, device='cpu')
    dt, ru1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    found = set(zip(df.i.tolist(), df.j.tolist()))
    q.put(dict(seconds=dt, found=len(planted & found), planted=len(planted), extra=len(found - planted),
               min_sim=float(df.sim.min()) if len(df) else None, peak_mb=ru1.ru_maxrss/1024, before_mb=ru0.ru_maxrss/1024,
               cpu=ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime))


def _dense(args, q):
    "The N x N baseline on a subset: one similarity matrix, thresholded"
    _pin(args.cores)
    import torch
    E, planted = _data(args.subset, args.dim, min(args.pairs, args.subset//4), args.noise, args.seed)
    t0 = time.perf_counter()
    U = torch.nn.functional.normalize(torch.from_numpy(E), dim=1)
    S = U @ U.T
    i, j = torch.triu(S >= args.threshold, 1).nonzero(as_tuple=True)
    dt = time.perf_counter() - t0
    q.put(dict(seconds=dt, found=len(planted & set(zip(i.tolist(), j.tolist()))), planted=len(planted),
               peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024))


def run(target, args):
    ctx = mp.get_context('spawn')
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(args, q))
    p.start(); res = q.get(); p.join()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--n', type=int, default=100_000)
    ap.add_argument('--dim', type=int, default=512)
    ap.add_argument('--pairs', type=int, default=100)
    ap.add_argument('--noise', type=float, default=0.25)
    ap.add_argument('--threshold', type=float, default=0.9)
    ap.add_argument('--cores', type=int, default=2)
    ap.add_argument("--subset", type=int, default=20_000, help='size for the dense-vs-ours comparison')
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()

    import torch, platform
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(f"load average before: {load:.2f} (timings are only meaningful on an otherwise idle machine)")
    print(f"near-duplicate search: {args.n:,} x {args.dim} float32 embeddings, {args.pairs} planted pairs, "
          f"threshold {args.threshold}, {args.cores} core(s), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    ours = run(_ours, args)
    ok_time, ok_mem, ok_found = ours['seconds'] < 30, ours['peak_mb'] < 2048, ours['found'] == ours['planted']
    print(f"ours   N={args.n:,}: {ours['seconds']:.1f} s wall ({ours['cpu']:.1f} CPU-s over {args.cores} core(s)), found {ours['found']}/{ours['planted']} planted pairs "
          f"({ours['extra']} other pairs >= threshold), peak RSS {ours['peak_mb']:.0f} MB "
          f"(of which {ours['before_mb']:.0f} MB before the search: Python, torch, the embeddings)")
    sub = argparse.Namespace(**{**vars(args), 'n': args.subset, 'pairs': min(args.pairs, args.subset//4)})
    ours_s, dense_s = run(_ours, sub), run(_dense, sub)
    print(f"subset N={args.subset:,}: dense N x N {dense_s['seconds']:.2f} s (peak {dense_s['peak_mb']:.0f} MB, found {dense_s['found']}/{dense_s['planted']}), "
          f"ours {ours_s['seconds']:.2f} s (peak {ours_s['peak_mb']:.0f} MB, found {ours_s['found']}/{ours_s['planted']}): "
          f"ratio dense/ours {dense_s['seconds']/ours_s['seconds']:.2f}x")
    print(f"dense at N={args.n:,} would need {args.n**2*4/2**30:.1f} GiB for the similarity matrix alone")
    print(f"goal (all found, < 30 s, < 2 GiB): {'MET' if ok_time and ok_mem and ok_found else 'NOT MET'} "
          f"[found {'ok' if ok_found else 'MISSING'}, time {'ok' if ok_time else 'over'}, memory {'ok' if ok_mem else 'over'}]")


if __name__ == '__main__':
    main()
