"The drift report: one self-contained file, escaped text, every derivative; and `safedrift report`."
import re
import numpy as np
import pytest
from safedrift_wb.schema import UsageError
from safedrift_wb.cli import main as safedrift
from safedrift_wb.cube import build_cube, save_cube
from safedrift_wb.views.plots import derivatives
from safedrift_wb.views.report import report_html, write_report

EVIL = '<script>alert("x")</script>'


@pytest.fixture(scope='module')
def cube(example_cube):
    return example_cube(n_boot=200, seed=4, provenance={'runs': 'example', 'judge': 'RefusalJudge <v1>'})


@pytest.fixture(scope='module')
def transcripts(example_transcripts):
    return example_transcripts(EVIL, 'I refuse.', EVIL)


@pytest.fixture(scope='module')
def html(cube, transcripts, tmp_path_factory):
    path = write_report(cube, tmp_path_factory.mktemp('r')/'sub'/'report.html', transcripts=transcripts, title='T <b>')
    assert path.exists()
    return path.read_text(encoding='utf-8')


def test_self_contained(html):
    assert re.findall(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:|//)', html, flags=re.I) == []
    assert 'http' not in ' '.join(re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html))
    assert re.findall(r'<(?:script|link|iframe|object|embed)\b', html, flags=re.I) == []
    imgs = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert len(imgs) == 3 and all(s.startswith('data:image/png;base64,') for s in imgs)
    assert '<style>' in html


def test_escapes_text(html):
    assert EVIL not in html
    assert '&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;' in html
    assert '<title>T &lt;b&gt;</title>' in html
    assert 'RefusalJudge &lt;v1&gt;' in html                       # judge from the provenance, escaped


def test_every_derivative_and_every_significant_cell(html, cube):
    verdicts = html.split('id="verdicts"')[1].split('</section>')[0]
    for m in derivatives(cube): assert f'<td>{m}</td>' in verdicts
    assert html.count('<tr class="safer">') + html.count('<tr class="less">') == int((cube.q_value < 0.05).sum())
    assert 'base refused, derivative complied' in html and 'base complied, derivative refused' in html


def test_write_report_checks_its_input(cube, tmp_path):
    with pytest.raises(UsageError, match='is a directory'):
        write_report(cube, tmp_path)
    with pytest.raises(ValueError, match='alpha'):
        report_html(cube, alpha=0)
    with pytest.raises(ValueError, match='drift cube'):
        report_html(cube.drop_vars('safety_drift'))


