"""Calibration of the analyses on item-level simulations with planted truth (derivatives share their base's items).

    python bench/calib_analyses.py [--fast]

Each scenario builds cubes with `build_cube` from `synthetic_family_items` (4 bases x 8 derivatives unless said
otherwise: every derivative is paired with the same base answers on the same items, so its drift shares the
base's sampling error exactly as in a real study) and measures one property against its target:

- heterogeneity: size of the homogeneity test (Q) when every derivative has the same true drift (3-8%);
  shown beside the size of the old diagonal analysis, which ignores the shared base;
- predictiveness: coverage of the base-resampling interval of the rank correlation (>= 93%), the truth being
  the rank correlation of (base score, derivative score) in a simulation with 20,000 bases;
- drivers: share of cells with p <= 0.05 under a global null (bases differ in true drift, no feature matters)
  for a base-level feature (`base_params`), a derivative-level one (`lr`), and both (<= 5%);
- contradiction: share of derivatives with no true opposite movements that are flagged contradictory, with
  the per-model control (<= 5%) and with the cube's Benjamini-Hochberg alone (shown, no target);
- taxonomy: share of planted trade-offs, within-construct contradictions and mixed ones given their kind.

`scenarios(fast=False)` returns rows (scenario, quantity, value, target, mc_se, ok); `ok` allows two Monte Carlo
standard errors around the target (a rate estimated from a finite number of replicates); tests run `fast=True`.
"""
import argparse, sys, time, warnings
import numpy as np
import pandas as pd
from scipy import stats
from safedrift_wb.cube import build_cube
from safedrift_wb.analysis import (synthetic_family_items, heterogeneity, predictiveness, drift_drivers, contradiction)


