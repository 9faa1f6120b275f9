"""Analyses of the drift cube, checked against reference implementations and planted effects."""
import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings, strategies as st, HealthCheck
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests

from safedrift_wb.schema import SchemaError
from safedrift_wb.cube import bh_qvalues, build_cube
from safedrift_wb.analysis import (synthetic_cube, synthetic_tables, contradiction, contradiction_index,
                                   disagreement, sign_disagreement, spearman_matrix, dersimonian_laird, heterogeneity,
                                   spearman_rows, fisher_interval, rank_flips, predictiveness, ridge_cv_operator, oof_r2,
                                   drift_drivers, cohen_kappa, judge_flips, judge_agreement)


@pytest.fixture(scope='module')
def cube():
    return synthetic_cube(30, 4, 3, n_bases=3, domain_effect={'medical': -0.15}, tau=0.03, seed=11,
                          planted={'ft-000': {('bench-00', 'refusal_rate'): 0.35, ('bench-01', 'asr'): -0.35}})


@pytest.fixture(scope='module')
def cube_nan(cube):
    "The same cube with a fifth of the derivative cells unmeasured."
    rng = np.random.default_rng(0)
    keep = xr.DataArray(rng.random(cube.score.shape) > 0.2, dims=cube.score.dims) | (cube.base == '')
    out = cube.copy()
    for v in ['score', 'score_ci', 'drift', 'drift_ci', 'p_value', 'q_value', 'safety_drift', 'safety_drift_ci']:
        out[v] = cube[v].where(keep)
    return out


# --- multiple testing -------------------------------------------------------------------------------------------

def test_bh_matches_statsmodels_with_gaps():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=(7, 9)) ** 3
    p[rng.random(p.shape) < 0.2] = np.nan
    ok = np.isfinite(p)
    ref = multipletests(p[ok], method='fdr_bh')[1]
    np.testing.assert_allclose(bh_qvalues(p)[ok], ref, rtol=1e-12)
    assert np.isnan(bh_qvalues(p)[~ok]).all()


def test_cube_q_values_are_bh_over_derivative_cells(cube):
    p = cube.p_value.values
    ok = np.isfinite(p)
    np.testing.assert_allclose(cube.q_value.values[ok], multipletests(p[ok], method='fdr_bh')[1], rtol=1e-12)


# --- contradiction ----------------------------------------------------------------------------------------------

def test_contradiction_recovers_plant_and_matches_loop(cube):
    res = contradiction(cube, alpha=0.05)
    assert bool(res.contradictory.sel(model='ft-000'))
    assert float(res.contradiction_index.sel(model='ft-000')) > 0
    sig = (cube.q_value < 0.05) & cube.q_value.notnull()
    for m in cube.model.values:
        if cube.base.sel(model=m).item() == '':
            assert np.isnan(res.n_safer.sel(model=m)) and not bool(res.contradictory.sel(model=m))
            continue
        s = sig.sel(model=m).values; d = cube.safety_drift.sel(model=m).values
        assert res.n_safer.sel(model=m) == (s & (d > 0)).sum()
        assert res.n_less_safe.sel(model=m) == (s & (d < 0)).sum()


def test_contradiction_ignores_utility_metrics():
    c = synthetic_cube(8, 2, metrics=['refusal_rate', 'domain_accuracy'], seed=2,
                       planted={'ft-000': {('bench-00', 'refusal_rate'): -0.4, ('bench-00', 'domain_accuracy'): 0.4}})
    res = contradiction(c)
    assert not bool(res.contradictory.sel(model='ft-000'))
    assert bool(contradiction(c, include_utility=True).contradictory.sel(model='ft-000'))


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=20))
def test_contradiction_index_bounds_and_symmetry(pairs):
    a, r = np.array(pairs).T
    ci = contradiction_index(a, r)
    assert ((ci >= 0) & (ci <= 1)).all()
    np.testing.assert_allclose(ci, contradiction_index(r, a))
    assert (ci[(a == 0) | (r == 0)] == 0).all() and (ci[(a == r) & (a > 0)] == 1).all()


