"""Time every analysis on a 100 model x 50 benchmark x 8 metric cube (target: each under 2 s).

    python bench/bench_analysis.py [--models 100] [--benchmarks 50] [--metrics 8] [--repeat 3]

Prints one line per analysis with the best of `--repeat` wall-clock times. Not a test: timings depend on the
machine, so nothing here fails; compare the numbers with the target.
"""
import argparse, time, warnings
import numpy as np
import xarray as xr
from safedrift_wb.analysis import (synthetic_cube, contradiction, contradiction_share, disagreement, heterogeneity,
                                   predictiveness, drift_drivers)

def best_of(f, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return min(ts)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', type=int, default=100)
    ap.add_argument('--benchmarks', type=int, default=50)
    ap.add_argument('--metrics', type=int, default=8)
    ap.add_argument('--bases', type=int, default=8)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--missing', type=float, default=0.1, help='share of cells blanked in the second pass (exercises NaN paths)')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    cube = synthetic_cube(a.models, a.benchmarks, a.metrics, n_bases=a.bases, domain_effect={'medical': -0.1},
                          lr_effect=-0.05, tau=0.03, seed=0)
    print(f"cube {dict(cube.sizes)} built in {time.perf_counter() - t0:.2f} s")
    rng = np.random.default_rng(1)
    keep = xr.DataArray(rng.random(cube.score.shape) >= a.missing, dims=cube.score.dims)
    holey = cube.copy()
    for v in ['score', 'score_ci', 'drift', 'drift_ci', 'p_value', 'q_value', 'safety_drift', 'safety_drift_ci']:
        holey[v] = cube[v].where(keep)
    for label, c in [('complete cube', cube), (f'{a.missing:.0%} of cells missing', holey)]:
        print(f"-- {label}")
        run_all(c, a.repeat)

def run_all(cube, repeat):
    runs = {'contradiction': lambda: contradiction(cube),
            'contradiction_share': lambda: contradiction_share(cube),
            'disagreement (detail=True)': lambda: disagreement(cube, detail=True),
            'heterogeneity': lambda: heterogeneity(cube),
            "heterogeneity(by='domain')": lambda: heterogeneity(cube, by='domain'),
            'predictiveness': lambda: predictiveness(cube),
            'drift_drivers (n_perm=200)': lambda: drift_drivers(cube, n_perm=200)}
    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for name, f in runs.items():
            t = best_of(f, repeat); total += t
            print(f"{name:30s} {t:7.3f} s  {'ok' if t < 2 else 'OVER 2 s'}")
    print(f"{'all analyses':30s} {total:7.3f} s")

if __name__ == '__main__': main()
