"Explorers, headless: set a control's value, then check the explorer's state, its one figure and its HTML."
import io
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from matplotlib._pylab_helpers import Gcf
from safedrift_wb.schema import SchemaError
from safedrift_wb.cube import build_cube
from safedrift_wb.views.plots import derivatives, drift_table, n_outlined, quadrants, rank_flip_pairs
from safedrift_wb.explorers import (ALL, TRANSCRIPT_COLUMNS, ContradictionExplorer, DriftExplorer, ModelExplorer,
                                    PredictivenessExplorer, cell_html, flipped_items, lineage_html, validate_transcripts)

EVIL = '<script>alert(1)</script>'


@pytest.fixture(scope='module')
def cube(example_cube):
    return example_cube(n_boot=200, seed=2)


@pytest.fixture(scope='module')
def evil_cube(cube):
    "The same cube with a model whose id is markup."
    ids = [EVIL if m == 'nova-law' else str(m) for m in cube.model.values]
    return cube.assign_coords(model=np.array(ids, dtype=object))


@pytest.fixture(scope='module')
def transcripts(example_transcripts):
    return example_transcripts(EVIL + ' ', 'No. ' + EVIL, 'Sure & here')


def pixels(png):
    return np.asarray(Image.open(io.BytesIO(bytes(png))).convert('RGB'))


def test_drift_explorer_controls_drive_the_one_figure(cube):
    n_figs = Gcf.get_num_fig_managers()
    ex = DriftExplorer(cube)
    fig = ex.figure
    assert fig.axes[0].images[0].get_array().shape == (len(derivatives(cube)), 10)
    for name, value in [('domain', 'legal'), ('metric', 'over_refusal'), ('sort', 'name'), ('alpha', 0.2)]:
        n = ex.n_draws
        ex.controls[name].value = value
        assert ex.n_draws == n + 1                       # one change, one redraw
        assert ex.figure is fig
    legal = sorted(m for m in derivatives(cube) if str(cube.domain.sel(model=m).values) == 'legal')
    assert ex.rows == legal                              # sorted by name
    assert fig.axes[0].images[0].get_array().shape == (len(legal), 1)
    assert n_outlined(ex._heatmap.marks) == int((cube.q_value.sel(model=legal, metric='over_refusal') < 0.2).sum())
    assert 'q < 0.2' in fig.axes[0].get_title('left')
    assert list(ex.controls['model'].options) == legal
    ex.controls['model'].value = legal[-1]
    q = float(cube.q_value.sel(model=legal[-1], benchmark='benign-lookalike', metric='over_refusal'))
    assert f'{q:.4f}' in ex.info.value or '&lt; 0.0001' in ex.info.value
    ex.controls['method'].value = 'full'                 # no legal full fine-tune
    assert ex.rows == [] and 'No derivative' in ex.info.value
    assert Gcf.get_num_fig_managers() == n_figs
    assert 'application/vnd.jupyter.widget-view+json' in ex._repr_mimebundle_()


def test_fast_redraw_matches_a_full_one(cube):
    ex = DriftExplorer(cube)
    ex.controls['alpha'].value = 0.01                    # same grid: only outlines and title are redrawn
    ex.controls['cell'].value = 'jailbreak/asr'
    fast = pixels(ex.image.value)
    full = pixels(ex._render(fast=False))
    assert fast.shape == full.shape
    assert (fast != full).any(-1).mean() < 1e-3          # the blitted image is the full rendering


def test_cell_panel_escapes_names(evil_cube):
    h = cell_html(evil_cube, EVIL, 'bias-bbq/accuracy')
    assert EVIL not in h and '&lt;script&gt;' in h
    ex = DriftExplorer(evil_cube)
    ex.controls['model'].value = EVIL
    assert EVIL not in ex.info.value and '&lt;script&gt;alert(1)&lt;/script&gt;' in ex.info.value
    assert EVIL not in lineage_html(evil_cube, EVIL)