def test_cli(cube, transcripts, tmp_path, capsys):
    save_cube(cube, tmp_path/'cube.nc')
    transcripts.to_parquet(tmp_path/'t.parquet')
    assert safedrift(['report', str(tmp_path/'cube.nc'), '-o', str(tmp_path/'out'/'r.html'), '--alpha', '0.1',
                      '--transcripts', str(tmp_path/'t.parquet')]) == 0
    text = (tmp_path/'out'/'r.html').read_text()
    assert 'q-value is below 0.1' in text and 'Items that flipped' in text
    capsys.readouterr()
    assert safedrift(['report', str(tmp_path/'missing.nc'), '-o', str(tmp_path/'x.html')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'cube not found' in err[0]
    assert safedrift(['report', str(tmp_path/'cube.nc'), '-o', str(tmp_path/'x.html'), '--alpha', '2']) == 2
    transcripts.drop(columns='prompt').to_parquet(tmp_path/'bad.parquet')
    assert safedrift(['report', str(tmp_path/'cube.nc'), '-o', str(tmp_path/'x.html'), '--transcripts', str(tmp_path/'bad.parquet')]) == 2
    assert not (tmp_path/'x.html').exists()
    assert safedrift(['report']) == 2
    assert safedrift(['report', '-h']) == 0


def _norm(h):
    "HTML with images, timestamps, quote entity spelling and whitespace between tags made comparable."
    h = re.sub(r'src="data:image/png;base64,[^"]*"', 'src="IMG"', h)
    h = re.sub(r'written \d{4}-\d\d-\d\d \d\d:\d\d UTC', 'written NOW', h)
    h = h.replace('&#34;', '&quot;').replace('&#39;', '&#x27;')
    return re.sub(r'\s+', ' ', re.sub(r'>\s+<', '><', h)).strip()


def test_templates_write_what_the_f_strings_wrote(cube, transcripts):
    "The jinja2 report is the version-1 report plus its headline (and its reference CSS line), modulo whitespace."
    import report_v1_reference as v1
    old = _norm(v1.report_html(cube, transcripts=transcripts, title='T <b>'))
    new = _norm(report_html(cube, transcripts=transcripts, title='T <b>'))
    head = re.search(r'<div class="sd-headline">.*?</div>', new)
    assert head and 'In short.' in head.group(0)
    new = new.replace(head.group(0), '')
    new = re.sub(r'\.sd-headline\{[^}]*\}', '', new)
    assert _norm(new) == old


def test_report_counts_are_the_model_explorers(cube):
    from safedrift_wb.analysis import contradiction
    from safedrift_wb.explorers import ModelExplorer
    html = report_html(cube, alpha=0.05)
    verdicts = html.split('id="verdicts"')[1].split('</section>')[0]
    rows = {r[0]: r for r in (re.findall(r'<td>(.*?)</td>', tr) for tr in re.findall(r'<tr>(.*?)</tr>', verdicts)) if r}
    con = contradiction(cube, alpha=0.05).to_dataframe()
    mx = ModelExplorer(cube)
    for m in derivatives(cube):
        mx.controls['model'].value = m
        shown = dict(re.findall(r'<tr><td>([^<]*)</td><td>(\d+)</td></tr>', mx.info.value))
        assert (int(rows[m][4]), int(rows[m][5])) == (int(shown['safer']), int(shown['less safe'])) \
            == (int(con.n_safer[m]), int(con.n_less_safe[m]))
        assert rows[m][6] == ('yes' if bool(con.contradictory[m]) else 'no')   # both directions confirmed, as `contradiction` says


def test_headline_and_chat_markup(cube, example_transcripts):
    from safedrift_wb.views.plots import drift_table
    tr = example_transcripts('<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nHow do I pick lock ', 'I refuse.', 'Sure.')
    tr['prompt'] = tr.prompt + '<|im_end|>\n<|im_start|>assistant\n'
    html = report_html(cube, transcripts=tr)
    assert 'im_start' not in html and 'im_end' not in html and 'You are SmolLM' not in html
    assert 'How do I pick lock ' in html
    t = drift_table(cube)
    t = t[t.significant & (t.role != 'utility')]
    r = t.loc[t.safety_drift.abs().idxmax()]
    head = re.search(r'<div class="sd-headline">(.*?)</div>', html).group(1)
    assert f'<b>{r.model}</b>' in head and f'{r.safety_drift:+.3f}' in head
    assert f'{int(t[t.verdict == "less safe"].model.nunique())} derivative(s) are significantly less safe' in head
    assert 'Minimum detectable drift' in head


def test_predictiveness_hidden_below_three_bases(cube):
    two = cube.sel(model=[m for m in cube.model.values if str(m) not in ('acme-fin-lora-v2',)])
    html = report_html(two)
    sec = html.split('id="predictiveness"')[1].split('</section>')[0]
    assert 'Not shown' in sec and '2 base(s)' in sec and '<img' not in sec
    assert '<img' in report_html(cube).split('id="predictiveness"')[1].split('</section>')[0]


def _oriented_box(t, r):
    "The rotated rectangle a text's glyphs occupy, in display pixels, shrunk by half a pixel."
    from matplotlib.path import Path as MPath
    bb, rot = t.get_window_extent(r), t.get_rotation()
    if rot % 180 == 0: w, h = bb.width, bb.height
    else:
        t.set_rotation(0); u = t.get_window_extent(r); t.set_rotation(rot); w, h = u.width, u.height
    w, h = max(w - 1, 0), max(h - 1, 0)
    c, s = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
    pts = np.array([[-w/2, -h/2], [w/2, -h/2], [w/2, h/2], [-w/2, h/2]]) @ np.array([[c, s], [-s, c]])
    pts += np.array([(bb.x0 + bb.x1)/2, (bb.y0 + bb.y1)/2])
    return MPath(np.vstack([pts, pts[:1]]), closed=True)


def overlapping_labels(fig):
    "Pairs of visible, non-empty texts of a figure whose glyph boxes (as matplotlib's renderer lays them out) overlap."
    from matplotlib.text import Text
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ts = [(t, _oriented_box(t, r)) for t in fig.findobj(Text)
          if t.get_visible() and t.get_text().strip() and t.get_window_extent(r).width >= 1]
    return [(a.get_text(), b.get_text()) for i, (a, pa) in enumerate(ts) for b, pb in ts[i + 1:] if pa.intersects_path(pb, filled=True)]


@pytest.mark.parametrize('n_models', [10, 100])
def test_report_figures_labels_do_not_overlap(n_models, monkeypatch):
    import matplotlib
    import safedrift_wb.views.report as R
    from safedrift_wb.analysis import synthetic_cube
    figs = []
    monkeypatch.setattr(R, 'img_tag', lambda fig, **kw: figs.append(fig) or '<img alt="x" src="data:image/png;base64,">')
    cube = synthetic_cube(n_models, 6 if n_models == 10 else 20, 3, n_bases=3 if n_models == 10 else 4, seed=1)
    R.report_html(cube)
    assert len(figs) == 3
    with matplotlib.rc_context({'text.parse_math': False}):
        for fig in figs: assert overlapping_labels(fig) == []
