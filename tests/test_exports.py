"""Tidy tables and drift cards."""
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings, strategies as st, HealthCheck

from safedrift_wb.schema import SchemaError
from safedrift_wb.analysis import synthetic_cube
from safedrift_wb.views.cards import to_tidy, save_tidy, drift_card, drift_card_markdown, drift_card_html, write_drift_cards


@pytest.fixture(scope='module')
def cube():
    return synthetic_cube(10, 3, metrics=['refusal_rate', 'asr', 'domain_accuracy'], seed=4,
                          planted={'ft-000': {('bench-00', 'refusal_rate'): -0.35, ('bench-01', 'asr'): 0.35,
                                              ('bench-02', 'domain_accuracy'): 0.3}})


def test_to_tidy_matches_cube(cube):
    t = to_tidy(cube, dropna=False)
    assert len(t) == cube.sizes['model']*cube.sizes['benchmark']*cube.sizes['metric']
    rng = np.random.default_rng(0)
    for i in rng.choice(len(t), 10):
        r = t.iloc[i]
        sel = dict(model=r.model, benchmark=r.benchmark, metric=r.metric)
        for v in ['score', 'drift', 'p_value', 'q_value', 'safety_drift']:
            np.testing.assert_equal(r[v], cube[v].sel(**sel).item())
        np.testing.assert_equal(r.drift_lower, cube.drift_ci.sel(**sel, ci_bound='lower').item())
        np.testing.assert_equal(r.safety_drift_upper, cube.safety_drift_ci.sel(**sel, ci_bound='upper').item())
        assert r.base == cube.base.sel(model=r.model).item() and r.category == cube.category.sel(benchmark=r.benchmark).item()


def test_to_tidy_drops_unmeasured_and_round_trips(cube, tmp_path):
    holey = cube.copy(); holey['score'] = cube.score.where(cube.metric != 'asr')
    t = to_tidy(holey)
    assert 'asr' not in set(t.metric) and len(t) == 10*3*2
    for suffix in ['csv', 'parquet', 'tsv']:
        p = save_tidy(holey, tmp_path/f'c.{suffix}')
        back = pd.read_parquet(p) if suffix == 'parquet' else pd.read_csv(p, sep='\t' if suffix == 'tsv' else ',', keep_default_na=False, na_values=[''])
        assert len(back) == len(t)
        np.testing.assert_allclose(back.drift.to_numpy(float), t.drift.to_numpy(float), equal_nan=True)
    with pytest.raises(SchemaError, match='.parquet'): save_tidy(cube, tmp_path/'c.json')
    with pytest.raises(SchemaError, match='drift cube'): to_tidy(xr.Dataset())


def test_drift_card_lists_exactly_the_significant_cells(cube):
    alpha = 0.05
    for m in cube.model.values[cube.base.values != '']:
        card = drift_card(cube, str(m), alpha=alpha)
        c = cube.sel(model=m)
        sig = ((c.q_value < alpha) & (c.role == 'safety')).values
        sd = c.safety_drift.values
        want_reg = {(str(b), str(k)) for (i, j) in zip(*np.nonzero(sig & (sd < 0))) for b, k in [(c.benchmark.values[i], c.metric.values[j])]}
        want_imp = {(str(b), str(k)) for (i, j) in zip(*np.nonzero(sig & (sd > 0))) for b, k in [(c.benchmark.values[i], c.metric.values[j])]}
        assert {(x['benchmark'], x['metric']) for x in card['regressions']} == want_reg
        assert {(x['benchmark'], x['metric']) for x in card['improvements']} == want_imp
        assert [x['safety_drift'] for x in card['regressions']] == sorted(x['safety_drift'] for x in card['regressions'])
        assert card['lineage'][-1] == str(c.base.item()) and card['n_cells_tested'] == int(c.q_value.notnull().sum())
        json.dumps(card, allow_nan=False)
    card = drift_card(cube, 'ft-000')
    assert ('bench-00', 'refusal_rate') in {(x['benchmark'], x['metric']) for x in card['regressions']}
    assert [x['metric'] for x in card['utility_changes']] == ['domain_accuracy']
    r = card['regressions'][0]
    assert r['drift_ci'][0] <= r['drift'] <= r['drift_ci'][1] and r['base_score'] - r['score'] == pytest.approx(-r['drift'])


def test_drift_card_lineage_and_untested(cube):
    deep = cube.assign_coords(base=('model', [b if m != 'ft-001' else 'ft-000' for m, b in zip(cube.model.values, cube.base.values)]))
    assert drift_card(deep, 'ft-001')['lineage'] == ['ft-001', 'ft-000', 'base-0']
    untested = cube.copy(); untested['q_value'] = cube.q_value.where(cube.metric != 'asr')
    card = drift_card(untested, 'ft-000')
    assert {x['metric'] for x in card['untested']} == {'asr'} and 'without a test' in card['summary']
    with pytest.raises(SchemaError, match='is a root'): drift_card(cube, 'base-0')


# NUL cannot end a numpy string (numpy drops trailing NULs), so ids with NUL are out of scope
@settings(max_examples=25, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and '\x00' not in s and s not in ('base-0', 'base-1', 'base-2')))
def test_renderers_escape_any_name(cube, name):
    evil = cube.assign_coords(model=[name if m == 'ft-000' else m for m in cube.model.values],
                              method=('model', [f'<img src=x onerror=alert({name!r})>' if m == 'ft-000' else v for m, v in zip(cube.model.values, cube.method.values)]))
    md, h = drift_card_markdown(evil, name), drift_card_html(evil, name)
    for text in (md, h):
        assert '<img' not in text and '<script' not in text.lower()
    for line in md.splitlines():
        if line.startswith('| bench'):
            assert len(line.replace('\\|', '').split('|')) == 11   # 9 cells: no name broke the table
    assert '\n' not in md.splitlines()[0]


def test_write_drift_cards(cube, tmp_path):
    named = cube.assign_coords(model=[m.replace('ft-000', 'org/ft 000').replace('ft-001', 'org_ft_000') for m in cube.model.values])
    paths = write_drift_cards(named, tmp_path/'cards', formats=('json', 'md', 'html'))
    index = json.loads((tmp_path/'cards'/'index.json').read_text())['cards']
    assert len(index) == 7 and len(paths) == 7*3 + 1
    files = [f for v in index.values() for f in v.values()]
    assert len(set(files)) == len(files) and all('/' not in f for f in files)
    card = json.loads((tmp_path/'cards'/index['org/ft 000']['json']).read_text())
    assert card['model'] == 'org/ft 000'
    with pytest.raises(SchemaError, match='unknown format'): write_drift_cards(cube, tmp_path, formats=('pdf',))
