"""The cube's version-2 statistics: intervals that invert their tests, complements as one hypothesis, repeated samples,
clusters, judges, unpaired items, power, sibling covariance, new coordinates and attributes, and their round trip."""
import warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, xarray as xr
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from safedrift_wb.common.errors import UnpairedItemsWarning
from safedrift_wb.cube import (build_cube, cube_from_scores, save_cube, load_cube, read_cube, summarize, format_summary,
                               hypothesis_mask, _bench_rng)
from safedrift_wb.schema import SchemaError, register_metric, METRICS, METRIC_COMPLEMENTS
from safedrift_wb.stats import paired_binary_test, sign_flip_test, z_value

ROOT = Path(__file__).resolve().parents[1]


def pairs(n_pairs, n_items, gen, *, seed=0, metric='refusal_rate', bench='b', **cols):
    "Item results of `n_pairs` independent (root, derivative) pairs; gen(rng, n) -> (base values, derivative values)."
    rng = np.random.default_rng(seed)
    ids = [f'i{i:04d}' for i in range(n_items)]
    rows, models = [], []
    for j in range(n_pairs):
        x, y = gen(rng, n_items)
        rows += [pd.DataFrame(dict(model=f'r{j}', benchmark=bench, item=ids, metric=metric, value=x, **cols)),
                 pd.DataFrame(dict(model=f'd{j}', benchmark=bench, item=ids, metric=metric, value=y, **cols))]
        models += [dict(model=f'r{j}', base='', family='f', domain='general', method='base'),
                   dict(model=f'd{j}', base=f'r{j}', family='f', domain='medical', method='lora')]
    return pd.concat(rows, ignore_index=True), pd.DataFrame(models)


def der_cells(cube, var):
    return cube[var].sel(model=cube.model.values[cube.base.values != ''])


def test_interval_and_test_agree_in_every_cell():
    "0/1 cells (Tango), continuous cells, clustered cells and cells at 20 items: 0 in the CI exactly when p >= 0.05."
    def binary(rng, n):
        x = (rng.random(n) < rng.uniform(0.02, 0.98)).astype(float)
        return x, np.where(rng.random(n) < rng.uniform(0, 0.3), 1 - x, x)
    def cont(rng, n):
        x = rng.normal(size=n); return x, x + rng.normal(rng.normal(0, 0.3), 1, n)
    a, ma = pairs(60, 20, binary, seed=1)
    b, mb = pairs(60, 60, cont, seed=2, metric='toxicity', bench='c')
    c, _ = pairs(60, 60, binary, seed=3, bench='k')
    c['cluster'] = c['item'].str[:-1]                              # 6 clusters of 10 items
    items = pd.concat([a, b, c], ignore_index=True)                 # cluster NaN ('' once validated) for a and b
    cube = build_cube(items, ma, n_boot=400)
    p, ci = der_cells(cube, 'p_value').values, der_cells(cube, 'drift_ci').values
    ok = np.isfinite(p)
    assert ok.sum() == 180
    outside = (ci[..., 0] > 0) | (ci[..., 1] < 0)
    np.testing.assert_array_equal(outside[ok], p[ok] < 0.05)
    meth = der_cells(cube, 'drift_ci_method')
    assert set(meth.sel(benchmark='b', metric='refusal_rate').values) == {'tango'}
    assert set(meth.sel(benchmark='c', metric='toxicity').values) == {'sign-flip monte-carlo'}
    assert set(meth.sel(benchmark='k', metric='refusal_rate').values) == {'cluster sign-flip exact'}
    assert (p[ok] > 0).all()                                        # never 0
    assert 'tango: 60 cells' in cube.attrs['test'] and 'cluster sign-flip exact: 60 cells' in cube.attrs['interval_method']


def test_small_n_coverage_near_0_and_1():
    "n = 20 items, base rates 0.05 and 0.95: the paired interval covers the planted drift (it covered 63-74% before)."
    cover = []
    for seed, rate in [(10, 0.05), (11, 0.95)]:
        a, c = 0.1, 0.1                                            # P(1 -> 0), P(0 -> 1)
        truth = -a*rate + c*(1 - rate)
        def gen(rng, n):
            x = (rng.random(n) < rate).astype(float)
            return x, np.where(rng.random(n) < np.where(x == 1, a, c), 1 - x, x)
        items, models = pairs(300, 20, gen, seed=seed)
        ci = der_cells(build_cube(items, models, n_boot=100), 'drift_ci').values[:, 0, 0]
        cover.append(np.mean((ci[:, 0] <= truth) & (truth <= ci[:, 1])))
        assert (ci[:, 1] > ci[:, 0]).all()                          # no zero-width interval
    assert min(cover) >= 0.92 and max(cover) <= 0.995, cover