def test_contradiction_explorer(cube, evil_cube):
    cx = ContradictionExplorer(cube, alpha=0.05)
    x, y = 'harmful-refusal/refusal_rate', 'toxicity-continuation/toxicity'
    cx.controls['cell_x'].value, cx.controls['cell_y'].value = x, y
    qd = quadrants(cube, x, y, alpha=0.05)
    assert cx.contradictory == list(qd.index[qd.contradictory])
    fig = cx.figure
    cx.controls['alpha'].value = 0.2
    assert cx.figure is fig
    assert cx.contradictory == list(quadrants(cube, x, y, alpha=0.2).query('contradictory').index)
    assert 'both safer' in cx.info.value
    ev = ContradictionExplorer(evil_cube, alpha=0.2)
    ev.controls['cell_x'].value, ev.controls['cell_y'].value = 'bias-bbq/accuracy', 'harmful-refusal/refusal_rate'
    assert EVIL not in ev.info.value
    with pytest.raises(SchemaError, match='cell'):
        ContradictionExplorer(cube, cell_x='nope', cell_y=x)


def test_model_explorer_flipped_items_are_counted_and_escaped(cube, transcripts, example_data):
    items, _ = example_data
    mx = ModelExplorer(cube, model='acme-med-lora', transcripts=transcripts, max_items=500)
    hr = items[(items.benchmark == 'harmful-refusal') & (items.metric == 'refusal_rate')].pivot_table(
        index='item', columns='model', values='value')
    less = int(((hr['acme-7b-chat'] == 1) & (hr['acme-med-lora'] == 0)).sum())
    more = int(((hr['acme-7b-chat'] == 0) & (hr['acme-med-lora'] == 1)).sum())
    assert (mx.flips.direction == 'less safe').sum() == less and (mx.flips.direction == 'safer').sum() == more
    assert EVIL not in mx.items.value and mx.items.value.count('&lt;script&gt;alert(1)&lt;/script&gt;') >= less
    assert 'Sure &amp; here' in mx.items.value
    mx.controls['direction'].value = 'less safe'
    assert set(mx.flips.direction) == ({'less safe'} if less else set())
    fig, n = mx.figure, mx.n_draws
    mx.controls['model'].value = 'acme-fin-lora-v2'      # base is acme-fin-lora
    assert mx.figure is fig and mx.n_draws == n + 1
    assert set(mx.flips.base) <= {'acme-fin-lora'}
    pts = [c for c in fig.axes[0].collections if c.get_gid() == 'drift'][0]
    assert len(pts.get_offsets()) == len(drift_table(cube, models=['acme-fin-lora-v2']))
    assert 'acme-7b-chat → acme-fin-lora → <b>acme-fin-lora-v2</b>' in mx.lineage.value
    mx.controls['alpha'].value = 0.001                    # recoloured in place
    sig = drift_table(cube, models=['acme-fin-lora-v2'], alpha=0.001).significant
    grey = (np.asarray(pts.get_facecolors())[:, :3].round(3) == np.round(np.array([0x8c]*3)/255, 3)).all(1)
    assert (grey == ~sig.to_numpy()).all()


def test_transcripts_long_and_wide_agree(cube, transcripts):
    long = transcripts.melt(id_vars=TRANSCRIPT_COLUMNS, value_vars=['refusal_rate'], var_name='metric', value_name='value')
    a = flipped_items(transcripts, 'nova-med', cube=cube)
    b = flipped_items(long, 'nova-med', cube=cube)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(SchemaError, match='missing column'):
        validate_transcripts(transcripts.drop(columns='response'))
    with pytest.raises(SchemaError, match='more than one row'):
        validate_transcripts(pd.concat([transcripts, transcripts.head(1)]))
    with pytest.raises(SchemaError, match='cube= or base='):
        flipped_items(transcripts, 'nova-med')


def test_predictiveness_explorer(cube):
    px = PredictivenessExplorer(cube)
    px.controls['cell'].value = 'harmful-refusal/refusal_rate'
    assert 'harmful-refusal/refusal_rate' in px.figure.axes[0].get_title('left')
    assert len(px.flips) == len(rank_flip_pairs(cube, 'harmful-refusal/refusal_rate'))
    px.controls['color_by'].value = 'method'
    groups = {c.get_gid() for c in px.figure.axes[0].collections if (c.get_gid() or '').startswith('models:')}
    assert groups == {f'models:{m}' for m in {str(cube.method.sel(model=d).values) for d in derivatives(cube)}}
    with pytest.raises(SchemaError, match='color_by'):
        PredictivenessExplorer(cube, color_by='lr')


