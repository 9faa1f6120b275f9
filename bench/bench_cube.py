"""Benchmark of `build_cube`: 100 models x 40 (benchmark, metric) cells x 2,000 items x 2,000 resamples.

Prints wall time and peak memory of the vectorised build, and the ratio against a naive per-cell loop
(resample each cell's own differences separately) measured in the same run on a subset of cells and
scaled to the full cube. Not a test: run `python bench/bench_cube.py [--quick]`.
"""
import argparse, resource, time
import numpy as np, pandas as pd
from safedrift_wb.cube import build_cube, bootstrap_weights


def synthetic(n_models, n_bench, n_metric, n_items, seed=0):
    rng = np.random.default_rng(seed)
    n_roots = max(1, n_models//10)
    models = pd.DataFrame({'model': [f'm{i:03d}' for i in range(n_models)],
                           'base': ['' if i < n_roots else f'm{i % n_roots:03d}' for i in range(n_models)],
                           'family': [f'f{i % n_roots}' for i in range(n_models)], 'domain': 'medical', 'method': 'lora'})
    metrics = ['refusal_rate', 'over_refusal', 'asr', 'toxicity', 'toxic_rate', 'accuracy', 'abs_bias', 'harmful_compliance'][:n_metric]
    ids = np.array([f'i{i:04d}' for i in range(n_items)])
    frames = []
    for b in range(n_bench):
        for k in metrics:
            vals = (rng.random((n_models, n_items)) < rng.uniform(0.2, 0.8, (n_models, 1))).astype(float)
            frames.append(pd.DataFrame({'model': np.repeat(models.model.to_numpy(), n_items), 'benchmark': f'b{b:02d}',
                                        'item': np.tile(ids, n_models), 'metric': k, 'value': vals.ravel()}))
    return pd.concat(frames, ignore_index=True), models


def naive_cell(d, n_boot, rng, ci_prob=0.95):
    "One cell the naive way: draw its own resamples and average."
    n = len(d)
    means = np.array([d[rng.integers(0, n, n)].mean() for _ in range(n_boot)])
    return np.quantile(means, [(1 - ci_prob)/2, (1 + ci_prob)/2])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--models', type=int, default=100); ap.add_argument('--benchmarks', type=int, default=10)
    ap.add_argument('--metrics', type=int, default=4); ap.add_argument('--items', type=int, default=2000)
    ap.add_argument('--n-boot', type=int, default=2000); ap.add_argument('--naive-cells', type=int, default=20)
    ap.add_argument('--quick', action='store_true', help='a small cube, for a smoke run')
    a = ap.parse_args()
    if a.quick: a.models, a.benchmarks, a.items, a.n_boot, a.naive_cells = 20, 4, 300, 500, 5
    t = time.perf_counter()
    items, models = synthetic(a.models, a.benchmarks, a.metrics, a.items)
    print(f"item results: {len(items):,} rows ({a.models} models x {a.benchmarks*a.metrics} cells x {a.items} items), "
          f"made in {time.perf_counter() - t:.1f} s")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20
    t = time.perf_counter()
    cube = build_cube(items, models, n_boot=a.n_boot, seed=0)
    fast = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20
    n_cells = int(cube.p_value.notnull().sum())
    print(f"build_cube: {fast:.1f} s for {n_cells} derivative cells x {a.n_boot} resamples; peak RSS {peak:.2f} GiB "
          f"(before: {rss0:.2f} GiB)")
    # naive per-cell loop on a subset, scaled to all derivative cells
    rng = np.random.default_rng(1)
    sub = items[items.benchmark == 'b00']
    wide = {k: g.pivot(index='item', columns='model', values='value') for k, g in sub.groupby('metric')}
    der = models[models.base != ''].head(a.naive_cells)
    t = time.perf_counter()
    for m, b in zip(der.model, der.base):
        w = wide['refusal_rate']
        naive_cell((w[m] - w[b]).to_numpy(), a.n_boot, rng)
    per_cell = (time.perf_counter() - t)/len(der)
    naive_total = per_cell*n_cells
    print(f"naive per-cell loop: {per_cell*1e3:.1f} ms per cell -> {naive_total:.0f} s for the whole cube (measured on {len(der)} cells)")
    print(f"speed-up of build_cube over the naive loop: {naive_total/fast:.1f}x")
    print(f"targets: <= 30 s ({'met' if fast <= 30 else 'MISSED'}), <= 4 GiB ({'met' if peak <= 4 else 'MISSED'})")


if __name__ == '__main__':
    main()
