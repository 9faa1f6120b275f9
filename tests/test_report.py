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
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in html
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