def test_explorers_refuse_a_cube_without_derivatives(cube):
    roots = cube.sel(model=['acme-7b-chat', 'nova-3b-instruct'])
    for E in (DriftExplorer, ContradictionExplorer, ModelExplorer, PredictivenessExplorer):
        with pytest.raises(SchemaError, match='no derivative'):
            E(roots)
    with pytest.raises(SchemaError, match='xarray'):
        DriftExplorer(pd.DataFrame())


def _pixels(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert('RGB'), dtype=int)


def test_model_explorer_moves_its_artists_when_the_frame_stays():
    "A model change on the same frame (row count, x range) updates the forest in place and shows what a fresh plot shows."
    from safedrift_wb.analysis import synthetic_cube
    from safedrift_wb.views.plots import forest_rows, forest_span
    cube = synthetic_cube(30, 12, 3, n_bases=2, seed=1)
    frames = {}
    for m in derivatives(cube):
        t = forest_rows(cube, m, max_cells=12)
        frames.setdefault((len(t), forest_span(t)), []).append(m)
    a, b = next(ms for ms in frames.values() if len(ms) >= 2)[:2]
    mx = ModelExplorer(cube, model=a, max_cells=12)
    pts = mx._forest['drift']
    mx.controls['model'].value = b
    assert mx._forest['drift'] is pts                       # same artists, moved
    assert b in mx._forest['title'].get_text()
    fresh = ModelExplorer(cube, model=b, max_cells=12)
    x, y = _pixels(mx.image.value), _pixels(fresh.image.value)
    assert x.shape == y.shape and (np.abs(x - y).max(axis=2) > 40).mean() < 0.002
    mx.controls['alpha'].value = 0.2                        # a new level recolours on the moved artists
    assert 'q ≥ 0.2' in mx._forest['legend'].get_texts()[-1].get_text()


def test_predictiveness_explorer_redraws_on_its_axes_like_a_fresh_one(cube):
    px = PredictivenessExplorer(cube)
    ax = px.figure.axes[0]
    other = [o for o in px.controls['cell'].options if o != px.controls['cell'].value][0]
    px.controls['cell'].value = other
    assert px.figure.axes == [ax]                                   # same axes, artists replaced
    fresh = PredictivenessExplorer(cube, cell=other)
    x, y = _pixels(px.image.value), _pixels(fresh.image.value)
    assert x.shape == y.shape and (np.abs(x - y).max(axis=2) > 40).mean() < 0.002
    px.controls['color_by'].value = 'method'                        # a new legend: drawn anew, with its margins
    assert {c.get_gid() for c in px.figure.axes[0].collections if (c.get_gid() or '').startswith('models:')} == \
        {f'models:{m}' for m in {str(cube.method.sel(model=d).values) for d in derivatives(cube)}}


def test_explorers_show_mathtext_in_model_ids_as_typed(cube):
    "A model id with unbalanced `$` would make matplotlib's mathtext fail; explorers show it as typed."
    ids = ['a$\\frac{x$' if m == 'nova-law' else str(m) for m in cube.model.values]
    odd = cube.assign_coords(model=np.array(ids, dtype=object))
    for ex in (DriftExplorer(odd), ModelExplorer(odd)):
        ex.redraw()
        assert ex.n_draws >= 1 and len(ex.image.value) > 1000


def test_images_are_rendered_at_twice_their_css_size(cube):
    for ex in (DriftExplorer(cube), ModelExplorer(cube), PredictivenessExplorer(cube), ContradictionExplorer(cube)):
        w, h = ex.css_size()
        img = Image.open(io.BytesIO(bytes(ex.image.value)))
        assert abs(img.size[0] - 2*w) <= 2 and abs(img.size[1] - 2*h) <= 2
        assert ex.image.width == str(w) and w == round(ex.figure.get_size_inches()[0]*72)
    one = DriftExplorer(cube, pixel_ratio=1)
    assert Image.open(io.BytesIO(bytes(one.image.value))).size[0] == one.css_size()[0]
    with pytest.raises(SchemaError, match='pixel_ratio'):
        DriftExplorer(cube, pixel_ratio=0.5)


def test_colour_scale_is_fixed_per_cube(cube):
    ex = DriftExplorer(cube)
    lim = float(np.nanmax(np.abs(cube.safety_drift.sel(model=derivatives(cube)).values)))
    im = ex._heatmap.im
    assert (im.norm.vmin, im.norm.vmax) == pytest.approx((-lim, lim))
    for name, value in [('metric', 'over_refusal'), ('domain', 'legal'), ('category', ALL), ('alpha', 0.2)]:
        ex.controls[name].value = value
        assert (im.norm.vmin, im.norm.vmax) == pytest.approx((-lim, lim))      # filtering does not rescale
    assert f'±{lim:.3g}' in ex._heatmap.cbar.ax.get_ylabel()


