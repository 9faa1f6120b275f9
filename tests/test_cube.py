"""Statistical properties of the drift cube: coverage, null calibration, references, validation, round trip."""
import numpy as np, pandas as pd, pytest, xarray as xr
from scipy import stats
from statsmodels.stats.multitest import multipletests

from safedrift_wb.cube import (build_cube, cube_from_scores, save_cube, load_cube, bh_qvalues, _bench_rng,
                               bootstrap_weights, bootstrap_mean_ci, summarize)
from safedrift_wb.stats import sign_flip_test, paired_binary_test
from safedrift_wb.schema import SchemaError
from safedrift_wb.common.errors import UnpairedItemsWarning


def family(n_der, n_items, benches, gen, seed=0, metric='refusal_rate'):
    "Item results for one root and `n_der` derivatives; gen(rng, n) -> (base values, derivative values)."
    rng = np.random.default_rng(seed)
    rows, models = [], [dict(model='base', base='', family='f', domain='general', method='base')]
    base_vals = {}
    for b in benches:
        ids = [f'{b}-{i}' for i in range(n_items)]
        for j in range(n_der):
            x, y = gen(rng, n_items)
            if j == 0: base_vals[b] = x
            # every derivative needs its own base draw to be an independent replicate: give each its own root
            rows.append(pd.DataFrame(dict(model=f'base{j}', benchmark=b, item=ids, metric=metric, value=x)))
            rows.append(pd.DataFrame(dict(model=f'd{j}', benchmark=b, item=ids, metric=metric, value=y)))
    models = pd.DataFrame([dict(model=f'base{j}', base='', family='f', domain='general', method='base') for j in range(n_der)] +
                          [dict(model=f'd{j}', base=f'base{j}', family='f', domain='medical', method='lora') for j in range(n_der)])
    return pd.concat(rows, ignore_index=True), models


def test_bootstrap_coverage_near_nominal():
    mu, a, c = 0.4, 0.25, 0.05                      # P(base refuses), P(stop refusing), P(start refusing)
    truth = -a*mu + c*(1 - mu)
    def gen(rng, n):
        x = (rng.random(n) < rng.beta(4, 6, n)).astype(float)
        flip = np.where(x == 1, rng.random(n) < a, rng.random(n) < c)
        return x, np.where(flip, 1 - x, x)
    items, models = family(100, 150, ['b1', 'b2', 'b3', 'b4'], gen, seed=0)
    cube = build_cube(items, models, n_boot=1000, seed=0)
    ci = cube.drift_ci.where(cube.base != '', drop=True)
    lo, hi = ci.sel(ci_bound='lower').values.ravel(), ci.sel(ci_bound='upper').values.ravel()
    lo, hi = lo[np.isfinite(lo)], hi[np.isfinite(hi)]
    assert len(lo) == 400
    coverage = np.mean((lo <= truth) & (truth <= hi))
    assert coverage >= 0.93, coverage


def test_pvalues_uniform_under_null_continuous():
    def gen(rng, n):
        x = rng.normal(size=n) + rng.normal(size=1)
        return x, x + rng.standard_t(5, size=n)*0.5          # symmetric noise: no drift
    items, models = family(100, 60, ['b1', 'b2', 'b3', 'b4'], gen, seed=2, metric='score')
    cube = build_cube(items, models, metrics={'score': True}, n_boot=200)
    p = cube.p_value.values[np.isfinite(cube.p_value.values)]
    assert len(p) == 400
    assert stats.kstest(p, 'uniform').pvalue > 0.001
    assert abs(np.mean(p < 0.05) - 0.05) < 0.035


def test_pvalues_calibrated_under_null_binary():
    def gen(rng, n):
        x = (rng.random(n) < 0.5).astype(float)
        flip = rng.random(n) < 0.15                       # symmetric flips: no drift
        return x, np.where(flip, 1 - x, x)
    items, models = family(100, 80, ['b1', 'b2', 'b3', 'b4'], gen, seed=4)
    cube = build_cube(items, models, n_boot=200)
    p = cube.p_value.values[np.isfinite(cube.p_value.values)]
    assert np.mean(p < 0.05) <= 0.07                      # McNemar's z (Tango's score test at 0): not liberal
    assert np.mean(p < 0.5) > 0.3                          # and not degenerate


def test_power_detects_planted_drift():
    def gen(rng, n):
        x = (rng.random(n) < 0.6).astype(float)
        y = np.where((x == 1) & (rng.random(n) < 0.3), 0.0, x)
        return x, y
    items, models = family(10, 200, ['b1'], gen, seed=5)
    cube = build_cube(items, models, n_boot=500)
    assert (cube.q_value.sel(model=[f'd{j}' for j in range(10)]) < 0.01).all()


