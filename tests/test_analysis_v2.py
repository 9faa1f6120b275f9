"""Analyses that respect shared bases: multivariate heterogeneity, base-resampled predictiveness, grouped drivers,
the contradiction taxonomy with per-model control, the headline share, and complementary metrics counted once."""
import importlib.util
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import xarray as xr
from scipy import stats
from sklearn.model_selection import GroupKFold

from safedrift_wb.schema import SchemaError
from safedrift_wb.cube import build_cube
from safedrift_wb.analysis import (synthetic_cube, synthetic_family_items, synthetic_family_cube, hypothesis_cells,
                                   hypothesis_metrics, contradiction, contradiction_share, register_construct,
                                   construct_table, CONSTRUCTS, MOVEMENTS, KINDS, heterogeneity, mv_random_effects,
                                   dersimonian_laird, predictiveness, drift_drivers, group_folds, structured_targets)
from safedrift_wb.analysis.predictiveness import _weighted_spearman
from safedrift_wb.analysis.contradiction import bh_last_axis

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _calib():
    spec = importlib.util.spec_from_file_location('calib_analyses', ROOT/'bench'/'calib_analyses.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def family():
    "4 bases x 6 derivatives, 5 benchmarks; a jailbreak benchmark whose asr is 1 - refusal_rate."
    benches = {'harm': ('harmful', ['refusal_rate']), 'over': ('over-refusal', ['over_refusal']),
               'jail': ('jailbreak', ['asr', 'refusal_rate']), 'tox': ('toxicity', ['toxic_rate']),
               'harm2': ('harmful', ['refusal_rate'])}
    drift = np.zeros((4, 6, 5, 4))       # metrics sorted: asr, over_refusal, refusal_rate, toxic_rate
    drift[:, 0, 0, 2], drift[:, 0, 1, 1] = -0.25, 0.25        # derivative 0: refuses less everywhere (trade-off)
    drift[:, 1, 0, 2], drift[:, 1, 2, 2] = 0.25, -0.25        # derivative 1: refuses more harmful, more jailbreakable
    drift[:, 2, 3, 3], drift[:, 2, 4, 2] = 0.25, -0.25        # derivative 2: less toxic, refuses less (mixed)
    items, models, true = synthetic_family_items(4, 6, 300, benchmarks=benches, complements={'asr': 'refusal_rate'},
                                                 drift=drift, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return build_cube(items, models, n_boot=200, seed=0), true


# --- complementary metrics ---------------------------------------------------------------------------------------

def test_complementary_pair_counts_once(family):
    c, _ = family
    h = hypothesis_cells(c)
    assert not bool(h.sel(benchmark='jail', metric='asr').any())
    assert bool(h.sel(benchmark='jail', metric='refusal_rate').all())
    res = contradiction(c)
    ders = c.model.values[c.base.values != '']
    assert (res.n_tested.sel(model=ders) == 5).all()           # 6 measured cells, one complementary pair
    d1 = [m for m in ders if m.endswith('-01')]
    assert (res.n_less_safe.sel(model=d1) == 1).all()           # jail refusal_rate down and asr up: one finding
    assert hypothesis_metrics(c.drop_vars('complement_of')) == list(c.metric.values)


# --- heterogeneity -----------------------------------------------------------------------------------------------

def test_mv_random_effects_reduces_to_dersimonian_laird():
    rng = np.random.default_rng(3)
    y, se = rng.normal(0, 0.1, (4, 12)), rng.uniform(0.01, 0.1, (4, 12))
    y[1, :3] = np.nan
    a, b = mv_random_effects(y, se**2), dersimonian_laird(y, se)
    for k in ['mean', 'se', 'tau2', 'i2', 'q', 'q_p_value', 'k']:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-10, atol=1e-14)


def test_mv_random_effects_matches_gls_and_moments():
    rng = np.random.default_rng(4)
    L = rng.normal(size=(7, 7)); V = L @ L.T/70 + np.eye(7)*0.01
    y = rng.multivariate_normal(np.zeros(7), V + 0.05*np.eye(7))
    r = mv_random_effects(y, V)
    fe = sm.GLS(y, np.ones((7, 1)), sigma=V).fit()
    res = y - fe.params[0]
    W = np.linalg.inv(V)
    q = res @ W @ res
    assert r['q'] == pytest.approx(q, rel=1e-9)
    c = np.trace(W) - W.sum(0) @ W.sum(1)/W.sum()
    tau2 = max(0.0, (q - 6)/c)
    assert r['tau2'] == pytest.approx(tau2, rel=1e-9, abs=1e-14)
    re = sm.GLS(y, np.ones((7, 1)), sigma=V + tau2*np.eye(7)).fit()
    assert r['mean'] == pytest.approx(re.params[0], rel=1e-9)
    assert r['se'] == pytest.approx(np.sqrt(1/np.linalg.inv(V + tau2*np.eye(7)).sum()), rel=1e-9)
    assert r['q_p_value'] == pytest.approx(stats.chi2.sf(q, 6), rel=1e-9)
    # a missing effect is the same as dropping its row and column
    y2 = np.r_[y, np.nan]; V2 = np.pad(V, ((0, 1), (0, 1))); V2[-1, -1] = 0.3
    assert mv_random_effects(y2, V2)['q'] == pytest.approx(q, rel=1e-9)


def test_mv_random_effects_blocks_are_the_full_matrix():
    rng = np.random.default_rng(6)
    blocks = np.repeat(np.arange(3), [4, 2, 3])
    V = np.zeros((2, 9, 9))
    for g in range(3):
        I = np.flatnonzero(blocks == g); L = rng.normal(size=(2, len(I), len(I)))
        V[:, I[:, None], I[None, :]] = L @ np.swapaxes(L, 1, 2)/20 + 0.01*np.eye(len(I))
    y = rng.normal(0, 0.3, (2, 9)); y[1, 5] = np.nan
    a, b = mv_random_effects(y, V, blocks=blocks), mv_random_effects(y, V)
    for k in ['mean', 'se', 'tau2', 'i2', 'q', 'q_p_value', 'k']:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-9)


