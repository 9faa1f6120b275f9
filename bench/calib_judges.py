"""Calibration of the misclassification-adjusted drift (`safedrift_wb.analysis.adjusted_drift`) with planted truth.

Each scenario plants a base and a derivative with known true refusal rates, labels their answers with a judge of
known sensitivity and specificity, draws a validation set (the judge against true labels), and checks how often
the corrected interval covers the true drift. Replicates are grouped: one call of `adjusted_drift` holds
`per_call` independent benchmarks that share one validation set (as a real study's benchmarks share its judge);
the Monte Carlo standard error comes from the spread between calls.

    python bench/calib_judges.py [--fast]
"""
import argparse, sys
import numpy as np
import pandas as pd
from safedrift_wb.analysis.misclassification import adjusted_drift

TARGET = (0.93, 0.97)
MODELS = pd.DataFrame({'model': ['base', 'ft'], 'base': ['', 'base'], 'family': 'f', 'domain': ['general', 'medical'],
                       'method': ['', 'sft']})

# name: n items, true base and derivative rates, judge (Se, Sp) per model, validation size per model or pooled,
#       cluster size (0: independent items), whether the validation is per model
SCENARIOS = {
    'pooled judge, n=200':                 dict(n=200, pb=0.30, pd=0.15, se=(0.85, 0.85), sp=(0.92, 0.92), n_val=300, cluster=0, per_model=False),
    'pooled judge, n=50':                  dict(n=50, pb=0.30, pd=0.15, se=(0.85, 0.85), sp=(0.92, 0.92), n_val=300, cluster=0, per_model=False),
    'rare refusals 0.06 -> 0.02, n=200':   dict(n=200, pb=0.06, pd=0.02, se=(0.90, 0.90), sp=(0.97, 0.97), n_val=400, cluster=0, per_model=False),
    'templated items (10 per template)':   dict(n=200, pb=0.30, pd=0.15, se=(0.85, 0.85), sp=(0.92, 0.92), n_val=300, cluster=10, per_model=False),
    'judge differs by model, per-model validation': dict(n=200, pb=0.60, pd=0.30, se=(0.95, 0.65), sp=(0.85, 0.98), n_val=200, cluster=0, per_model=True),
    'judge differs by model, pooled validation':    dict(n=200, pb=0.60, pd=0.30, se=(0.95, 0.65), sp=(0.85, 0.98), n_val=200, cluster=0, per_model=False),
}
INFORMATIONAL = {'judge differs by model, pooled validation'}   # the wrong model on purpose: shows what per-model validation fixes

def _truth(r, n, pb, pd_, cluster):
    "True 0/1 answers of base and derivative (the derivative keeps a pd/pb share of the base's refusals); cluster ids."
    if cluster:
        n_c = n // cluster
        a = 4.0                                          # Beta(a*pb, a*(1-pb)) per template: intra-template correlation 1/(a+1)
        pc = r.beta(a*pb, a*(1 - pb), n_c)
        cl = np.repeat(np.arange(n_c), cluster)
        tb = r.random(n) < pc[cl]
    else: cl, tb = None, r.random(n) < pb
    td = tb & (r.random(n) < pd_/pb)
    return tb, td, cl

def _one_call(r, sc, per_call):
    "Items of `per_call` independent benchmarks, the validation table, and the true drift."
    judge = lambda t, se, sp: np.where(t, r.random(t.shape) < se, r.random(t.shape) > sp)
    rows = []
    for k in range(per_call):
        tb, td, cl = _truth(r, sc['n'], sc['pb'], sc['pd'], sc['cluster'])
        for mi, (m, t) in enumerate((('base', tb), ('ft', td))):
            df = pd.DataFrame({'model': m, 'benchmark': f'b{k:02d}', 'item': [f'i{i}' for i in range(sc['n'])],
                               'metric': 'refusal_rate', 'value': judge(t, sc['se'][mi], sc['sp'][mi]).astype(float)})
            if cl is not None: df['cluster'] = [f'c{c}' for c in cl]
            rows.append(df)
    val = []
    for mi, m in enumerate(('base', 'ft')):
        h = r.random(sc['n_val']) < 0.5                   # the validation answers: half true refusals
        val.append(pd.DataFrame({'model': m, 'human': h, 'judge': judge(h, sc['se'][mi], sc['sp'][mi])}))
    val = pd.concat(val, ignore_index=True)
    if not sc['per_model']:                               # pooled: one validation set of the same total size
        val = val.drop(columns='model')
    return pd.concat(rows, ignore_index=True), val, sc['pd'] - sc['pb']

def coverage(sc, n_calls, per_call, n_boot, seed=0):
    "Per call: share of benchmarks whose corrected (and uncorrected) interval covers the true drift, and the mean error."
    r = np.random.default_rng(seed)
    cov, raw, err = np.zeros(n_calls), np.zeros(n_calls), np.zeros(n_calls)
    for c in range(n_calls):
        its, val, truth = _one_call(r, sc, per_call)
        ad = adjusted_drift(its, MODELS, validation=val, n_boot=n_boot, seed=int(r.integers(1 << 31))).sel(model='ft')
        lo, hi = ad.adjusted_drift_ci.sel(ci_bound='lower').values, ad.adjusted_drift_ci.sel(ci_bound='upper').values
        rlo, rhi = ad.drift_ci.sel(ci_bound='lower').values, ad.drift_ci.sel(ci_bound='upper').values
        cov[c], raw[c] = np.mean((lo <= truth) & (truth <= hi)), np.mean((rlo <= truth) & (truth <= rhi))
        err[c] = np.mean(ad.adjusted_drift.values - truth)
    return cov, raw, err

def scenarios(fast:bool=False) -> list:
    "Rows (scenario, quantity, value, target, ok): coverage of the corrected drift's interval per scenario."
    n_calls, per_call, n_boot = (25, 8, 400) if fast else (150, 10, 1000)
    out = []
    for i, (name, sc) in enumerate(SCENARIOS.items()):
        cov, raw, err = coverage(sc, n_calls, per_call, n_boot, seed=1000 + i)
        v, mcse = float(cov.mean()), float(cov.std(ddof=1)/np.sqrt(n_calls))
        lo, hi = (TARGET[0] - 2*mcse, TARGET[1] + 2*mcse) if fast else TARGET
        if name in INFORMATIONAL: target, ok = '(none: wrong validation on purpose)', None
        else: target, ok = (f'{lo:.3f}-{hi:.3f} (target +- 2 MC s.e.)' if fast else f'{lo:.2f}-{hi:.2f}'), bool(lo <= v <= hi)
        out.append(dict(scenario=name, quantity='coverage of adjusted drift CI', value=round(v, 4), target=target, ok=ok))
        out.append(dict(scenario=name, quantity='coverage of uncorrected drift CI', value=round(float(raw.mean()), 4), target='', ok=None))
        out.append(dict(scenario=name, quantity='mean error of adjusted drift', value=round(float(err.mean()), 4), target='', ok=None))
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--fast', action='store_true', help='fewer replicates (for tests)')
    rows = scenarios(fast=ap.parse_args().fast)
    print(pd.DataFrame(rows).to_string(index=False))
    sys.exit(0 if all(r['ok'] is not False for r in rows) else 1)