def test_contradiction_rejects_non_cube():
    with pytest.raises(SchemaError, match='drift cube'):
        contradiction(pd.DataFrame())


# --- disagreement -----------------------------------------------------------------------------------------------

def test_disagreement_matches_brute_force(cube_nan):
    ds = disagreement(cube_nan, alpha=0.1, detail=True)
    ders = cube_nan.model.values[cube_nan.base.values != '']
    c = cube_nan.sel(model=ders)
    labels = list(ds.cell.values)
    rng = np.random.default_rng(3)
    for i, j in rng.choice(len(labels), size=(15, 2)):
        (b1, k1), (b2, k2) = [(str(ds.benchmark.values[x]), str(ds.metric.values[x])) for x in (i, j)]
        s1, s2 = (c.safety_drift.sel(benchmark=b, metric=k).values for b, k in ((b1, k1), (b2, k2)))
        g1, g2 = (c.q_value.sel(benchmark=b, metric=k).values < 0.1 for b, k in ((b1, k1), (b2, k2)))
        both = g1 & g2 & np.isfinite(s1) & np.isfinite(s2)
        assert ds.n_both.values[i, j] == both.sum()
        if both.sum():
            assert ds.disagreement.values[i, j] == pytest.approx((np.sign(s1[both]) != np.sign(s2[both])).mean())
        ok = np.isfinite(s1) & np.isfinite(s2)
        if ok.sum() >= 3:
            assert ds.rank_corr.values[i, j] == pytest.approx(stats.spearmanr(s1[ok], s2[ok]).statistic, abs=1e-12)


def test_disagreement_labels_and_plant():
    plant = {f'ft-{i:03d}': {('bench-00', 'refusal_rate'): s*0.3, ('bench-01', 'refusal_rate'): -s*0.3}
             for i, s in zip(range(10), [1, -1]*5)}
    da = disagreement(synthetic_cube(13, 2, 1, planted=plant, seed=5))
    assert isinstance(da, xr.DataArray) and da.dims == ('cell', 'cell2')
    assert float(da.sel(cell='bench-00/refusal_rate', cell2='bench-01/refusal_rate')) == 1.0
    assert list(da.benchmark.values) == ['bench-00', 'bench-01']


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000))
def test_spearman_matrix_matches_pandas_with_gaps_and_ties(seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(5, 15)), 1)
    x[rng.random(x.shape) < 0.25] = np.nan
    rho, n = spearman_matrix(x)
    ref = pd.DataFrame(x.T).corr('spearman', min_periods=3).to_numpy()
    np.testing.assert_allclose(rho, ref, atol=1e-12, equal_nan=True)
    ok = np.isfinite(x).astype(float)
    np.testing.assert_array_equal(n, ok @ ok.T)


def test_sign_disagreement_small_case():
    share, nb = sign_disagreement(np.array([[1., -1, 1], [1, 1, -1]]), np.ones((2, 3), bool))
    assert nb[0, 1] == 3 and share[0, 1] == pytest.approx(2/3) and share[0, 0] == 0


# --- heterogeneity ----------------------------------------------------------------------------------------------

def test_dersimonian_laird_published_bcg():
    # Colditz et al. (1994) BCG trials, log risk ratios; metafor rma(method="DL") (Viechtbauer 2010)
    bcg = np.array([(4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619),
                    (33, 5036, 47, 5761), (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892),
                    (29, 7470, 45, 7232), (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338),
                    (27, 16886, 29, 17825)], float)
    a, b, c, d = bcg.T
    y = np.log((a/(a + b))/(c/(c + d))); v = 1/a - 1/(a + b) + 1/c - 1/(c + d)
    r = dersimonian_laird(y, np.sqrt(v))
    assert r['tau2'] == pytest.approx(0.3088, abs=5e-5) and r['q'] == pytest.approx(152.2330, abs=5e-4)
    assert r['i2'] == pytest.approx(0.9212, abs=5e-5) and r['mean'] == pytest.approx(-0.7141, abs=5e-5)
    assert (r['lower'], r['upper']) == (pytest.approx(-1.0644, abs=5e-5), pytest.approx(-0.3638, abs=5e-5))