def test_heterogeneity_uses_drift_cov():
    c = synthetic_cube(20, 2, 1, n_bases=2, seed=3)
    ders = c.model.values[c.base.values != '']
    assert 'drift_cov' in c and heterogeneity(c).attrs['method'].startswith('multivariate')
    # with the diagonal equal to the interval-implied variance and no item count, V is drift_cov itself
    z = stats.norm.ppf(0.975)
    se = (c.drift_ci.sel(ci_bound='upper') - c.drift_ci.sel(ci_bound='lower'))/(2*z)
    cov = c.drift_cov.copy()
    for m in ders: cov.loc[dict(model=m, peer=m)] = se.sel(model=m).values**2
    c2 = c.assign(drift_cov=cov, n_shared=c.n_shared*0)
    h = heterogeneity(c2)
    V = cov.sel(model=ders, peer=ders).isel(benchmark=0, metric=0).fillna(0).values
    y = c2.safety_drift.sel(model=ders).isel(benchmark=0, metric=0).values
    ref = mv_random_effects(y, V)
    assert float(h.q.isel(benchmark=0, metric=0)) == pytest.approx(ref['q'], rel=1e-10)
    assert float(h['mean'].isel(benchmark=0, metric=0)) == pytest.approx(ref['mean'], rel=1e-10)
    assert int(h.n_bases.isel(benchmark=0, metric=0)) == 2
    b = c.base.sel(model=ders).values
    assert abs(V[0, list(b).index(b[0], 1)]) > 0                 # derivatives of one base do covary
    assert V[0, list(b).index(next(x for x in b if x != b[0]))] == 0


def test_heterogeneity_zero_width_gets_rule_of_three():
    c = synthetic_cube(6, 1, 1, seed=3).drop_vars(['drift_cov', 'peer'])
    c['drift_ci'] = c.drift_ci.copy(data=np.repeat(c.drift.values[..., None], 2, -1))
    c['n_items'] = c.n_items*0 + 100
    h = heterogeneity(c)
    y = c.safety_drift.sel(model=c.model.values[c.base.values != '']).values.ravel()
    ref = dersimonian_laird(y, np.full(3, np.sqrt(3)/100))
    assert float(h['mean'].squeeze()) == pytest.approx(ref['mean'])


def test_heterogeneity_q_size_with_shared_bases():
    rows = _calib().heterogeneity_size(4)
    assert rows[0]['ok'], rows[0]


# --- predictiveness ----------------------------------------------------------------------------------------------

def test_weighted_spearman_is_spearman_of_resampled_bases():
    rng = np.random.default_rng(5)
    bid = np.repeat(np.arange(5), [3, 4, 2, 5, 3])
    x = np.repeat(rng.uniform(size=5), [3, 4, 2, 5, 3]); y = x + rng.normal(0, 0.2, len(bid))
    y[2] = y[3]                                                   # a tie
    W = rng.multinomial(5, np.full(5, 0.2), size=6).astype(float)
    got = _weighted_spearman(x, y, np.ones(len(x), bool), bid, W)
    for w, g in zip(W, got):
        sel = np.concatenate([np.flatnonzero(bid == b) for b in range(5) for _ in range(int(w[b]))])
        ref = stats.spearmanr(x[sel], y[sel]).statistic if np.ptp(x[sel]) > 0 else np.nan
        np.testing.assert_allclose(g, ref, atol=1e-12, equal_nan=True)


