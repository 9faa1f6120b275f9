"""Judges as a dimension of the cube, the cells that flip with the judge, misclassification-adjusted drift, and the
calibration driver: checked against per-judge cubes, hand-made flips, planted truth and human labels (XSTest)."""
import runpy
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from safedrift_wb.common.errors import UsageError
from safedrift_wb.common.paths import shared_data_dir
from safedrift_wb.cube import build_cube, load_cube, save_cube
from safedrift_wb.schema import SchemaError
from safedrift_wb.analysis.synthetic import synthetic_tables
from safedrift_wb.analysis.judge_agreement import judge_cube, judge_sensitivity
from safedrift_wb.analysis.misclassification import adjusted_drift, rogan_gladen, validation_counts

ROOT = Path(__file__).resolve().parent.parent
MODELS2 = pd.DataFrame({'model': ['base', 'ft'], 'base': ['', 'base'], 'family': 'f', 'domain': ['general', 'medical'],
                        'method': ['', 'sft']})


@pytest.fixture(scope='module')
def two_judges():
    "Items scored by `a` (the planted labels) and `b` (the labels of ft-001 reversed: its drift changes sign)."
    its, mods = synthetic_tables(10, 3, 2, n_bases=2, n_items=120, level='items',
                                 planted={'ft-000': 0.3, 'ft-001': 0.3}, seed=3)
    b = its.copy()
    rev = b.model.isin(['ft-001'])
    b.loc[rev, 'value'] = 1 - b.loc[rev, 'value']
    return pd.concat([its.assign(judge='a'), b.assign(judge='b')], ignore_index=True), its, mods


# --- judge_cube ---------------------------------------------------------------------------------------------------

def test_judge_cube_slices_are_the_per_judge_cubes(two_judges):
    both, its, mods = two_judges
    jc = judge_cube(both, mods, n_boot=200, seed=4)
    assert list(jc.judge.values) == ['a', 'b'] and jc.q_value.dims[0] == 'judge'
    for j in ['a', 'b']:
        alone = build_cube(both[both.judge == j].drop(columns='judge'), mods, n_boot=200, seed=4)
        got = jc.sel(judge=j, drop=True)
        for v in ['score', 'drift', 'drift_ci', 'p_value', 'q_value', 'safety_drift', 'n_items', 'n_shared']:
            np.testing.assert_allclose(got[v].values, alone[v].values, rtol=1e-12, err_msg=v)
    # q-values within each judge: BH over that judge's cells only
    from scipy.stats import false_discovery_control
    p = jc.p_value.sel(judge='b').values.ravel(); ok = ~np.isnan(p)
    np.testing.assert_allclose(jc.q_value.sel(judge='b').values.ravel()[ok], false_discovery_control(p[ok]), rtol=1e-10)
    assert list(jc.domain.values) == list(mods.domain) and jc.attrs['judges'] == '["a", "b"]'
    assert 'within each judge' in jc.attrs['q_scope'] and 'created' in jc.attrs


def test_judge_cube_round_trips_through_save_cube(two_judges, tmp_path):
    both, its, mods = two_judges
    jc = judge_cube(both, mods, n_boot=100)
    save_cube(jc, tmp_path / 'j.nc')
    back = load_cube(tmp_path / 'j.nc')
    xr.testing.assert_identical(back[['q_value', 'safety_drift', 'scored']], jc[['q_value', 'safety_drift', 'scored']])
    assert len(judge_sensitivity(back)) == len(judge_sensitivity(jc))