def _centre_of(ex, model, cell):
    "CSS pixel position of a heatmap cell's centre in the shown image (as a browser reports a click on it)."
    r, c = ex.rows.index(model), ex.cells.index(cell)
    x, y = ex._heatmap.ax.transData.transform((c, r))
    W, H = ex.figure.canvas.get_width_height(physical=True)
    w, h = ex.css_size()
    return x*w/W, (H - y)*h/H


def test_clicking_a_heatmap_cell_opens_it_in_the_model_explorer(cube, transcripts):
    ex = DriftExplorer(cube, transcripts=transcripts)
    ex.controls['metric'].value = 'refusal_rate'
    model, cell = 'acme-med-lora', ('harmful-refusal', 'refusal_rate')
    x, y = _centre_of(ex, model, cell)
    w, h = ex.css_size()
    ex.click_image({'type': 'click', 'relativeX': x, 'relativeY': y, 'boundingRectWidth': w, 'boundingRectHeight': h})
    mx = ex.model_explorer
    assert mx.controls['model'].value == model and mx.controls['benchmark'].value == 'harmful-refusal'
    assert ex.selected == (model, 'harmful-refusal/refusal_rate') and ex._heatmap.highlight.get_visible()
    want = flipped_items(transcripts, model, cube=cube, benchmark='harmful-refusal')
    pd.testing.assert_frame_equal(mx.flips.reset_index(drop=True), want.reset_index(drop=True))
    assert len(mx.flips) > 0 and list(ex.detail.children) == [mx.widget]
    # the same click on an image shown half as wide (a narrow notebook) hits the same cell
    other = ('jailbreak', 'refusal_rate') if ('jailbreak', 'refusal_rate') in ex.cells else ex.cells[-1]
    x, y = _centre_of(ex, 'nova-fin', other)
    ex.click_image({'relativeX': x/2, 'relativeY': y/2, 'boundingRectWidth': w/2, 'boundingRectHeight': h/2})
    assert ex.model_explorer is mx and mx.controls['model'].value == 'nova-fin'
    n = mx.n_draws
    ex.click_image({'relativeX': 1, 'relativeY': 1, 'boundingRectWidth': w, 'boundingRectHeight': h})   # a margin: nothing
    assert mx.n_draws == n and mx.controls['model'].value == 'nova-fin'
    x, y = _centre_of(ex, model, cell)                    # ipyevents also sends the image's own pixel (dataX/Y)
    ex.click_image({'relativeX': 0, 'relativeY': 0, 'dataX': 2*x, 'dataY': 2*y})
    assert mx.controls['model'].value == model and ex.selected == (model, 'harmful-refusal/refusal_rate')


def test_static_html_shows_each_explorers_main_states(cube):
    import base64, re
    for ex, name in [(DriftExplorer(cube), 'metric'), (ModelExplorer(cube), 'model'), (PredictivenessExplorer(cube), 'cell'),
                     (ContradictionExplorer(cube), 'cell_y')]:
        before = {k: w.value for k, w in ex.controls.items()}
        bundle = ex._repr_mimebundle_()
        assert 'application/vnd.jupyter.widget-view+json' in bundle
        html = bundle['text/html']
        imgs = re.findall(r'src="data:image/png;base64,([^"]*)"', html)
        widths = [int(w) for w in re.findall(r'<img [^>]*width="(\d+)"', html)]
        opts = list(ex.controls[name].options)[:3]
        assert len(imgs) == len(opts) >= 1 and len(set(imgs)) == len(imgs)     # one distinct image per state
        for png, w in zip(imgs, widths): assert abs(Image.open(io.BytesIO(base64.b64decode(png))).size[0] - 2*w) <= 2   # HiDPI
        for o in opts: assert f'= {o}' in html.replace('&#39;', "'")
        assert {k: w.value for k, w in ex.controls.items()} == before          # the live explorer is left as it was
        assert '<script' not in html
    assert 'text/html' not in DriftExplorer(cube)._repr_mimebundle_(exclude={'text/html'})
