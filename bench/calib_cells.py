"""Calibration of the per-cell statistics by simulation with planted truth.

Paired 0/1 items (Tango's score test and interval) over n = 20/50/200 and base rates 0.02-0.98 for both models,
with and without drift; continuous differences (normal and skewed); clustered 0/1 items (whole clusters flipped);
repeated samples per item (averaged, then paired); and the false discovery rate of Benjamini-Hochberg over a cube
built with `safedrift_wb.cube.build_cube`. For each scenario: coverage of the 95% interval, test size (no drift)
or power (drift), the share of zero-width intervals and the share of cells where interval and test agree
(0 in CI <=> p >= 0.05). `scenarios(fast=False)` returns the rows; `python bench/calib_cells.py [--fast]` prints
them as a table. Not a test: tests/test_stats_v2.py runs the fast version with tolerances.
"""
import argparse, time
import numpy as np, pandas as pd
from safedrift_wb.stats import paired_binary_test, sign_flip_test, bh_qvalues, discordant_probs

ALPHA = 0.05
RATES = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98)
NS = (20, 50, 200)
COVERAGE, SIZE = (0.93, 0.97), (0.03, 0.07)


def _row(scenario, quantity, value, target, ok, note=''):
    return {'scenario': scenario, 'quantity': quantity, 'value': float(value), 'target': target, 'ok': bool(ok), 'note': note}


def _summarise(scenario, truth, p, lo, hi, *, note=''):
    "Rows for one scenario: coverage, size or power, zero-width share, CI/test agreement."
    ok = np.isfinite(p)
    p, lo, hi = p[ok], lo[ok], hi[ok]
    cov = np.mean((lo <= truth) & (truth <= hi))
    rej = np.mean(p < ALPHA)
    rows = [_row(scenario, 'coverage', cov, '0.93-0.97', COVERAGE[0] <= cov <= COVERAGE[1], note)]
    if truth == 0: rows.append(_row(scenario, 'size', rej, '0.03-0.07', SIZE[0] <= rej <= SIZE[1], note))
    else: rows.append(_row(scenario, 'power', rej, '-', True))
    zw = np.mean(hi - lo <= 0)
    rows.append(_row(scenario, 'zero_width', zw, '0', zw == 0))
    agree = np.mean(((lo <= 0) & (0 <= hi)) == (p >= ALPHA))
    rows.append(_row(scenario, 'ci_test_agreement', agree, '1', agree == 1))
    return rows


def _rho(p0, p1, want=0.5):
    "A correlation of two 0/1 outcomes the margins allow: `want`, or 90% of the largest possible."
    s = np.sqrt(p0*(1 - p0)*p1*(1 - p1))
    return min(want, 0.9*(min(p0, p1) - p0*p1)/s)


def binary(fast=False, seed=0):
    "Paired 0/1 items, unclustered: Tango's score test and interval, rates 0.02-0.98 for both models."
    rng, reps, rows = np.random.default_rng(seed), (400 if fast else 4000), []
    for n in NS:
        for r in RATES:
            for p1 in (r, r + 0.1 if r + 0.1 <= 0.98 else r - 0.1):
                p10, p01 = discordant_probs(r, p1 - r, _rho(r, p1))
                bc = rng.multinomial(n, [p10, p01, 1 - p10 - p01], size=reps)
                p, lo, hi = paired_binary_test(bc[:, 0], bc[:, 1], n)
                few = n*(p10 + p01) < 5
                note = f'{n*(p10 + p01):.1f} discordant pairs expected: no valid test can reach 5%' if few else ''
                rows += _summarise(f'binary n={n} rates {r:g}->{p1:g}', p1 - r, p, lo, hi, note=note)
    return rows


def _flip_batches(make, truth, reps, batch, seed, **kw):
    "Run sign_flip_test on `reps` simulated cells in batches, each batch with its own sign vectors."
    rng = np.random.default_rng(seed)
    out = [sign_flip_test(make(rng, min(batch, reps - s)), rng=rng, **kw) for s in range(0, reps, batch)]
    return [np.concatenate(x) for x in zip(*out)]


def continuous(fast=False, seed=1):
    "Continuous paired differences: normal and skewed (centred gamma, skewness 1), with and without drift."
    reps, rows = (300 if fast else 3000), []
    for n in NS:
        for shape in ('normal', 'skewed'):
            for delta in (0.0, 0.5):
                def make(rng, k):
                    e = rng.normal(size=(n, k)) if shape == 'normal' else (rng.gamma(4, size=(n, k)) - 4)/2
                    return delta + e
                nb = 999 if fast else 1999
                p, lo, hi = _flip_batches(make, delta, reps, 100, seed + n + int(100*delta), n_resamples=nb)
                rows += _summarise(f'continuous {shape} n={n} drift {delta:g}sd', delta, p, lo, hi)
    return rows