def test_predictiveness_reports_bases_and_reasons():
    c = synthetic_cube(30, 2, 1, n_bases=4, seed=2)
    pr = predictiveness(c, n_boot=200)
    m = np.bincount([int(str(b)[-1]) for b in c.base.values if b])
    assert float(pr.n_eff_bases.max()) == pytest.approx(m.sum()**2/(m**2).sum())
    assert (pr.reason == '').all()
    lo, hi = pr.rank_corr_ci.sel(ci_bound='lower'), pr.rank_corr_ci.sel(ci_bound='upper')
    assert bool(((lo <= pr.rank_corr) & (pr.rank_corr <= hi)).all())
    # leave-one-base-out range from scipy
    s = c.score.isel(benchmark=0, metric=0).to_series()
    d = pd.DataFrame({'score': s, 'base': c.base.values}); d = d[d.base != '']; d['bs'] = s.reindex(d.base).values
    loo = [stats.spearmanr(d[d.base != b].bs, d[d.base != b].score).statistic for b in sorted(set(d.base))]
    assert float(pr.rank_corr_lobo_min.isel(benchmark=0, metric=0)) == pytest.approx(min(loo), abs=1e-12)
    assert float(pr.rank_corr_lobo_max.isel(benchmark=0, metric=0)) == pytest.approx(max(loo), abs=1e-12)
    two = predictiveness(c.sel(model=[m for m in c.model.values if str(c.base.sel(model=m).item()) in ('', 'base-0', 'base-1')]))
    assert bool(two.rank_corr.isnull().all()) and bool(two.rank_corr_ci.isnull().all())
    assert str(two.reason.values.flat[0]).startswith('only 2 base')


def test_predictiveness_coverage_four_bases():
    rows = _calib().predictiveness_coverage(4, n_truth=4000)
    assert rows[0]['ok'], rows[0]


# --- drivers -----------------------------------------------------------------------------------------------------

def test_group_folds_match_sklearn_and_keep_bases_whole():
    groups = np.repeat(np.arange(6), [9, 7, 5, 4, 3, 2])
    ours = {frozenset(te) for _, te in group_folds(groups, 3)}
    ref = {frozenset(te) for _, te in GroupKFold(3).split(np.zeros(len(groups)), groups=groups)}
    assert ours == ref
    for tr, te in group_folds(groups, 4):
        assert not set(groups[tr]) & set(groups[te]) and len(tr) + len(te) == len(groups)
    assert len(group_folds(np.zeros(10, int), 5)) == 5           # one base: ordinary folds


def test_structured_targets_permute_means_and_deviations():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(3), 4)
    Y = rng.normal(size=(12, 2))
    w = structured_targets(Y, g, rng, 5, between=False)
    for k in range(5):
        for b in range(3):
            np.testing.assert_allclose(np.sort(w[g == b, k], 0), np.sort(Y[g == b], 0))
    eq = structured_targets(Y, g, rng, 5)                      # equal bases: whole bases move, rows shuffled inside
    for k in range(5):
        blocks = sorted(tuple(np.sort(eq[g == b, k, 0]).round(12)) for b in range(3))
        assert blocks == sorted(tuple(np.sort(Y[g == b, 0]).round(12)) for b in range(3))
    g2 = np.repeat(np.arange(3), [5, 4, 3]); Y2 = rng.normal(size=(12, 2))
    bt = structured_targets(Y2, g2, rng, 5, within=False)   # unequal bases: the means move, deviations stay
    means = np.array([Y2[g2 == b].mean(0) for b in range(3)])
    for k in range(5):
        got = np.array([bt[g2 == b, k].mean(0) for b in range(3)])
        assert sorted(map(tuple, np.round(got, 12))) == sorted(map(tuple, np.round(means, 12)))
        np.testing.assert_allclose(bt[:, k] - got[g2], Y2 - means[g2], atol=1e-12)


def test_drivers_false_positive_rate_under_global_null():
    for row in _calib().drivers_fpr(8, n_perm=49):
        assert row['ok'], row


def test_drivers_find_base_level_and_derivative_level_effects():
    c, _ = synthetic_family_cube(10, 4, 300, n_bench=2, base_effect=0.2, tau=0.01, n_boot=200, seed=3)
    d = drift_drivers(c, features=['base_params'], n_perm=199)
    assert bool(d.signal.all()), d.attrs['summary']
    c2, _ = synthetic_family_cube(4, 10, 300, n_bench=2, lr_effect=-0.15, n_boot=200, seed=4)
    d2 = drift_drivers(c2, features=['lr', 'base_params'], n_perm=199)
    assert bool(d2.signal.all()) and (d2.importance.idxmax('feature') == 'lr').all()
    assert d2.attrs['cv'].startswith('folds of whole bases')