def _cube(seed, **kw):
    items, models, true = synthetic_family_items(seed=seed, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return build_cube(items, models, n_boot=200, seed=seed), true


def _row(scenario, quantity, value, lo, hi, target, n):
    "A result row; `ok` allows two Monte Carlo standard errors (binomial, at the nearest bound) around the target range."
    bound = lo if value < lo else hi
    mc_se = float(np.sqrt(max(bound*(1 - bound), 1e-4)/n))
    return dict(scenario=scenario, quantity=quantity, value=float(value), target=target, mc_se=mc_se,
                ok=bool(lo - 2*mc_se <= value <= hi + 2*mc_se))


def heterogeneity_size(reps, n_bench=10):
    "Q size with a common true drift, multivariate (drift_cov) and diagonal (old) analyses."
    mv, dg, cm, cd = [], [], [], []
    for r in range(reps):
        c, _ = _cube(1000 + r, n_bases=4, n_derivatives=8, n_items=200, n_bench=n_bench, drift=-0.05)
        h, hd = heterogeneity(c), heterogeneity(c.drop_vars(['drift_cov', 'peer'], errors='ignore'))
        mv.append(h.q_p_value.values.ravel()); dg.append(hd.q_p_value.values.ravel())
        for out, x in ((cm, h), (cd, hd)):
            ci = x.mean_ci.values.reshape(-1, 2); out.append((ci[:, 0] <= -0.05) & (-0.05 <= ci[:, 1]))
    mv, dg, cm, cd = map(np.concatenate, (mv, dg, cm, cd))
    s = 'heterogeneity, 4 bases x 8 derivatives, common drift'
    shown = lambda q, v: dict(scenario=s, quantity=q, value=float(v), target='(shown)', mc_se=np.nan, ok=True)
    return [_row(s, f'Q size at 0.05, drift_cov ({len(mv)} cells)', np.mean(mv < 0.05), 0.03, 0.08, '3-8%', len(mv)),
            shown('Q size at 0.05, diagonal V (ignores the shared base)', np.mean(dg < 0.05)),
            shown('coverage of the pooled mean_ci, drift_cov', cm.mean()),
            shown('coverage of the pooled mean_ci, diagonal V', cd.mean())]


def _true_rank_corr(n_items, tau, seed=7, n_bases=20000):
    "Spearman of (base score, derivative score) over `n_bases` independent bases: the estimand."
    items, models, _ = synthetic_family_items(n_bases, 1, n_items, n_bench=1, tau=tau, item_r=0.0, seed=seed)
    s = items.groupby('model')['value'].mean()
    der = models.index[models.base != '']
    return stats.spearmanr(s[models.loc[der, 'base']].to_numpy(), s[der].to_numpy()).statistic


def predictiveness_coverage(reps, n_bench=10, n_items=200, tau=0.08, n_truth=20000):
    "Coverage of rank_corr_ci with 4 bases x 8 derivatives (each benchmark an independent replicate)."
    truth = _true_rank_corr(n_items, tau, n_bases=n_truth)
    hit = []
    for r in range(reps):
        c, _ = _cube(2000 + r, n_bases=4, n_derivatives=8, n_items=n_items, n_bench=n_bench, tau=tau, item_r=0.0)
        ci = predictiveness(c, n_boot=400, seed=r).rank_corr_ci.values.reshape(-1, 2)
        hit.append((ci[:, 0] <= truth) & (truth <= ci[:, 1]))
    hit = np.concatenate(hit)
    return [_row('predictiveness, 4 bases x 8 derivatives', f'coverage of 95% rank_corr_ci ({len(hit)} cells, truth {truth:.3f})',
                 hit.mean(), 0.93, 1.0, '>= 93%', len(hit))]


def drivers_fpr(reps, n_bench=10, n_perm=99):
    "Cells with p <= 0.05 under a global null, per kind of feature."
    out = {'base-level (base_params)': ['base_params'], 'derivative-level (lr)': ['lr'], 'both': ['base_params', 'lr']}
    hits = {k: [] for k in out}
    for r in range(reps):
        rng = np.random.default_rng(3000 + r)
        c, _ = _cube(3000 + r, n_bases=4, n_derivatives=8, n_items=200, n_bench=n_bench,
                     drift=rng.normal(0, 0.05, (4, 1, n_bench, 1)), tau=0.02)
        for k, f in out.items():
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                hits[k].append(drift_drivers(c, features=f, n_perm=n_perm, n_repeats=1, seed=r).p_value.values.ravel() <= 0.05)
    return [_row('drivers, global null, 4 bases x 8 derivatives', f'false-positive rate, {k} ({sum(map(len, v))} cells)',
                 np.mean(np.concatenate(v)), 0.0, 0.05, '<= 5%', sum(map(len, v))) for k, v in hits.items()]


def false_flags(reps, n_bench=12):
    "Derivatives with no true opposite movement flagged contradictory: per-model control and BH alone."
    pm, bh = [], []
    for r in range(reps):
        rng = np.random.default_rng(4000 + r)
        drift = np.zeros((4, 8, n_bench, 1))
        sign = np.where(rng.random((4, 8)) < 0.5, -1.0, 1.0)                 # each derivative moves one way only
        drift[:, :, :n_bench//2, 0] = 0.12*sign[..., None]
        c, true = _cube(4000 + r, n_bases=4, n_derivatives=8, n_items=200, n_bench=n_bench, drift=drift)
        t = true.sel(model=c.model.values[c.base.values != ''])
        none_opposite = ~(((t > 0.01).any(('benchmark', 'metric'))) & ((t < -0.01).any(('benchmark', 'metric')))).values
        pm.append(contradiction(c).sel(model=t.model).contradictory.values[none_opposite])
        bh.append(contradiction(c, per_model=False).sel(model=t.model).contradictory.values[none_opposite])
    pm, bh = np.concatenate(pm), np.concatenate(bh)
    s = 'contradiction, one-way movers (6 of 12 cells at 0.12)'
    return [_row(s, f'false-flag rate, per-model control ({len(pm)} models)', pm.mean(), 0.0, 0.05, '<= 5%', len(pm)),
            dict(scenario=s, quantity='false-flag rate, cube-wide BH only', value=float(bh.mean()), target='(shown)', mc_se=np.nan, ok=True)]


TAXONOMY_BENCHMARKS = {'harm-a': ('harmful', ['refusal_rate']), 'harm-b': ('harmful', ['refusal_rate']),
                       'over': ('over-refusal', ['over_refusal']), 'jail': ('jailbreak', ['asr', 'refusal_rate']),
                       'tox': ('toxicity', ['toxic_rate'])}


def taxonomy_recovery(reps, effect=0.2):
    "Planted trade-off / within-construct / mixed derivatives given their kind."
    benches = list(TAXONOMY_BENCHMARKS)
    mets = sorted({k for _, ks in TAXONOMY_BENCHMARKS.values() for k in ks})
    cell = lambda b, k: (benches.index(b), mets.index(k))
    plans = {'trade-off': [('harm-a', 'refusal_rate', -1), ('over', 'over_refusal', 1), ('jail', 'refusal_rate', -1)],
             'within-construct': [('harm-a', 'refusal_rate', 1), ('jail', 'refusal_rate', -1)],
             'mixed': [('tox', 'toxic_rate', 1), ('harm-b', 'refusal_rate', -1)]}
    kinds = list(plans)
    got = {k: [] for k in kinds}; n_counted = []
    for r in range(reps):
        drift = np.zeros((4, 9, len(benches), len(mets)))
        for j in range(9):
            for b, k, s in plans[kinds[j % 3]]: drift[:, j][:, cell(b, k)[0], cell(b, k)[1]] = s*effect
        c, _ = _cube(5000 + r, n_bases=4, n_derivatives=9, n_items=300, benchmarks=TAXONOMY_BENCHMARKS,
                     complements={'asr': 'refusal_rate'}, drift=drift)
        res = contradiction(c)
        for j in range(9):
            ms = [f'ft-{g}-{j:02d}' for g in range(4)]
            got[kinds[j % 3]] += [str(v) for v in res.kind.sel(model=ms).values]
        n_counted.append(int(res.n_tested.max()))
    rows = [_row('taxonomy, planted kinds (effect 0.2, 300 items)', f'{k} recovered ({len(v)} derivatives)',
                 np.mean(np.array(v) == k), 0.8, 1.0, '>= 80%', len(v)) for k, v in got.items()]
    rows.append(_row('taxonomy, planted kinds (effect 0.2, 300 items)', 'hypothesis cells per model (jail asr = 1 - refusal_rate counted once)',
                     max(n_counted), 5, 5, '5 of 6 cells', 1e12))
    return rows


def scenarios(fast:bool=False) -> list:
    "All calibration rows; `fast` uses few replicates (seconds), for the tests."
    f = fast
    return (heterogeneity_size(4 if f else 60) + predictiveness_coverage(4 if f else 40, n_truth=4000 if f else 20000)
            + drivers_fpr(3 if f else 40, n_perm=49 if f else 199) + false_flags(3 if f else 40) + taxonomy_recovery(1 if f else 5))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--fast', action='store_true', help='few replicates (seconds)')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = pd.DataFrame(scenarios(a.fast))
    with pd.option_context('display.width', 200, 'display.max_colwidth', 90):
        print(df.to_string(index=False, formatters={'value': '{:.3f}'.format, 'mc_se': '{:.3f}'.format}))
    print(f"{len(df)} rows in {time.perf_counter() - t0:.0f} s; {int((~df.ok).sum())} off target")
    return 0 if df.ok.all() else 1


if __name__ == '__main__': sys.exit(main())