def statsmodels_dl(y, v):
    "(tau2, mean, se, q) of statsmodels' DerSimonian-Laird fit, truncated at tau2 = 0 as DerSimonian and Laird do."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        sm = combine_effects(y, v, method_re='dl')
    # statsmodels leaves a negative moment estimate untruncated; truncated at 0 the answer is the fixed-effect one
    if sm.tau2 > 0: return sm.tau2, sm.mean_effect_re, sm.sd_eff_w_re, sm.q
    return 0.0, sm.mean_effect_fe, sm.sd_eff_w_fe, sm.q


@settings(max_examples=40)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(0.01, 0.5)), min_size=2, max_size=25))
def test_dersimonian_laird_matches_statsmodels(studies):
    y, se = np.array(studies).T
    r = dersimonian_laird(y, se)
    tau2, ref_mean, ref_se, q = statsmodels_dl(y, se**2)
    assert r['tau2'] == pytest.approx(tau2, rel=1e-8, abs=1e-12)
    assert r['mean'] == pytest.approx(ref_mean, rel=1e-8, abs=1e-12)
    assert r['se'] == pytest.approx(ref_se, rel=1e-8)
    assert r['q'] == pytest.approx(q, rel=1e-8, abs=1e-10)
    # near Q = 0 the chi-square tail moves like sqrt(Q), so rounding in Q (1e-12 against 0) shows in p by 1e-6:
    # Q is compared with statsmodels above, p with the chi-square tail of our own Q
    assert r['q_p_value'] == pytest.approx(stats.chi2.sf(r['q'], len(y) - 1), rel=1e-12, abs=1e-15)
    if q > 1e-6: assert r['q_p_value'] == pytest.approx(stats.chi2.sf(q, len(y) - 1), abs=1e-6)


def test_heterogeneity_uses_interval_widths_and_groups(cube):
    # without drift_cov (cubes of earlier versions) the standard errors come from the interval widths and the
    # analysis is DerSimonian-Laird; with drift_cov see tests/test_analysis_v2.py
    h = heterogeneity(cube.drop_vars(['drift_cov', 'peer'], errors='ignore'), by='domain', alpha=0.05)
    assert h.attrs['method'].startswith('DerSimonian-Laird')
    z = stats.norm.ppf(0.975)
    dom = 'medical'
    ms = cube.model.values[(cube.base.values != '') & (cube.domain.values == dom)]
    c = cube.sel(model=ms, benchmark='bench-02', metric='asr')
    se = (c.drift_ci.sel(ci_bound='upper') - c.drift_ci.sel(ci_bound='lower')).values/(2*z)
    tau2, mean, _, _ = statsmodels_dl(c.safety_drift.values, se**2)
    cell = h.sel(domain=dom, benchmark='bench-02', metric='asr')
    assert float(cell['mean']) == pytest.approx(mean, rel=1e-9)
    assert float(cell.tau2) == pytest.approx(tau2, rel=1e-8, abs=1e-14)
    assert int(cell.n_models) == len(ms)
    assert float(h['mean'].sel(domain='medical').mean()) == pytest.approx(-0.15, abs=0.05)
    with pytest.raises(SchemaError, match='not a model coordinate'):
        heterogeneity(cube, by='colour')


def test_heterogeneity_zero_width_interval_gets_floor():
    c = synthetic_cube(6, 1, 1, seed=3)
    c['drift_ci'] = c.drift_ci.copy(data=np.repeat(c.drift.values[..., None], 2, -1))   # every interval of width 0
    h = heterogeneity(c)
    assert int(h.n_models.squeeze()) == 3 and np.isfinite(float(h['mean'].squeeze()))


# --- predictiveness ---------------------------------------------------------------------------------------------