# --- contradiction -----------------------------------------------------------------------------------------------

def test_contradiction_kinds_on_planted_family(family):
    c, _ = family
    res = contradiction(c)
    for j, kind in [(0, 'trade-off'), (1, 'within-construct'), (2, 'mixed'), (3, 'none')]:
        got = [str(res.kind.sel(model=f'ft-{g}-{j:02d}').item()) for g in range(4)]
        assert got == [kind]*4, (j, got)
    assert set(np.unique(res.kind.values.astype(str))) <= set(KINDS)


def test_register_construct_changes_the_kind(family):
    c, _ = family
    saved_c, saved_m = dict(CONSTRUCTS), dict(MOVEMENTS)
    try:
        register_construct('toxicity', 'refusal', movements={'toxic_rate': ('refuses more', -1)})
        assert 'toxicity' in set(construct_table().category)
        # less toxic read as "refuses more", fewer harmful refusals as "refuses less": one construct, two directions
        assert str(contradiction(c).kind.sel(model='ft-0-02').item()) == 'within-construct'
        with pytest.raises(SchemaError, match='movement'):
            register_construct('x', 'y', movements={'m': ('up', 2)})
    finally:
        CONSTRUCTS.clear(); CONSTRUCTS.update(saved_c); MOVEMENTS.clear(); MOVEMENTS.update(saved_m)
    assert str(contradiction(c).kind.sel(model='ft-0-02').item()) == 'mixed'


def test_bh_last_axis_matches_scipy():
    rng = np.random.default_rng(8)
    p = rng.uniform(size=(5, 9))**3; p[2, [1, 4]] = np.nan
    q = bh_last_axis(p)
    for row, qr in zip(p, q):
        ok = np.isfinite(row)
        np.testing.assert_allclose(qr[ok], stats.false_discovery_control(row[ok]), rtol=1e-12)
        assert np.isnan(qr[~ok]).all()


def test_false_flags_controlled_per_model():
    rows = _calib().false_flags(3)
    assert rows[0]['ok'], rows[0]


# --- the headline share ------------------------------------------------------------------------------------------

def test_contradiction_share_counts_and_interval(family):
    c, _ = family
    res = contradiction(c)
    sh = contradiction_share(c, by='domain', n_boot=300)
    ders = c.model.values[c.base.values != '']
    r = res.sel(model=ders)
    assert float(sh.share.sel(domain='all')) == pytest.approx(float(r.contradictory.mean()))
    assert float(sh.share_trade_off.sel(domain='all')) == pytest.approx(float((r.kind == 'trade-off').mean()))
    assert float(sh.share_contradiction.sel(domain='all')) == pytest.approx(float(r.kind.isin(['within-construct', 'mixed']).mean()))
    for dom in sh.domain.values[1:]:
        ms = ders[c.domain.sel(model=ders).values == dom]
        assert int(sh.n_models.sel(domain=dom)) == len(ms)
        assert float(sh.share.sel(domain=dom)) == pytest.approx(float(res.contradictory.sel(model=ms).mean()))
    lo, hi = sh.share_ci.sel(domain='all').values
    assert 0 <= lo <= float(sh.share.sel(domain="all")) <= hi <= 1   # every base has 3 of 6 contradicting: width 0
    assert int(sh.n_bases.sel(domain='all')) == 4 and (sh.reason == '').all()
    few = contradiction_share(c.sel(model=[m for m in c.model.values if m.startswith(('base-0', 'base-1', 'ft-0', 'ft-1'))]), by=None)
    assert bool(few.share_ci.isnull().all()) and str(few.reason.item()).startswith('only 2 base')
    with pytest.raises(SchemaError, match='not a model coordinate'):
        contradiction_share(c, by='colour')
    xr.testing.assert_identical(c.sdw.contradiction_share(n_boot=300), sh)


def test_contradiction_share_interval_covers_over_bases():
    "With 12 bases whose derivatives all contradict with probability p, the share's interval covers p."
    hits = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        p = rng.uniform(0.2, 0.8)
        planted = np.repeat(rng.random((12, 1)) < p, 4, 1)        # a base's derivatives contradict together
        drift = np.zeros((12, 4, 2, 1))
        drift[:, :, 0, 0], drift[:, :, 1, 0] = np.where(planted, 0.3, 0.0), np.where(planted, -0.3, 0.0)
        c, _ = synthetic_family_cube(12, 4, 300, n_bench=2, drift=drift, n_boot=200, seed=seed)
        sh = contradiction_share(c, by=None, n_boot=500)
        lo, hi = sh.share_ci.sel(group='all').values
        hits.append(lo <= p <= hi)
    assert np.mean(hits) >= 6/8, hits