def test_judge_cube_order_subsets_and_missing_cells(two_judges):
    both, its, mods = two_judges
    assert list(judge_cube(both, mods, judges=['b', 'a'], n_boot=100).judge.values) == ['b', 'a']
    assert list(judge_cube(both, mods, judges='b', n_boot=100).judge.values) == ['b']
    # judge c scored only one benchmark (and reversed ft-001 there): under c the other benchmarks keep a's values,
    # as build_cube(judge='c') does, `scored` says so, and only bench-00 is compared
    c = both[(both.judge == 'b') & (both.benchmark == 'bench-00')].assign(judge='c')
    jc = judge_cube(pd.concat([both[both.judge == 'a'], c]), mods, n_boot=100)
    assert list(jc.benchmark.values) == ['bench-00', 'bench-01', 'bench-02']
    np.testing.assert_array_equal(jc.drift.sel(judge='c', benchmark='bench-01').values, jc.drift.sel(judge='a', benchmark='bench-01').values)
    sc = jc.scored.sel(judge='c').transpose('benchmark', 'metric').values
    assert sc[0].all() and not sc[1:].any()
    assert jc.scored.sel(judge='a').all()
    assert not jc.category.isnull().any() and jc.higher_is_safer.dtype == bool
    js = judge_sensitivity(jc)
    assert js.attrs['n_compared'] == int((jc.base != '').sum()) * jc.sizes['metric']
    assert set(js.index.get_level_values('benchmark')) == {'bench-00'} and set(js.index.get_level_values('model')) == {'ft-001'}


def test_judge_cube_bad_input(two_judges):
    both, its, mods = two_judges
    with pytest.raises(SchemaError, match="'judge' column"): judge_cube(its, mods)
    with pytest.raises(SchemaError, match=r"\['z'\] not in the items"): judge_cube(both, mods, judges=['a', 'z'])
    with pytest.raises(UsageError, match='repeat'): judge_cube(both, mods, judges=['a', 'a'])
    with pytest.raises(UsageError, match='not judge='): judge_cube(both, mods, judge='a')
    bad = both.copy(); bad.loc[5, 'judge'] = None
    with pytest.raises(SchemaError, match='row 5'): judge_cube(bad, mods)


# --- judge_sensitivity --------------------------------------------------------------------------------------------

def test_judge_sensitivity_finds_the_reversed_model(two_judges):
    both, its, mods = two_judges
    jc = judge_cube(both, mods, n_boot=200)
    js = judge_sensitivity(jc)
    # only ft-001's labels differ between the judges; its planted drift of 0.3 reverses, significantly under both
    assert set(js.index.get_level_values('model')) == {'ft-001'}
    a, b = jc.sel(judge='a', model='ft-001'), jc.sel(judge='b', model='ft-001')
    flips = (np.sign(a.safety_drift) * np.sign(b.safety_drift) < 0) | ((a.q_value < 0.05) != (b.q_value < 0.05))
    assert len(js) == int(flips.sum()) > 0
    n_der = int((jc.base != '').sum())
    assert js.attrs['n_compared'] == n_der * jc.sizes['benchmark'] * jc.sizes['metric']
    concl = lambda c: np.where(c.q_value < 0.05, np.where(c.safety_drift > 0, 'safer', 'less_safe'), 'no_change')
    n_conc = int((concl(a) != concl(b)).sum())
    assert js.attrs['n_conclusion_flips'] == n_conc
    assert js.attrs['share'] == pytest.approx(n_conc / js.attrs['n_compared'])
    dom = str(jc.domain.sel(model='ft-001').values)
    n_dom = int(((jc.base != '') & (jc.domain == dom)).sum()) * jc.sizes['benchmark'] * jc.sizes['metric']
    assert js.attrs['share_by_domain'][dom] == pytest.approx(n_conc / n_dom)
    assert all(v == 0 for d, v in js.attrs['share_by_domain'].items() if d != dom)
    assert {'conclusion[a]', 'q_value[b]', 'safety_drift[a]', 'sign_flip'} <= set(js.columns)


