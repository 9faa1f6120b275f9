"Figures of drift: what each pure plot function draws, checked against the cube it was drawn from."
import itertools
import numpy as np
import pandas as pd
import pytest
from matplotlib._pylab_helpers import Gcf
from matplotlib.figure import Figure
from safedrift_wb.schema import SchemaError
from safedrift_wb.cube import build_cube, load_cube, save_cube
from safedrift_wb.views.plots import (SORTS, as_cell, derivatives, drift_table, figure_png, forest_rows, heatmap_data, lineage_of,
                                      measured_cells, n_outlined, new_figure, plot_contradiction, plot_disagreement,
                                      plot_drift_heatmap, plot_lineage, plot_model_drifts, plot_predictiveness, quadrants,
                                      rank_flip_pairs)


@pytest.fixture(scope='module')
def cube(example_cube):
    return example_cube(n_boot=200, seed=1)


@pytest.fixture(scope='module')
def agg_cube():
    from safedrift_wb.analysis import synthetic_cube
    return synthetic_cube(14, 4, 3, planted={'ft-000': 0.3, 'ft-001': -0.3}, seed=3)


def _gid(ax, gid, kind='patches'):
    return [a for a in getattr(ax, kind) if a.get_gid() == gid]


def test_cells_and_table_follow_the_cube(cube):
    cells = measured_cells(cube)
    finite = np.isfinite(cube.safety_drift).any('model')
    assert set(cells) == {(str(b), str(k)) for b in cube.benchmark.values for k in cube.metric.values
                          if bool(finite.sel(benchmark=b, metric=k))}
    assert cells[-1][1] == 'domain_accuracy'                       # utility metrics come last
    t = drift_table(cube, alpha=0.05)
    assert len(t) == int(np.isfinite(cube.safety_drift).sum())
    rng = np.random.default_rng(0)
    for i in rng.choice(len(t), 8, replace=False):
        r = t.iloc[i]
        c = cube.sel(model=r.model, benchmark=r.benchmark, metric=r.metric)
        assert r.safety_drift == pytest.approx(float(c.safety_drift))
        assert (r.lower, r.upper) == pytest.approx(tuple(c.safety_drift_ci.values))
        assert r.q_value == pytest.approx(float(c.q_value))
        assert r.significant == (float(c.q_value) < 0.05)
        assert r.base_score == pytest.approx(float(cube.score.sel(model=r.base, benchmark=r.benchmark, metric=r.metric)))
    with pytest.raises(SchemaError, match='no benchmark'):
        as_cell(cube, 'nope/refusal_rate')


def test_heatmap_shows_every_derivative_and_outlines_exactly_the_significant_cells(cube):
    n = Gcf.get_num_fig_managers()
    for alpha in (0.001, 0.05, 0.2):
        fig = plot_drift_heatmap(cube, alpha=alpha)
        ax = fig.axes[0]
        img = ax.images[0]
        assert img.get_array().shape == (len(derivatives(cube)), len(measured_cells(cube)))
        assert img.norm.vcenter == 0 and img.norm.vmin == -img.norm.vmax
        assert img.norm.vmax == pytest.approx(float(np.abs(cube.safety_drift).max()))
        assert n_outlined(_gid(ax, 'significant')[0]) == int((cube.q_value < alpha).sum())
    assert Gcf.get_num_fig_managers() == n                          # no figure went through pyplot


def test_heatmap_filters_and_sorts(cube):
    med = [m for m in derivatives(cube) if str(cube.domain.sel(model=m).values) == 'medical']
    fig = plot_drift_heatmap(cube, models=med, metric='refusal_rate')
    assert fig.axes[0].images[0].get_array().shape == (len(med), 2)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [m for m in derivatives(cube) if m in med]
    for sort in SORTS:
        rows, cells, v, sig = heatmap_data(cube, sort=sort)
        assert sorted(rows) == sorted(derivatives(cube))
    rows, cells, v, sig = heatmap_data(cube, sort='regressions')
    reg = (sig & (v < 0))[:, [k != 'domain_accuracy' for _, k in cells]].sum(1)
    assert list(reg) == sorted(reg, reverse=True)
    rows, cells, v, sig = heatmap_data(cube, sort='mean drift')
    means = np.nanmean(np.where([k != 'domain_accuracy' for _, k in cells], v, np.nan), 1)
    assert list(means) == sorted(means)
    with pytest.raises(SchemaError, match='sort='):
        heatmap_data(cube, sort='best')
    with pytest.raises(SchemaError, match='not in the cube'):
        plot_drift_heatmap(cube, metric='nope')