def _clustered_items(rng, n, size, r, f10, f01, k, icc=0.3):
    "0/1 outcomes of base and derivative on n items in clusters of `size`: a cluster's rate ~ Beta(mean r, icc)."
    conc = 1/icc - 1
    u = rng.beta(r*conc, (1 - r)*conc, size=(n//size, k)).repeat(size, 0)
    y0 = rng.random((n, k)) < u
    y1 = np.where(y0, rng.random((n, k)) >= f10, rng.random((n, k)) < f01)
    return y0.astype(float), y1.astype(float)


def _flips_for(r, delta, f=0.1):
    "(f10, f01): P(derivative 0 | base 1), P(derivative 1 | base 0) giving drift delta at base rate r (f: the smaller flip)."
    if not 0 < r + delta < 1: raise ValueError(f"no derivative rate for base rate {r} and drift {delta}")
    if delta >= 0:
        f10 = min(f, 0.5*(1 - r - delta)/r)
        return f10, (delta + r*f10)/(1 - r)
    f01 = min(f, 0.5*(r + delta)/(1 - r))
    return (-delta + (1 - r)*f01)/r, f01


def clustered(fast=False, seed=2):
    "Clustered 0/1 items (clusters of 2 or 5, intraclass correlation 0.3): sign-flip of whole clusters; Tango ignoring them."
    reps, rows = (300 if fast else 2000), []
    for n, size in [(n, s) for n in NS for s in (2, 5)]:
        for r in (0.1, 0.5):
            for delta in (0.0, 0.1):
                f10, f01 = _flips_for(r, delta, 0.3)
                cl = np.arange(n)//size
                def make(rng, k):
                    y0, y1 = _clustered_items(rng, n, size, r, f10, f01, k)
                    return y1 - y0
                nb = 999 if fast else 1999
                p, lo, hi = _flip_batches(make, delta, reps, 100, seed + n + size + int(100*delta), clusters=cl,
                                          n_resamples=nb, bounds=(-1, 1))
                disc = n*(r*f10 + (1 - r)*f01)
                note = (f'{n//size} clusters: the smallest two-sided p is {2/2**(n//size):.3g}' if n//size <= 5 else
                        f'{disc:.0f} discordant items expected: a coarse, conservative randomization distribution' if disc < 15 else '')
                rows += _summarise(f'clustered n={n} ({n//size} clusters) rate {r:g} drift {delta:g}', delta, p, lo, hi, note=note)
                if n == 200 and size == 5 and delta == 0:   # what ignoring the clusters does
                    D = make(np.random.default_rng(seed), reps)
                    b, c = (D > 0).sum(0), (D < 0).sum(0)
                    p, lo, hi = paired_binary_test(b, c, n)
                    rows += [dict(x, ok=True, target='-', note='reference: clusters ignored')
                             for x in _summarise(f'clustered n={n} rate {r:g}: Tango ignoring clusters', delta, p, lo, hi)[:2]]
    return rows


def repeated(fast=False, seed=3):
    "Repeated samples: 5 samples per item and model (an item's rate ~ Beta(mean r, concentration 2)), averaged, then paired."
    reps, rows, k_s = (300 if fast else 2000), [], 5
    for n in NS:
        for r in (0.05, 0.5):
            for delta in (0.0, 0.1):
                f10, f01 = _flips_for(r, delta, 0.3)
                def make(rng, k):
                    u = rng.beta(2*r, 2*(1 - r), size=(n, k))
                    v = u*(1 - f10) + (1 - u)*f01
                    return rng.binomial(k_s, v)/k_s - rng.binomial(k_s, u)/k_s
                nb = 999 if fast else 1999
                p, lo, hi = _flip_batches(make, delta, reps, 100, seed + n + int(100*delta), n_resamples=nb, bounds=(-1, 1))
                nz = n*np.mean(make(np.random.default_rng(9), 200) != 0)
                note = f'{nz:.0f} items with a non-zero difference expected: conservative' if nz < 15 else ''
                rows += _summarise(f'repeated x{k_s} n={n} rate {r:g} drift {delta:g}', delta, p, lo, hi, note=note)
    return rows


def _cube_tables(rng, n_bases=4, n_der=6, n_bench=6, n_items=100, share_null=0.8, drift=0.15, size=5):
    "Item results with planted drifts; half the benchmarks have clusters of `size` items sharing a rate (ICC 0.3)."
    models, frames, cells, truth, diffs = [], [], [], [], []
    ids = [f'i{i:03d}' for i in range(n_items)]
    for b in range(n_bases):
        models.append({'model': f'base{b}', 'base': '', 'family': f'base{b}', 'domain': 'general', 'method': 'base'})
        models += [{'model': f'base{b}-d{j}', 'base': f'base{b}', 'family': f'base{b}', 'domain': 'general',
                    'method': 'lora'} for j in range(n_der)]
    for bench in range(n_bench):
        clustered = bench >= n_bench//2
        cl = [f't{i//size}' for i in range(n_items)] if clustered else [''] * n_items
        for met in ('refusal_rate', 'accuracy'):
            for b in range(n_bases):
                rate = rng.uniform(0.2, 0.8)
                u = rng.beta(rate*2.333, (1 - rate)*2.333, n_items//size).repeat(size) if clustered else rate
                y0 = rng.random(n_items) < u
                frames.append(pd.DataFrame({'model': f'base{b}', 'benchmark': f'b{bench}', 'item': ids, 'metric': met,
                                            'value': y0*1.0, 'cluster': cl}))
                for j in range(n_der):
                    d = 0.0 if rng.random() < share_null else drift*rng.choice([-1, 1])
                    f10, f01 = _flips_for(rate, d)
                    y1 = np.where(y0, rng.random(n_items) >= f10, rng.random(n_items) < f01)
                    cells.append((f'base{b}-d{j}', f'b{bench}', met, clustered)); truth.append(d); diffs.append(y1*1.0 - y0)
                    frames.append(pd.DataFrame({'model': f'base{b}-d{j}', 'benchmark': f'b{bench}', 'item': ids, 'metric': met,
                                                'value': y1*1.0, 'cluster': cl}))
    return pd.concat(frames, ignore_index=True), pd.DataFrame(models), cells, np.array(truth), np.array(diffs).T


def cube_fdr(fast=False, seed=4):
    "BH over a cube (4 bases x 6 derivatives x 6 benchmarks, 3 clustered, x 2 metrics): FDR, coverage, agreement."
    from safedrift_wb.cube import build_cube
    rng, reps = np.random.default_rng(seed), (4 if fast else 40)
    fdp_k, fdp_c, null_share, cover, agree, width = [], [], [], [], [], []
    for _ in range(reps):
        items, models, cells, t, D = _cube_tables(rng)
        n = len(D); cl = np.arange(n)//5
        isc = np.array([c[3] for c in cells])
        p = np.empty(len(cells))
        p[~isc] = paired_binary_test((D[:, ~isc] > 0).sum(0), (D[:, ~isc] < 0).sum(0), n)[0]
        p[isc] = sign_flip_test(D[:, isc], clusters=cl, rng=rng, bounds=(-1, 1))[0]
        sig = bh_qvalues(p) < ALPHA
        fdp_k.append(np.sum(sig & (t == 0))/max(sig.sum(), 1))
        cube = build_cube(items, models, n_boot=500, seed=int(rng.integers(1 << 30)))
        idx = pd.MultiIndex.from_tuples([c[:3] for c in cells])
        pick = lambda v: v.transpose('model', 'benchmark', 'metric', ...).to_series().reindex(idx).to_numpy()
        q, pc = pick(cube.q_value), pick(cube.p_value)
        if np.isnan(q).any(): raise RuntimeError(f"build_cube left {int(np.isnan(q).sum())} planted cells without a q-value")
        ci = cube.drift_ci.transpose('model', 'benchmark', 'metric', ...).values
        mi, bi, ki = ({v: i for i, v in enumerate(cube[d].values)} for d in ('model', 'benchmark', 'metric'))
        lo, hi = np.array([ci[mi[m], bi[b_], ki[k]] for m, b_, k, _ in cells]).T
        cover.append((lo <= t) & (t <= hi)); agree.append(((lo <= 0) & (0 <= hi)) == (pc >= ALPHA)); width.append(hi - lo <= 0)
        sc = q < ALPHA
        fdp_c.append(np.sum(sc & (t == 0))/max(sc.sum(), 1)); null_share.append(np.mean(t == 0))
    fk, fc = float(np.mean(fdp_k)), float(np.mean(fdp_c))
    cv, ag, zw = (float(np.mean(np.concatenate(x))) for x in (cover, agree, width))
    note = f'{reps} cubes of {len(cells)} cells (half clustered), {np.mean(null_share):.0%} null'
    return [_row('cube BH over Tango/sign-flip p-values (kernels)', 'fdr', fk, '<= 0.05', fk <= 0.05, note),
            _row('cube BH through build_cube', 'fdr', fc, '<= 0.05', fc <= 0.05, note),
            _row('cube cells through build_cube', 'coverage', cv, '0.93-0.97', COVERAGE[0] <= cv <= COVERAGE[1], note),
            _row('cube cells through build_cube', 'zero_width', zw, '0', zw == 0, note),
            _row('cube cells through build_cube', 'ci_test_agreement', ag, '1', ag == 1, note)]


def scenarios(fast=False) -> list:
    "Every calibration row: scenario, quantity, value, target, ok, note."
    return binary(fast) + continuous(fast) + clustered(fast) + repeated(fast) + cube_fdr(fast)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--fast', action='store_true', help='a few hundred repetitions per scenario (seconds)')
    a = ap.parse_args()
    t = time.perf_counter()
    df = pd.DataFrame(scenarios(a.fast))
    with pd.option_context('display.max_rows', None, 'display.width', 200, 'display.max_colwidth', 80):
        wide = df.pivot_table(index='scenario', columns='quantity', values='value', sort=False)
        miss = df[~df.ok]
        print(wide.round(3).to_string())
        print(f"\n{len(df)} rows, {int(df.ok.sum())} on target, {time.perf_counter() - t:.0f} s")
        if len(miss): print("\noff target:\n" + miss[['scenario', 'quantity', 'value', 'target', 'note']].to_string(index=False))


if __name__ == '__main__':
    main()