def test_cluster_test_holds_its_size_where_the_item_test_does_not():
    "Items of a cluster move together under the null: the cluster sign-flip keeps 5%, the item-level one rejects far more."
    def gen(rng, n):
        x = rng.normal(size=n)
        return x, x + np.repeat(rng.normal(0, 0.5, n//10), 10) + rng.normal(0, 0.1, n)   # no drift, cluster shocks
    items, models = pairs(200, 200, gen, seed=5, metric='toxicity')
    clustered = items.assign(cluster=items['item'].str[:-1])       # 20 clusters of 10
    p_c = der_cells(build_cube(clustered, models, n_boot=400), 'p_value').values.ravel()
    p_i = der_cells(build_cube(items, models, n_boot=400), 'p_value').values.ravel()
    assert 0.02 <= np.mean(p_c < 0.05) <= 0.085, np.mean(p_c < 0.05)
    assert np.mean(p_i < 0.05) > 0.3


def test_clustered_cell_matches_the_kernel_and_is_chunk_invariant():
    def gen(rng, n):
        x = (rng.random(n) < 0.5).astype(float); return x, np.where(rng.random(n) < 0.2, 1 - x, x)
    items, models = pairs(5, 300, gen, seed=6)
    items['cluster'] = 't' + (items['item'].str[1:].astype(int) // 7).astype(str)      # 43 clusters, the last of 6 items
    cube = build_cube(items, models, n_boot=500, seed=3)
    small = build_cube(items, models, n_boot=500, seed=3, max_bytes=2e4)
    xr.testing.assert_identical(cube.drop_attrs().drop_vars('drift_cov').reset_coords(drop=True)[['p_value', 'drift_ci']],
                                small.drop_attrs().drop_vars('drift_cov').reset_coords(drop=True)[['p_value', 'drift_ci']])
    w = items.pivot(index='item', columns='model', values='value')
    cl = items.drop_duplicates('item').set_index('item').loc[w.index, 'cluster'].to_numpy()
    D = np.stack([(w[f'd{j}'] - w[f'r{j}']).to_numpy() for j in range(5)], 1)
    codes = pd.factorize(cl)[0]                                      # the cube numbers clusters in the items' order
    p, lo, hi = sign_flip_test(D, clusters=codes, n_resamples=500, rng=_bench_rng(3, 'b'))
    np.testing.assert_allclose(der_cells(cube, 'p_value').values[:, 0, 0], p, rtol=1e-12)
    np.testing.assert_allclose(der_cells(cube, 'drift_ci').values[:, 0, 0], np.stack([np.maximum(lo, -1), np.minimum(hi, 1)], 1), rtol=1e-12)


def test_binary_cells_are_tango_on_discordant_counts():
    def gen(rng, n):
        x = (rng.random(n) < 0.3).astype(float); return x, np.where(rng.random(n) < 0.15, 1 - x, x)
    items, models = pairs(8, 50, gen, seed=7)
    cube = build_cube(items, models, n_boot=200)
    w = items.pivot(index='item', columns='model', values='value')
    for j in range(8):
        d = w[f'd{j}'] - w[f'r{j}']
        p, lo, hi = paired_binary_test((d == 1).sum(), (d == -1).sum(), 50)
        c = cube.sel(model=f'd{j}', benchmark='b', metric='refusal_rate')
        np.testing.assert_allclose([c.p_value, *c.drift_ci.values], [p, lo, hi], rtol=1e-12)
        b_, c_ = (d == 1).sum(), (d == -1).sum()           # McNemar's z without continuity correction at drift 0
        np.testing.assert_allclose(c.p_value, 1.0 if b_ + c_ == 0 else 2*stats.norm.sf(abs(b_ - c_)/np.sqrt(b_ + c_)), rtol=1e-9)


def complement_items(flip_one=False):
    rng = np.random.default_rng(8)
    ids = [f'j{i}' for i in range(200)]
    rows = []
    for m, p in [('r', 0.8), ('d', 0.55), ('e', 0.8)]:
        ref = (rng.random(200) < p).astype(float)
        asr = 1 - ref
        if flip_one and m == 'd': asr[0] = 1 - asr[0]
        rows += [pd.DataFrame(dict(model=m, benchmark='jb', item=ids, metric='refusal_rate', value=ref)),
                 pd.DataFrame(dict(model=m, benchmark='jb', item=ids, metric='asr', value=asr)),
                 pd.DataFrame(dict(model=m, benchmark='tox', item=ids, metric='toxicity', value=rng.random(200)*0.1))]
    models = pd.DataFrame(dict(model=['r', 'd', 'e'], base=['', 'r', 'r'], family='f', domain=['general', 'medical', 'legal'],
                               method=['base', 'lora', 'lora']))
    return pd.concat(rows, ignore_index=True), models


def test_complementary_metrics_are_one_hypothesis():
    items, models = complement_items()
    cube = build_cube(items, models, n_boot=300)
    assert cube.complement_of.sel(metric='asr') == 'refusal_rate' and cube.complement_of.sel(metric='toxicity') == ''
    assert bool(cube.is_complement.sel(benchmark='jb', metric='asr')) and not bool(cube.is_complement.sel(benchmark='jb', metric='refusal_rate'))
    p = der_cells(cube, 'p_value')
    # the BH family: every tested derivative cell except the complement, checked against statsmodels
    fam = p.where(hypothesis_mask(cube))
    fin = np.isfinite(fam.values)
    assert fin.sum() == 4                                           # 2 derivatives x (jb/refusal_rate, tox/toxicity)
    np.testing.assert_allclose(der_cells(cube, 'q_value').values[fin], multipletests(fam.values[fin], method='fdr_bh')[1], rtol=1e-12)
    q = der_cells(cube, 'q_value')
    np.testing.assert_array_equal(q.sel(benchmark='jb', metric='asr').values, q.sel(benchmark='jb', metric='refusal_rate').values)
    np.testing.assert_allclose(p.sel(benchmark='jb', metric='asr').values, p.sel(benchmark='jb', metric='refusal_rate').values, rtol=1e-9)
    s = summarize(cube)
    assert s.loc['d', 'n_less_safe'] == 1 and s.loc['d', 'cells_tested'] == 2      # one movement, counted once
    assert 'FDR over 4 cells, a complementary pair counted once' in format_summary(cube)
    # not exactly 1 - x on the same items: two hypotheses
    c2 = build_cube(complement_items(flip_one=True)[0], models, n_boot=300)
    assert not c2.is_complement.values.any() and summarize(c2).loc['d', 'n_less_safe'] == 2


def test_register_metric_complement(monkeypatch):
    monkeypatch.setitem(METRICS, 'comply_rate', False)
    monkeypatch.setattr('safedrift_wb.schema.METRIC_COMPLEMENTS', dict(METRIC_COMPLEMENTS))
    register_metric('comply_rate', False, complement_of='refusal_rate')
    items, models = complement_items()
    items['metric'] = items['metric'].replace({'asr': 'comply_rate'})
    cube = build_cube(items, models, n_boot=200)
    assert bool(cube.is_complement.sel(benchmark='jb', metric='comply_rate'))
    with pytest.raises(SchemaError, match='same direction'): register_metric('keep_rate', True, complement_of='refusal_rate')


def test_samples_averaged_within_item():
    rng = np.random.default_rng(9)
    ids = [f'i{i}' for i in range(30)]
    rows = []
    for m in ['r', 'd']:
        for i in ids:
            k = 1 + int(i[1:]) % 3                                  # 1, 2 or 3 samples
            rows.append(pd.DataFrame(dict(model=m, benchmark='b', item=i, metric='refusal_rate', sample=range(k),
                                          value=(rng.random(k) < (0.7 if m == 'r' else 0.4)).astype(float))))
    items = pd.concat(rows, ignore_index=True)
    models = pd.DataFrame(dict(model=['r', 'd'], base=['', 'r'], family='f', domain='g', method=['base', 'lora']))
    cube = build_cube(items, models, n_boot=300)
    mean = items.groupby(['model', 'item']).value.mean().unstack(0)
    c = cube.sel(benchmark='b', metric='refusal_rate')
    np.testing.assert_allclose(c.score.sel(model='d'), mean['d'].mean(), rtol=1e-12)
    np.testing.assert_allclose(c.drift.sel(model='d'), (mean['d'] - mean['r']).mean(), rtol=1e-12)
    np.testing.assert_allclose(c.n_samples.sel(model='d'), np.mean([1 + int(i[1:]) % 3 for i in ids]), rtol=1e-12)
    assert int(c.n_items.sel(model='d')) == 30 and int(c.n_shared.sel(model='d')) == 30
    assert c.drift_ci_method.sel(model='d') == 'sign-flip monte-carlo'
    plain = build_cube(items.drop(columns='sample').drop_duplicates(['model', 'item']), models, n_boot=300)
    assert (plain.n_samples.sel(model='d') == 1).all()


def test_judges():
    items, models = pairs(2, 30, lambda rng, n: ((rng.random(n) < .5)*1.0, (rng.random(n) < .5)*1.0), seed=4)
    two = pd.concat([items.assign(judge='rules'), items.assign(judge='llm', value=1 - items.value)], ignore_index=True)
    with pytest.raises(SchemaError, match=r"several judges \('llm', 'rules'\) scored the same items.*judge=NAME"):
        build_cube(two, models)
    a, b = build_cube(two, models, judge='rules', n_boot=200), build_cube(items, models, n_boot=200)
    np.testing.assert_allclose(a.drift.values, b.drift.values); assert a.attrs['judge'] == 'rules'
    with pytest.raises(SchemaError, match="judge='gpt' scored no item"): build_cube(two, models, judge='gpt')
    # different metrics scored by different judges (as a run store writes them) need no choice
    mixed = pd.concat([items.assign(judge='rules'), items.assign(metric='toxicity', judge='clf')], ignore_index=True)
    assert build_cube(mixed, models, n_boot=200).sizes['metric'] == 2


@pytest.mark.parametrize('keep, warns', [(27, False), (26, True)])
def test_unpaired_items_warning(keep, warns):
    "Exactly 10% of the base's items unpaired is fine; more warns, naming the cell."
    items, models = pairs(1, 30, lambda rng, n: ((rng.random(n) < .5)*1.0, (rng.random(n) < .5)*1.0), seed=4)
    items = items[(items.model == 'r0') | (items['item'] < f'i{keep:04d}')]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        cube = build_cube(items, models, n_boot=200)
    got = [x for x in w if issubclass(x.category, UnpairedItemsWarning)]
    assert len(got) == warns
    if warns: assert f'd0/b/refusal_rate: 0 of {keep} derivative items and {30 - keep} of 30 base items unpaired' in str(got[0].message)
    assert int(cube.n_shared.sel(model='d0', benchmark='b', metric='refusal_rate')) == keep
    assert 'paired with the base' in cube.n_shared.attrs['description'] and 'n_shared' in cube.n_items.attrs['description']


def test_cli_prints_the_warning_as_one_line(tmp_path, capsys):
    from safedrift_wb.cli import main
    items, models = pairs(1, 30, lambda rng, n: ((rng.random(n) < .5)*1.0, (rng.random(n) < .5)*1.0), seed=4)
    items[(items.model == 'r0') | (items['item'] < 'i0020')].to_csv(tmp_path/'items.csv', index=False)
    models.to_csv(tmp_path/'models.csv', index=False)
    assert main(['cube', str(tmp_path/'items.csv'), '-o', str(tmp_path/'c.nc')]) == 0
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if 'warning' in l]
    assert len(lines) == 1 and lines[0].startswith('safedrift cube: warning: 1 cell(s) leave more than 10%'), err
    assert 'd0/b/refusal_rate: 0 of 20 derivative items and 10 of 30 base items unpaired' in lines[0]


def test_mde_matches_the_power_formula_and_has_its_power():
    "mde = (z_.975 + z_.8) sd_d / sqrt(n) (statsmodels' solve_power); a planted drift of that size is detected about 80% of the time."
    # base rate 0.5, P(1 -> 0) = a, P(0 -> 1) = c: discordance psi = (a + c)/2 = 0.13, drift (c - a)/2 = -delta, where
    # delta = 2.80 sqrt(psi - delta^2)/sqrt(300) solves to 0.05755: the planted drift is the cell's true mde
    k = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    delta = np.sqrt(k**2*0.13/300/(1 + k**2/300))
    a, c = 0.13 + delta, 0.13 - delta
    def gen(rng, n):
        x = (rng.random(n) < 0.5).astype(float)
        return x, np.where(rng.random(n) < np.where(x == 1, a, c), 1 - x, x)
    items, models = pairs(400, 300, gen, seed=12)
    cube = build_cube(items, models, n_boot=100)
    w = items.pivot(index='item', columns='model', values='value')
    es = NormalIndPower().solve_power(nobs1=300, alpha=0.05, power=0.8, ratio=0)
    for j in range(3):
        d = (w[f'd{j}'] - w[f'r{j}']).to_numpy()
        np.testing.assert_allclose(cube.mde.sel(model=f'd{j}').item(), es*d.std(ddof=1), rtol=1e-5)
    mde, p = der_cells(cube, 'mde').values.ravel(), der_cells(cube, 'p_value').values.ravel()
    assert abs(np.mean(mde) - delta) < 0.05*delta, (np.mean(mde), delta)
    assert 0.72 <= np.mean(p < 0.05) <= 0.88, np.mean(p < 0.05)


def test_drift_cov_of_siblings_matches_their_replicate_covariance():
    "Two derivatives of one base: the estimated covariance of their drifts matches the covariance over replicate studies."
    rng = np.random.default_rng(13)
    ests, drifts = [], []
    for rep in range(150):
        ids = [f'i{i}' for i in range(80)]
        x = rng.normal(size=80)
        vals = {'base': x, 'a': x*0.5 + rng.normal(0, 0.5, 80), 'b': x*0.4 + rng.normal(0, 0.5, 80), 'other': rng.normal(size=80)}
        items = pd.concat([pd.DataFrame(dict(model=m, benchmark='b', item=ids, metric='toxicity', value=v)) for m, v in vals.items()])
        models = pd.DataFrame(dict(model=list(vals), base=['', 'base', 'base', ''], family='f', domain='g', method='m'))
        cube = build_cube(items, models, n_boot=100)
        cov = cube.drift_cov.sel(benchmark='b', metric='toxicity')
        ests.append([float(cov.sel(model='a', peer='b')), float(cov.sel(model='a', peer='a'))])
        drifts.append([float(cube.drift.sel(model=m, benchmark='b', metric='toxicity')) for m in ['a', 'b']])
        if rep == 0:
            assert np.isnan(cov.sel(model='base', peer='a')) and np.isnan(cov.sel(model='a', peer='other'))
            d = np.stack([vals['a'] - x, vals['b'] - x])
            np.testing.assert_allclose(cov.sel(model=['a', 'b'], peer=['a', 'b']).values, np.cov(d)/80, rtol=1e-10)
    emp = np.cov(np.array(drifts).T)
    est = np.mean(ests, 0)
    assert emp[0, 1] > 0.002                                        # strongly correlated through the base
    assert abs(est[0] - emp[0, 1]) < 0.3*emp[0, 1] and abs(est[1] - emp[0, 0]) < 0.3*emp[0, 0], (est, emp)


def test_cube_from_scores_covariance_mde_and_attrs():
    sc = pd.DataFrame(dict(model=['b', 'f', 'g'], benchmark='x', metric='refusal_rate', value=[0.8, 0.6, 0.7], se=[0.03, 0.04, 0.02]))
    models = pd.DataFrame(dict(model=['b', 'f', 'g'], base=['', 'b', 'b'], family='q', domain='d', method=['base', 'lora', 'lora']))
    c = cube_from_scores(sc, models)
    cov = c.drift_cov.sel(benchmark='x', metric='refusal_rate')
    np.testing.assert_allclose(cov.sel(model='f', peer='g'), 0.03**2)
    np.testing.assert_allclose(cov.sel(model='f', peer='f'), 0.03**2 + 0.04**2)
    assert np.isnan(cov.sel(model='b', peer='f'))
    np.testing.assert_allclose(c.mde.sel(model='f').item(), (stats.norm.ppf(0.975) + stats.norm.ppf(0.8))*0.05, rtol=1e-12)
    assert 'se' in c.attrs['interval_method'] and 'z-test' in c.attrs['test']


def test_benchmark_coordinates():
    items, models = pairs(1, 20, lambda rng, n: ((rng.random(n) < .5)*1.0, (rng.random(n) < .5)*1.0), bench='harmful-refusal')
    mine, _ = pairs(1, 20, lambda rng, n: ((rng.random(n) < .5)*1.0, (rng.random(n) < .5)*1.0), bench='mine',
                    licence='CC0-1.0', n_source_items=5000, sampling='uniform without replacement, seed 0')
    cube = build_cube(pd.concat([items, mine]), models, n_boot=100)
    h, m = cube.sel(benchmark='harmful-refusal'), cube.sel(benchmark='mine')
    assert h.category == 'harmful' and 'harmful.jsonl' in str(h.source.values) and h.licence == 'Apache-2.0'
    assert m.licence == 'CC0-1.0' and m.n_source_items == 5000 and m.sampling.item().startswith('uniform') and m.source == ''


def test_round_trip_of_every_new_variable(tmp_path):
    items, models = complement_items()
    items['cluster'] = np.where(items.benchmark == 'tox', 'c' + (items['item'].str[1:].astype(int) // 10).astype(str), '')
    items = pd.concat([items.assign(sample=0), items.assign(sample=1)])
    cube = build_cube(items.assign(judge='rules'), models, n_boot=200, judge='rules')
    for v in ['n_samples', 'mde', 'drift_cov', 'drift_ci_method']: assert v in cube.variables
    for c in ['complement_of', 'is_complement', 'source', 'licence', 'n_source_items', 'sampling', 'peer']: assert c in cube.coords
    save_cube(cube, tmp_path/'c.nc')
    back = load_cube(tmp_path/'c.nc')
    xr.testing.assert_identical(back, cube)
    assert back.attrs == cube.attrs and back.is_complement.dtype == bool and back.attrs['judge'] == 'rules'
    assert back.drift_cov.dims == ('model', 'peer', 'benchmark', 'metric')
    assert read_cube(tmp_path/'c.nc').attrs['interval_method'] == cube.attrs['interval_method']


@pytest.mark.parametrize('name', ['smollm_family_cube.nc', 'interventions_cube.nc'])
def test_cubes_of_the_previous_version_still_load(name, tmp_path):
    path = ROOT/'data'/'results'/name
    if not path.exists(): pytest.skip(f'{path} not in this checkout')
    # a file as the previous version wrote it: none of the variables, coordinates and attributes added since
    new = ['is_complement', 'drift_cov', 'mde', 'n_samples', 'drift_ci_method', 'complement_of', 'source', 'licence',
           'n_source_items', 'sampling', 'peer']
    old = load_cube(path).drop_vars(new, errors='ignore')
    for k in ('interval_method', 'clustered_benchmarks'): old.attrs.pop(k, None)
    save_cube(old, tmp_path/name)
    cube = read_cube(tmp_path/name)
    assert 'is_complement' not in cube and 'drift_cov' not in cube
    assert hypothesis_mask(cube).all()                              # no complements recorded: every cell its own hypothesis
    s = summarize(cube)
    assert len(s) == int((cube.base.values != '').sum())
    assert format_summary(cube).startswith('safety drift per derivative')


def test_cli_judge_option(tmp_path, capsys):
    from safedrift_wb.cli import main
    items, models = pairs(1, 30, lambda rng, n: ((rng.random(n) < .5)*1.0, (rng.random(n) < .5)*1.0), seed=4)
    pd.concat([items.assign(judge='rules'), items.assign(judge='llm')]).to_csv(tmp_path/'items.csv', index=False)
    models.to_csv(tmp_path/'models.csv', index=False)
    assert main(['cube', str(tmp_path/'items.csv'), '-o', str(tmp_path/'c.nc')]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "several judges ('llm', 'rules')" in err and '--judge NAME' in err
    assert main(['cube', str(tmp_path/'items.csv'), '-o', str(tmp_path/'c.nc'), '--judge', 'llm']) == 0
    assert load_cube(tmp_path/'c.nc').attrs['judge'] == 'llm'