def test_heatmap_of_nothing_says_so(cube):
    fig = plot_drift_heatmap(cube, models=['acme-7b-chat', 'nova-3b-instruct'])   # roots: no drift
    assert [t.get_text() for t in fig.axes[0].texts if t.get_visible()] == ['No derivative has a measured cell under these filters.']


def test_redrawing_into_a_figure_reuses_it(cube):
    fig = new_figure((6, 4))
    for metric in ('asr', 'refusal_rate', None):
        assert plot_drift_heatmap(cube, metric=metric, fig=fig) is fig
    assert len(fig.axes) == 2     # heatmap and colour bar: the old ones were cleared
    assert figure_png(fig, dpi=30)[:4] == b'\x89PNG'


def test_forest_plot_has_one_row_per_measured_cell(cube):
    m = 'acme-med-full'
    fig = plot_model_drifts(cube, m, alpha=0.05)
    pts = _gid(fig.axes[0], 'drift', 'collections')[0]
    t = drift_table(cube, models=[m])
    assert len(pts.get_offsets()) == len(t)
    np.testing.assert_allclose(np.asarray(pts.get_offsets())[:, 0], t.safety_drift)
    labels = [x.get_text() for x in fig.axes[0].texts if x.get_gid() == 'q']
    assert len(labels) == len(t)
    cut = forest_rows(cube, m, max_cells=3)
    assert len(cut) == 3 and cut.attrs['n_cells'] == len(t)
    assert set(cut.q_value) == set(t.q_value.nsmallest(3)) or cut.q_value.max() <= t.q_value.nsmallest(3).max()
    with pytest.raises(SchemaError, match='root model'):
        plot_model_drifts(cube, 'nova-3b-instruct')


def test_quadrants_match_the_signs_in_the_cube(cube):
    cx, cy = ('harmful-refusal', 'refusal_rate'), ('jailbreak', 'asr')
    qd = quadrants(cube, cx, cy, alpha=0.05)
    for m in derivatives(cube):
        x = float(cube.safety_drift.sel(model=m, benchmark=cx[0], metric=cx[1]))
        y = float(cube.safety_drift.sel(model=m, benchmark=cy[0], metric=cy[1]))
        want = 'both safer' if x > 0 and y > 0 else 'both less safe' if x < 0 and y < 0 else 'contradictory' if x*y < 0 else 'on an axis'
        assert qd.loc[m, 'quadrant'] == want
        sig = all(float(cube.q_value.sel(model=m, benchmark=b, metric=k)) < 0.05 for b, k in (cx, cy))
        assert qd.loc[m, 'contradictory'] == (sig and x*y < 0)
    fig = plot_contradiction(cube, cx, cy)
    assert len(_gid(fig.axes[0], 'models', 'collections')[0].get_offsets()) == len(qd)


def test_disagreement_matrix_is_the_analysis(cube):
    from safedrift_wb.analysis import disagreement
    d = disagreement(cube, alpha=0.05)
    fig = plot_disagreement(cube, alpha=0.05, highlight=('harmful-refusal/refusal_rate', 'jailbreak/asr'))
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.ma.filled(shown.astype(float), np.nan), d.values)
    assert n_outlined(_gid(fig.axes[0], 'highlight')[0]) == 2     # the pair and its mirror