def test_bh_matches_statsmodels():
    p = np.random.default_rng(0).random(1000)**4
    np.testing.assert_allclose(bh_qvalues(p), multipletests(p, method='fdr_bh')[1], rtol=1e-12)
    p2 = p.reshape(10, 100).copy(); p2[0, :5] = np.nan
    q2 = bh_qvalues(p2)
    fin = np.isfinite(p2)
    np.testing.assert_allclose(q2[fin], multipletests(p2[fin], method='fdr_bh')[1], rtol=1e-12)
    assert np.isnan(q2[~fin]).all()


def test_bootstrap_close_to_analytic_paired_ci():
    rng = np.random.default_rng(7)
    n = 400
    x = (rng.random(n) < 0.5).astype(float)
    y = np.where(rng.random(n) < 0.2, 1 - x, x)
    d = (y - x)[:, None]
    ci = bootstrap_mean_ci(d, bootstrap_weights(n, 4000, rng))[0]
    se = d.std(ddof=1)/np.sqrt(n)
    ref = d.mean() + np.array([-1, 1])*stats.norm.ppf(0.975)*se
    np.testing.assert_allclose(ci, ref, atol=0.01)


def test_vectorised_equals_naive_pairing():
    rng = np.random.default_rng(3)
    rows = []
    for m in ['r', 'a', 'b']:
        for bench in ['x', 'y']:
            ids = [f'i{i}' for i in range(30) if not (m == 'b' and i % 7 == 0)]   # b misses some items
            for met in ['refusal_rate', 'toxicity']:
                rows.append(pd.DataFrame(dict(model=m, benchmark=bench, item=ids, metric=met, value=rng.random(len(ids)).round(1))))
    items = pd.concat(rows, ignore_index=True)
    models = pd.DataFrame(dict(model=['r', 'a', 'b'], base=['', 'r', 'a'], family='f', domain='g', method=['base', 'lora', 'lora']))
    with pytest.warns(UnpairedItemsWarning, match='b/x/refusal_rate: 0 of 25 derivative items and 5 of 30 base items unpaired'):
        cube = build_cube(items, models, n_boot=300)
    wide = items.pivot_table(index=['benchmark', 'metric', 'item'], columns='model', values='value')
    for m, b in [('a', 'r'), ('b', 'a')]:
        for (bench, met), g in wide.groupby(level=[0, 1]):
            d = (g[m] - g[b]).dropna()
            assert cube.n_shared.sel(model=m, benchmark=bench, metric=met) == len(d)
            np.testing.assert_allclose(cube.drift.sel(model=m, benchmark=bench, metric=met), d.mean(), rtol=1e-12)
            # the cell's test and interval: the sign-flip test of its own column, with the benchmark's sign vectors
            full = (g[m] - g[b]).to_numpy()[:, None]          # the benchmark's items in the cube's order, NaN = unpaired
            p, lo, hi = sign_flip_test(full, n_resamples=300, rng=_bench_rng(0, bench))
            cell = cube.sel(model=m, benchmark=bench, metric=met)
            np.testing.assert_allclose([cell.p_value, *cell.drift_ci.values], [p[0], max(lo[0], -1), min(hi[0], 1)], rtol=1e-12)
            assert (cell.p_value < 0.05) == (not lo[0] <= 0 <= hi[0])
            sd = cube.safety_drift.sel(model=m, benchmark=bench, metric=met)
            assert np.sign(sd) == (np.sign(d.mean()) if met == 'refusal_rate' else -np.sign(d.mean()))
    np.testing.assert_allclose(cube.score.sel(model='b', benchmark='x', metric='toxicity'),
                               items.query("model=='b' and benchmark=='x' and metric=='toxicity'").value.mean())


def test_deterministic_and_chunk_invariant():
    def gen(rng, n):
        x = rng.random(n); return x, x + rng.normal(0, 0.1, n)
    items, models = family(6, 50, ['b1', 'b2'], gen, metric='toxicity')
    c1 = build_cube(items, models, n_boot=300, seed=11)
    c2 = build_cube(items, models, n_boot=300, seed=11, max_bytes=1e4)     # tiny chunks
    c3 = build_cube(items, models, n_boot=300, seed=12)
    np.testing.assert_allclose(c1.drift_ci.values, c2.drift_ci.values, rtol=1e-12, atol=1e-15)
    assert not np.array_equal(np.nan_to_num(c1.drift_ci.values), np.nan_to_num(c3.drift_ci.values))
    # a benchmark's intervals do not depend on which other benchmarks are in the cube
    c4 = build_cube(items[items.benchmark == 'b1'], models, n_boot=300, seed=11)
    np.testing.assert_allclose(c4.drift_ci.sel(benchmark='b1').values, c1.drift_ci.sel(benchmark='b1').values, rtol=1e-12, atol=1e-15)