def test_judge_sensitivity_three_judges_by_hand():
    its, mods = synthetic_tables(6, 2, 1, n_items=80, level='items', planted={'ft-000': 0.3}, seed=10)
    one = build_cube(its, mods, n_boot=100)
    c3 = xr.concat([one] * 3, dim=pd.Index(['j1', 'j2', 'j3'], name='judge'))
    cells = [dict(model='ft-000', benchmark='bench-00', metric='refusal_rate'),
             dict(model='ft-001', benchmark='bench-01', metric='refusal_rate')]
    c3['safety_drift'].loc[dict(judge='j3', **cells[0])] = -float(one.safety_drift.sel(cells[0]))   # sign only
    q1 = float(one.q_value.sel(cells[1]))
    c3['q_value'].loc[dict(judge='j2', **cells[1])] = 0.9 if q1 < 0.05 else 1e-4                  # significance only
    c3['q_value'].loc[dict(judge='j1', model='ft-002', benchmark='bench-00', metric='refusal_rate')] = np.nan
    js = judge_sensitivity(c3)
    got = {k[:2]: (r.sign_flip, r.significance_flip) for k, r in js.iterrows()}
    assert got == {('ft-000', 'bench-00'): (True, False),
                   ('ft-001', 'bench-01'): (False, True)}
    n_der = int((one.base != '').sum())
    assert js.attrs['n_compared'] == n_der * 2 * 1   # a cell tested under two judges of three still counts
    with pytest.raises(SchemaError, match="'judge' dimension"): judge_sensitivity(one)
    with pytest.raises(SchemaError, match="'judge' dimension"): judge_sensitivity(c3.isel(judge=[0]))


# --- adjusted_drift -----------------------------------------------------------------------------------------------

def _planted(r, n, pb, pd_, se, sp, n_val, per_model=False):
    "Two models' judged labels on n items (true rates pb, pd), the validation table, the true drift."
    judge = lambda t, s, e: np.where(t, r.random(t.shape) < s, r.random(t.shape) > e)
    tb = r.random(n) < pb
    td = tb & (r.random(n) < pd_ / pb)
    se, sp = np.broadcast_to(se, 2), np.broadcast_to(sp, 2)
    its = pd.concat([pd.DataFrame({'model': m, 'benchmark': 'harmful', 'item': np.arange(n).astype(str),
                                   'metric': 'refusal_rate', 'value': judge(t, se[i], sp[i]).astype(float)})
                     for i, (m, t) in enumerate([('base', tb), ('ft', td)])], ignore_index=True)
    val = []
    for i, m in enumerate(['base', 'ft'] if per_model else ['*']):
        h = r.random(n_val) < 0.5
        val.append(pd.DataFrame({'model': m, 'human': h, 'judge': judge(h, se[i], sp[i])}))
    val = pd.concat(val, ignore_index=True)
    return its, (val if per_model else val.drop(columns='model')), pd_ - pb


def test_rogan_gladen_and_counts_by_hand():
    assert rogan_gladen(0.8 * 0.25 + 0.1 * 0.75, 0.8, 0.9) == pytest.approx(0.25)
    assert rogan_gladen(0.05, 0.8, 0.9) == 0.0 and rogan_gladen(0.05, 0.8, 0.9, clip=False) == pytest.approx(-0.05 / 0.7)
    assert np.isnan(rogan_gladen(0.3, 0.4, 0.5))
    vc = validation_counts(pd.DataFrame({'human': [0.9, 0.7, 0.1, 0.2, 0.0], 'judge': [1, 0, 0, 1, 0]}))
    assert vc.loc['*', ['tp', 'fn', 'tn', 'fp']].tolist() == [1, 1, 2, 1]
    with pytest.raises(SchemaError, match='whole numbers'):
        validation_counts(pd.DataFrame({'tp': [1.5], 'fn': [1], 'tn': [1], 'fp': [0]}))
    with pytest.raises(SchemaError, match="column 'judge'"):
        validation_counts(pd.DataFrame({'human': [1, 0], 'judge': ['yes', 'no']}))