def test_spearman_rows_and_fisher(cube_nan):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(3, 12)), rng.normal(size=(3, 12)); x[0, :2] = np.nan
    rho, n = spearman_rows(x, y)
    for i in range(3):
        ok = np.isfinite(x[i])
        assert rho[i] == pytest.approx(stats.spearmanr(x[i, ok], y[i, ok]).statistic, abs=1e-12)
    lo, hi = fisher_interval(rho, n)
    assert ((lo < rho) & (rho < hi)).all()


def test_rank_flips_matches_loop():
    rng = np.random.default_rng(5)
    b, d = rng.integers(0, 5, 15).astype(float), rng.integers(0, 5, 15).astype(float)
    flips = comp = 0
    for i, j in itertools.combinations(range(15), 2):
        sb, sd = np.sign(b[i] - b[j]), np.sign(d[i] - d[j])
        if sb and sd: comp += 1; flips += sb != sd
    fr, n = rank_flips(b, d)
    assert n == comp and fr == pytest.approx(flips/comp)


def test_predictiveness_matches_pandas(cube_nan):
    pr = predictiveness(cube_nan, by='domain')
    for b, k in [('bench-00', 'refusal_rate'), ('bench-03', 'over_refusal')]:
        s = cube_nan.score.sel(benchmark=b, metric=k).to_series()
        df = pd.DataFrame({'score': s, 'base': cube_nan.base.values, 'domain': cube_nan.domain.values})
        d = df[df.base != ''].copy(); d['bscore'] = df.score.reindex(d.base).values
        d = d.dropna(subset=['score', 'bscore']); d['diff'] = d.score - d.bscore
        cell = pr.sel(benchmark=b, metric=k)
        assert int(cell.n_pairs) == len(d)
        assert float(cell.mae_base) == pytest.approx(d['diff'].abs().mean(), abs=1e-12)
        assert float(cell.rmse_base) == pytest.approx(np.sqrt((d['diff']**2).mean()), abs=1e-12)
        shift = [d[(d.domain == r.domain) & (d.base != r.base)]['diff'].mean() for r in d.itertuples()]
        assert float(cell.mae_shift) == pytest.approx((d['diff'] - shift).abs().mean(), abs=1e-12)
        assert float(cell.rank_corr) == pytest.approx(stats.spearmanr(d.bscore, d.score).statistic, abs=1e-12)


# --- drivers ----------------------------------------------------------------------------------------------------

def test_ridge_operator_matches_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(6)
    X = np.column_stack([rng.normal(size=30), rng.integers(0, 2, 30), np.ones(30)])
    y = X[:, 0] - X[:, 1] + rng.normal(size=30)
    kf = KFold(4, shuffle=True, random_state=1)
    H, _ = ridge_cv_operator(X, list(kf.split(X)), ridge_alpha=0.5)
    ref = cross_val_predict(make_pipeline(StandardScaler(), Ridge(alpha=0.5)), X, y, cv=kf)
    np.testing.assert_allclose(H @ y, ref, atol=1e-10)
    assert oof_r2(y, ref) == pytest.approx(1 - ((y - ref)**2).sum()/((y - y.mean())**2).sum())


def test_drift_drivers_finds_planted_lr_and_not_noise():
    found = drift_drivers(synthetic_cube(53, 2, 1, lr_effect=-0.12, n_items=400, seed=7), n_perm=99)
    assert bool(found.signal.all())
    assert (found.importance.idxmax('feature') == 'lr').all()
    null = drift_drivers(synthetic_cube(53, 2, 1, n_items=400, seed=8), n_perm=99)
    assert not bool(null.signal.any()) and null.attrs['summary'].startswith('no predictive signal')
    p = null.p_value.values.ravel()
    np.testing.assert_allclose(null.q_value.values.ravel(), multipletests(p, method='fdr_bh')[1])