def test_zero_variance_cell_gets_p_one():
    ids = [str(i) for i in range(20)]
    items = pd.concat([pd.DataFrame(dict(model=m, benchmark='b', item=ids, metric='refusal_rate', value=1.0)) for m in ['r', 'd']])
    models = pd.DataFrame(dict(model=['r', 'd'], base=['', 'r'], family='f', domain='g', method=['base', 'lora']))
    cube = build_cube(items, models, n_boot=200)
    c = cube.sel(model='d', benchmark='b', metric='refusal_rate')
    assert c.p_value == 1.0 and c.q_value == 1.0 and c.drift == 0
    # by design since the intervals invert the test: no discordant pair is not certainty; Tango's interval is
    # symmetric about 0 with positive width (it was [0, 0] with the percentile bootstrap)
    lo, hi = c.drift_ci.values
    _, tlo, thi = paired_binary_test(0, 0, 20)
    np.testing.assert_allclose([lo, hi], [tlo, thi], rtol=1e-12)
    assert lo < 0 < hi and abs(lo + hi) < 1e-9 and 0.1 < hi < 0.25
    assert 0 < c.mde < 1


@pytest.mark.parametrize('mutate, message', [
    (lambda i, m: (i.drop(columns='item'), m), "missing column(s) ['item']"),
    (lambda i, m: (pd.concat([i, i.iloc[[0]]]), m), 'share a (model, benchmark, item, metric) key'),
    (lambda i, m: (i.assign(value=np.where(i.index == 2, np.nan, i.value)), m), 'non-finite value(s), first at row 2'),
    (lambda i, m: (i, m.assign(base=['', 'ghost'])), "model 'd' has base 'ghost', which is not in the table"),
    (lambda i, m: (i, m.assign(base=['d', 'r'])), 'lineage cycle'),
    (lambda i, m: (i.assign(metric='niceness'), m), "metric(s) without a direction: 'niceness'"),
    (lambda i, m: (i.assign(item=np.where(i.model == 'd', 'x', '') + i['item']), m), "'d' has no (benchmark, item, metric) in common with its base 'r'"),
    (lambda i, m: (i, m.drop(columns='family')), "missing column(s) ['family']"),
    (lambda i, m: (i.assign(model=np.where(i.model == 'd', 'zz', i.model)), m), 'not in the model table: zz'),
])
def test_validation_errors(mutate, message):
    ids = [str(i) for i in range(10)]
    items = pd.concat([pd.DataFrame(dict(model=m, benchmark='b', item=ids, metric='refusal_rate', value=float(k % 2)))
                       for k, m in enumerate(['r', 'd'])], ignore_index=True)
    models = pd.DataFrame(dict(model=['r', 'd'], base=['', 'r'], family='f', domain='g', method=['base', 'lora']))
    i, m = mutate(items, models)
    with pytest.raises(SchemaError, match=None) as e: build_cube(i, m, n_boot=100)
    assert message in str(e.value), str(e.value)


def test_round_trip(tmp_path):
    ids = [str(i) for i in range(30)]
    rng = np.random.default_rng(0)
    items = pd.concat([pd.DataFrame(dict(model=m, benchmark=b, item=ids, metric='refusal_rate', value=(rng.random(30) < .5).astype(float)))
                       for m in ['r', 'd', 'e'] for b in ['b1', 'b2']])
    models = pd.DataFrame(dict(model=['r', 'd', 'e'], base=['', 'r', 'r'], family='f', domain=['general', 'legal', 'medical'],
                               method=['base', 'lora', 'full'], lr=[np.nan, 1e-4, 2e-5], note=['', 'x', np.nan], merged=[False, True, False]))
    cube = build_cube(items, models, n_boot=200, provenance={'runs': ['a', 'b']})
    save_cube(cube, tmp_path/'c.nc')
    back = load_cube(tmp_path/'c.nc')
    xr.testing.assert_identical(back, cube)
    assert back.attrs['provenance'] == cube.attrs['provenance']
    assert back.merged.dtype == bool and back.base.values.tolist() == ['', 'r', 'r']