def test_adjusted_drift_point_estimate_and_delta_method_width():
    "At large n the interval's width matches the delta method: Var(D/J) = Var(D)/J^2 + D^2 Var(J)/J^4."
    r = np.random.default_rng(5)
    its, val, truth = _planted(r, 4000, 0.4, 0.2, 0.85, 0.9, 2000)
    ad = adjusted_drift(its, MODELS2, validation=val, n_boot=4000, seed=1).sel(model='ft', benchmark='harmful')
    vc = validation_counts(val).loc['*']
    J = vc.sensitivity + vc.specificity - 1
    assert float(ad.adjusted_drift) == pytest.approx(float(ad.drift) / J, rel=1e-12)
    w = its.pivot(index='item', columns='model', values='value')
    d = w.ft - w.base
    var_d = d.var(ddof=1) / len(d)
    var_j = vc.sensitivity * (1 - vc.sensitivity) / (vc.tp + vc.fn) + vc.specificity * (1 - vc.specificity) / (vc.tn + vc.fp)
    sd = np.sqrt(var_d / J**2 + d.mean()**2 * var_j / J**4)
    width = float(ad.adjusted_drift_ci[1] - ad.adjusted_drift_ci[0])
    assert width == pytest.approx(2 * stats.norm.ppf(0.975) * sd, rel=0.08)
    # the uncorrected interval is the paired bootstrap of the same items
    assert float(ad.drift_ci[1] - ad.drift_ci[0]) == pytest.approx(2 * 1.96 * np.sqrt(var_d), rel=0.08)
    assert float(ad.adjusted_safety_drift) == float(ad.adjusted_drift)   # refusal_rate: higher is safer
    assert ad.attrs['validation'] == 'pooled over models'


@pytest.mark.parametrize('n,pb,pd_,se,sp,per_model', [
    (200, 0.30, 0.15, 0.85, 0.92, False),
    (60, 0.08, 0.02, 0.90, 0.97, False),
    (200, 0.60, 0.30, (0.95, 0.65), (0.85, 0.98), True)])
def test_adjusted_drift_covers_planted_truth(n, pb, pd_, se, sp, per_model):
    r = np.random.default_rng(int(n * 1000 * pb))
    reps = 160
    hit = np.zeros(reps, bool)
    raw = np.zeros(reps, bool)
    for k in range(reps):
        its, val, truth = _planted(r, n, pb, pd_, se, sp, 250, per_model)
        a = adjusted_drift(its, MODELS2, validation=val, n_boot=400, seed=k).sel(model='ft', benchmark='harmful')
        hit[k] = a.adjusted_drift_ci[0] <= truth <= a.adjusted_drift_ci[1]
        raw[k] = a.drift_ci[0] <= truth <= a.drift_ci[1]
    # 160 replicates: Monte Carlo s.e. of a 95% coverage is 1.7 points
    assert 0.90 <= hit.mean() <= 0.99, hit.mean()
    if per_model or pb > 0.1: assert raw.mean() < 0.88   # without the correction the interval misses the truth often


def test_adjusted_drift_bad_input():
    r = np.random.default_rng(0)
    its, val, _ = _planted(r, 50, 0.3, 0.15, 0.85, 0.92, 100)
    with pytest.raises(UsageError, match='several judges'):
        adjusted_drift(pd.concat([its.assign(judge='a'), its.assign(judge='b')]), MODELS2, validation=val)
    with pytest.raises(UsageError, match='several metrics'):
        adjusted_drift(pd.concat([its, its.assign(metric='over_refusal')]), MODELS2, validation=val)
    with pytest.raises(SchemaError, match='no better than chance'):
        adjusted_drift(its, MODELS2, validation=pd.DataFrame({'tp': [3], 'fn': [7], 'tn': [5], 'fp': [5]}))
    with pytest.raises(UsageError, match='n_boot'): adjusted_drift(its, MODELS2, validation=val, n_boot=10)
    with pytest.raises(SchemaError, match='not in the model table'):
        adjusted_drift(pd.concat([its, its[its.model == 'ft'].assign(model='other')]), MODELS2, validation=val)