def test_drift_drivers_small_and_bad_input():
    with pytest.warns(UserWarning, match='too few derivatives'):
        r = drift_drivers(synthetic_cube(7, 1, 1, seed=1), n_perm=5)
    assert np.isnan(r.r2).all() and not bool(r.signal.any())
    c = synthetic_cube(20, 1, 1, seed=2)
    with pytest.raises(SchemaError, match='not model coordinates'):
        drift_drivers(c, features=['size'])
    one = drift_drivers(c, features=['steps'], n_perm=20)
    assert list(one.feature.values) == ['steps']
    with pytest.warns(UserWarning, match='no usable feature'):
        drift_drivers(c.assign_coords(lr=('model', np.ones(20)), domain=('model', ['x']*20), method=('model', ['y']*20),
                                      steps=('model', np.ones(20))), n_perm=5)


# --- judges -----------------------------------------------------------------------------------------------------

@settings(max_examples=30)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=2, max_size=60))
def test_cohen_kappa_matches_sklearn(pairs):
    from sklearn.metrics import cohen_kappa_score
    a, b = np.array(pairs, float).T
    po, k, n = cohen_kappa(a, b)
    assert po == pytest.approx((a == b).mean())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ref = cohen_kappa_score(a, b)
    if np.isfinite(ref) and len(set(a)) + len(set(b)) > 2: assert k == pytest.approx(ref, abs=1e-12)


def test_judge_flips_marks_changed_conclusions(cube):
    other = cube.copy(deep=True)
    m, b, k = 'ft-001', 'bench-02', 'refusal_rate'
    other['q_value'].loc[dict(model=m, benchmark=b, metric=k)] = 0.001
    other['safety_drift'].loc[dict(model=m, benchmark=b, metric=k)] = -0.2
    fl = judge_flips(cube, other, names=('regex', 'llm'))
    flips = fl.conclusion_flip.values
    assert flips.sum() == int(float(cube.q_value.sel(model=m, benchmark=b, metric=k)) >= 0.05 or
                               float(cube.safety_drift.sel(model=m, benchmark=b, metric=k)) > 0)
    assert fl.conclusion_b.sel(model=m, benchmark=b, metric=k).item() == 'less_safe'
    assert fl.attrs['judge_a'] == 'regex'


def test_judge_agreement_on_items():
    items, models = synthetic_tables(6, 2, 1, n_items=50, level='items', seed=3)
    flipped = items.assign(value=np.where(items.index % 10 == 0, 1 - items.value, items.value))
    both = pd.concat([items.assign(judge='a'), flipped.assign(judge='b')])
    ja = judge_agreement(both, models, n_boot=100)
    expect = (items.value == flipped.value).groupby([items.benchmark, items.metric]).mean()
    for (b, k), v in expect.items():
        assert float(ja.agreement.sel(benchmark=b, metric=k)) == pytest.approx(v)
    assert 'conclusion_flip' in ja and ja.sizes['model'] == 6
    with pytest.raises(SchemaError, match='two judges'):
        judge_agreement(pd.concat([both, items.assign(judge='c')]))
    with pytest.raises(SchemaError, match='scored by both'):
        judge_agreement(pd.concat([items.assign(judge='a'), items.assign(judge='b', item=items['item'] + 'x')]))


# --- the accessor and build_cube output -------------------------------------------------------------------------

def test_accessor_forwards(cube):
    xr.testing.assert_identical(cube.sdw.contradiction(alpha=0.1), contradiction(cube, alpha=0.1))
    xr.testing.assert_identical(cube.sdw.disagreement(), disagreement(cube))
    assert isinstance(cube.drift, xr.DataArray)   # the variable is not shadowed


def test_analyses_run_on_build_cube_output():
    items, models = synthetic_tables(12, 3, 2, n_items=60, level='items', seed=21,
                                     planted={'ft-000': {('bench-00', 'refusal_rate'): 0.45, ('bench-01', 'over_refusal'): -0.45}})
    c = build_cube(items, models, n_boot=300, seed=0)
    assert bool(contradiction(c).contradictory.sel(model='ft-000'))
    h = heterogeneity(c, by='family')
    assert int(h.n_models.sum()) == 9*6
    assert int(predictiveness(c).n_pairs.max()) == 9
    assert disagreement(c).sizes['cell'] == 6
    with pytest.warns(UserWarning, match='too few'):
        drift_drivers(c, n_perm=10)