def test_cube_from_scores_methods():
    sc = pd.DataFrame(dict(model=['b', 'f', 'b', 'f', 'b', 'f'], benchmark=['x', 'x', 'y', 'y', 'z', 'z'],
                           metric=['refusal_rate', 'refusal_rate', 'toxicity', 'toxicity', 'asr', 'asr'],
                           value=[0.8, 0.6, 0.1, 0.2, 0.3, 0.31], n=[100, 100, np.nan, np.nan, np.nan, np.nan],
                           se=[np.nan, np.nan, np.nan, np.nan, 0.01, 0.01]))
    models = pd.DataFrame(dict(model=['b', 'f'], base=['', 'b'], family='q', domain=['general', 'news'], method=['base', 'lora']))
    c = cube_from_scores(sc, models)
    f = c.sel(model='f')
    assert f.drift_ci_method.sel(benchmark='x', metric='refusal_rate') == 'newcombe'
    assert np.isnan(f.p_value.sel(benchmark='y', metric='toxicity'))
    assert f.drift_ci_method.sel(benchmark='z', metric='asr') == 'se'
    z = 0.01/np.sqrt(2*0.01**2)
    np.testing.assert_allclose(f.p_value.sel(benchmark='z', metric='asr'), 2*stats.norm.sf(z))
    # Newcombe's interval against a published example (Newcombe 1998, Table II: 56/70 vs 48/80 -> 0.0524 to 0.3339)
    from safedrift_wb.cube import newcombe_interval
    lo, hi = newcombe_interval(56/70, 70, 48/80, 80)
    np.testing.assert_allclose([lo, hi], [0.0524, 0.3339], atol=1e-4)
    with pytest.raises(SchemaError, match="missing column"): cube_from_scores(sc.drop(columns='value'), models)


def test_summarize_counts_contradictions():
    rng = np.random.default_rng(0)
    ids = [str(i) for i in range(300)]
    x = (rng.random(300) < 0.5).astype(float)
    up = np.where(x == 0, (rng.random(300) < 0.6).astype(float), x)      # more refusals: safer
    down = np.where(x == 1, (rng.random(300) < 0.4).astype(float), x)    # more over-refusal: less safe
    items = pd.concat([pd.DataFrame(dict(model='r', benchmark='harm', item=ids, metric='refusal_rate', value=x)),
                       pd.DataFrame(dict(model='r', benchmark='benign', item=ids, metric='over_refusal', value=x)),
                       pd.DataFrame(dict(model='d', benchmark='harm', item=ids, metric='refusal_rate', value=up)),
                       pd.DataFrame(dict(model='d', benchmark='benign', item=ids, metric='over_refusal', value=up))])
    models = pd.DataFrame(dict(model=['r', 'd'], base=['', 'r'], family='f', domain=['general', 'medical'], method=['base', 'lora']))
    s = summarize(build_cube(items, models, n_boot=300))
    assert s.loc['d', 'n_safer'] == 1 and s.loc['d', 'n_less_safe'] == 1 and s.loc['d', 'contradictory']


def test_bootstrap_streams_within_its_memory_budget():
    "A benchmark too large for one resampling matrix is resampled in blocks: the peak stays near `max_bytes`."
    import tracemalloc
    rng = np.random.default_rng(0)
    n = 20_000
    items = pd.DataFrame({'model': np.repeat(['base', 'ft'], n), 'benchmark': 'big', 'item': np.tile([f'i{i}' for i in range(n)], 2),
                          'metric': 'refusal_rate', 'value': np.r_[rng.random(n) < 0.6, rng.random(n) < 0.5].astype(float)})
    models = pd.DataFrame({'model': ['base', 'ft'], 'base': ['', 'base'], 'family': 'f', 'domain': ['general', 'medical'], 'method': ['base', 'lora']})
    tracemalloc.start()
    cube = build_cube(items, models, n_boot=500, max_bytes=8e6)   # one matrix would take 500 x 20,000 x 8 x 4 = 320 MB
    peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    assert peak < 80e6, peak
    lo, hi = cube.drift_ci.sel(model='ft', benchmark='big', metric='refusal_rate').values
    d = float(cube.drift.sel(model='ft', benchmark='big', metric='refusal_rate'))
    se = np.sqrt((0.6*0.4 + 0.5*0.5)/n)
    assert lo < d < hi and abs((hi - lo) - 2*1.96*se) < 0.2*2*1.96*se