def test_adjusted_drift_on_xstest_human_labels():
    "XSTest: two models' completions of the same 450 prompts, labelled by people; the refusal rules as the judge."
    sd = shared_data_dir()
    files = None if sd is None else sorted((sd / 'xstest' / 'model_completions').glob('*.csv'))
    if not files: pytest.skip("XSTest completions not found under the shared data folder (../shared/data/xstest); not measured")
    judges = pytest.importorskip('safedrift_wb.judges')
    df = pd.concat([pd.read_csv(p).assign(model=p.stem.split('_')[-1]) for p in files], ignore_index=True)
    df['human'] = (df.final_label != '1_full_compliance').astype(float)
    df['judged'] = (np.asarray(judges.RefusalJudge()(df.prompt.tolist(), df.completion.fillna('').tolist())) >= 0.5).astype(float)
    name = {'llama2orig': 'llama2', 'mistralinstruct': 'mistral'}
    df['model'] = df.model.map(name)
    models = pd.DataFrame({'model': ['llama2', 'mistral'], 'base': ['', 'llama2'], 'family': 'x', 'domain': 'general',
                           'method': ['', 'other']})
    items = df.assign(benchmark='xstest', item=df.id, metric='refusal_rate', value=df.judged)
    human = df.pivot(index='id', columns='model', values='human')
    truth = float((human.mistral - human.llama2).mean())
    # validation: the human labels of a random half of the prompts, per model (the rules miss Mistral's soft refusals)
    half = set(pd.Series(sorted(df.id.unique())).sample(frac=0.5, random_state=0))
    val = df[df.id.isin(half)][['model', 'human', 'judged']].rename(columns={'judged': 'judge'})
    ad = adjusted_drift(items, models, validation=val, n_boot=2000).sel(model='mistral', benchmark='xstest')
    lo, hi = ad.adjusted_drift_ci.values
    assert lo <= truth <= hi, (truth, float(ad.adjusted_drift), lo, hi)
    assert abs(float(ad.adjusted_drift) - truth) < abs(float(ad.drift) - truth)
    vc = validation_counts(val)
    assert vc.loc['mistral', 'sensitivity'] < 0.7 < vc.loc['llama2', 'sensitivity']


# --- the calibration driver and the judges' calibration -----------------------------------------------------------

def _driver():
    return runpy.run_path(str(ROOT / 'bench' / 'calibration.py'), run_name='calibration_under_test')


def test_calibration_driver_counts_targets_and_exit_codes(capsys):
    d = _driver()
    row = lambda ok, q='coverage': dict(scenario='s', quantity=q, value=0.95, target='0.93-0.97', ok=ok)
    good = types.SimpleNamespace(scenarios=lambda fast=False: [row(True), row(None, 'info'), row(True)])
    bad = types.SimpleNamespace(scenarios=lambda fast=False: [row(True), row(False)])
    def boom(fast=False): raise RuntimeError('simulated failure')
    assert d['run']({'x': good}, fast=True)[:2] == (2, 2)
    assert d['run']({'x': good, 'y': bad})[:2] == (3, 4)
    out = capsys.readouterr().out
    assert '== y ==' in out and 'FAIL' in out and '3 of 3' not in out
    assert d['run']({'x': None, 'z': types.SimpleNamespace(scenarios=boom)})[2] == ['x', 'z']
    assert 'simulated failure' in capsys.readouterr().out
    with pytest.raises(TypeError, match='lacks'): d['check_rows']([{'scenario': 's'}], 'x')
    with pytest.raises(TypeError, match='ok='): d['check_rows']([row('yes')], 'x')


def test_calibration_of_judges_fast():
    "The fast judge scenarios through the driver: every coverage target met, exit code 0."
    d = _driver()
    assert d['main'](['--fast', '--only', 'judges']) == 0