def test_rank_flips_by_brute_force(cube):
    from safedrift_wb.analysis import predictiveness
    pr = predictiveness(cube)
    for b, k in measured_cells(cube, var='score'):
        ders = [m for m in derivatives(cube) if np.isfinite(float(cube.score.sel(model=m, benchmark=b, metric=k)))]
        s = {m: float(cube.score.sel(model=m, benchmark=b, metric=k)) for m in ders}
        bs = {m: float(cube.score.sel(model=str(cube.base.sel(model=m).values), benchmark=b, metric=k)) for m in ders}
        comp = flips = 0
        for i, j in itertools.combinations(ders, 2):
            sb, sd = np.sign(bs[i] - bs[j]), np.sign(s[i] - s[j])
            if sb and sd:
                comp += 1; flips += sb != sd
        f = rank_flip_pairs(cube, (b, k))
        assert (len(f), f.attrs['n_comparable']) == (flips, comp)
        if comp: assert len(f)/comp == pytest.approx(float(pr.rank_flip_rate.sel(benchmark=b, metric=k)))
    fig = plot_predictiveness(cube, 'jailbreak/asr')
    ax = fig.axes[0]
    line = [l for l in ax.lines if l.get_gid() == 'identity'][0]
    assert list(line.get_xdata()) == list(line.get_ydata())
    segs = _gid(ax, 'rank-flips', 'collections')
    assert (len(segs[0].get_segments()) if segs else 0) == len(rank_flip_pairs(cube, 'jailbreak/asr'))
    with pytest.raises(SchemaError, match='color_by'):
        plot_predictiveness(cube, 'jailbreak/asr', color_by='nope')


def test_lineage(cube):
    lin = lineage_of(cube, 'acme-fin-lora-v2')
    assert lin == {'ancestors': ['acme-7b-chat', 'acme-fin-lora'], 'siblings': [], 'children': []}
    assert lineage_of(cube, 'acme-7b-chat')['children'] == [m for m in derivatives(cube) if str(cube.base.sel(model=m).values) == 'acme-7b-chat']
    fig = plot_lineage(cube, 'nova-med')
    nodes = {t.get_gid()[5:] for t in fig.axes[0].texts if (t.get_gid() or '').startswith('node:')}
    assert nodes == {'nova-3b-instruct', 'nova-med', 'nova-law', 'nova-fin', 'nova-fin-safe'}


def test_aggregate_and_reloaded_cubes(agg_cube, cube, tmp_path):
    t = drift_table(agg_cube)
    assert (t.n_shared > 0).all()                  # no pairing: the number of items stands in
    fig = plot_drift_heatmap(agg_cube)
    assert n_outlined(_gid(fig.axes[0], 'significant')[0]) == int((agg_cube.q_value < 0.05).sum())
    save_cube(cube, tmp_path/'c.nc')
    back = load_cube(tmp_path/'c.nc')
    a, b = heatmap_data(cube), heatmap_data(back)
    assert a[0] == b[0] and a[1] == b[1]
    np.testing.assert_array_equal(a[2], b[2])
    assert isinstance(plot_model_drifts(back, 'nova-fin'), Figure)


def test_static_heatmaps_share_the_cubes_colour_scale():
    from safedrift_wb.analysis import synthetic_cube
    from safedrift_wb.views.plots import plot_drift_heatmap, derivatives
    from safedrift_wb.views.heatmap import drift_scale
    cube = synthetic_cube(20, 6, 3, n_bases=3, seed=3)
    lim = float(np.nanmax(np.abs(cube.safety_drift.sel(model=derivatives(cube)).values)))
    assert drift_scale(cube) == pytest.approx(lim)
    for kw in ({}, {'metric': str(cube.metric.values[0])}, {'models': derivatives(cube)[:3]}):
        im = plot_drift_heatmap(cube, **kw).axes[0].images[0]
        assert (im.norm.vmin, im.norm.vmax) == pytest.approx((-lim, lim))


def test_place_labels_leaves_no_two_names_overlapping():
    from safedrift_wb.views.plot_base import new_figure, place_labels
    rng = np.random.default_rng(0)
    fig = new_figure((4, 3)); ax = fig.add_subplot(); ax.set_xlim(0, 1); ax.set_ylim(0, 1)
    x, y = rng.uniform(0.3, 0.7, 25), rng.uniform(0.3, 0.7, 25)
    ts = place_labels(ax, x, y, [f'model-{i:02d}' for i in range(25)], fontsize=7)
    fig.canvas.draw(); r = fig.canvas.get_renderer()
    bbs = [t.get_window_extent(r) for t in ts]
    assert 5 <= len(ts) <= 25
    assert not any(a.overlaps(b) for i, a in enumerate(bbs) for b in bbs[i + 1:])
    box = ax.get_window_extent(r)
    assert all(box.x0 <= b.x0 and b.x1 <= box.x1 and box.y0 <= b.y0 and b.y1 <= box.y1 for b in bbs)
