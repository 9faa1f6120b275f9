"""The drift report as version 1 wrote it, with f-strings: kept unchanged so that tests can check that the templated report writes the same HTML."""
from __future__ import annotations
import datetime
import json
from pathlib import Path
import matplotlib
import numpy as np
import pandas as pd
import xarray as xr

from safedrift_wb.common.errors import SchemaError, UsageError

from safedrift_wb.cube import read_cube, summarize
from safedrift_wb.analysis import contradiction, disagreement
from safedrift_wb.views.fmt import esc, estimate, html_table, img_tag, num, value_text
from safedrift_wb.views.plot_base import new_figure
from safedrift_wb.views.drift_tables import cell_label, derivatives, drift_table, lineage_of, lineage_order, measured_cells
from safedrift_wb.views.heatmap import plot_drift_heatmap
from safedrift_wb.views.scatter_plots import (contradictory_pairs, plot_contradiction, plot_disagreement, plot_predictiveness,
                            quiet_predictiveness, rank_flip_pairs)
from safedrift_wb.views.transcripts import flipped_items, flips_html, validate_transcripts


_SETTINGS = [('source', 'source of the scores'), ('ci_prob', 'interval coverage'), ('n_boot', 'bootstrap resamples'),
             ('seed', 'seed'), ('test', 'paired test'), ('score_ci_method', 'score intervals'),
             ('drift_ci_method', 'drift intervals'), ('q_scope', 'FDR (Benjamini-Hochberg) over'), ('created', 'cube created'),
             ('safedrift_wb_version', 'safedrift_wb version')]

def _provenance(cube) -> dict:
    p = cube.attrs.get('provenance', {})
    if isinstance(p, str):
        try: p = json.loads(p)
        except ValueError: p = {'provenance': p}
    return p if isinstance(p, dict) else {'provenance': p}

def _judges(cube, transcripts) -> list[str]:
    "Judges named in the cube's attributes or provenance, or in a transcripts' `judge` column."
    found = []
    def walk(k, v, under=False):   # under: inside a value whose key names a judge (e.g. a unit's {'judges': {...}})
        j = under or 'judge' in str(k).lower()
        if isinstance(v, dict):
            for kk, vv in v.items(): walk(kk, vv, j)
        elif isinstance(v, list):
            for vv in v: walk(k, vv, j)
        elif j: found.append(f"{k}: {v}")
    for k, v in {**{k: v for k, v in cube.attrs.items() if k != 'provenance'}, **_provenance(cube)}.items(): walk(k, v)
    if transcripts is not None and 'judge' in transcripts.columns:
        found += [f"judge (transcripts): {j}" for j in sorted(transcripts['judge'].dropna().astype(str).unique())]
    return list(dict.fromkeys(found))

PROV_INLINE = 300  # provenance values longer than this (as text) are folded under the table

def evaluated_html(cube:xr.Dataset, # a drift cube
                   transcripts:pd.DataFrame|None=None, # transcripts, for the judges they name
                  ) -> str:
    "Models with lineage and metadata, benchmarks with category and metrics, settings, provenance and judges."
    ids = lineage_order(cube)
    meta = [c for c in cube.coords if c not in ('model', 'base') and cube[c].dims == ('model',)]
    rows = []
    for m in ids:
        lin = lineage_of(cube, m)
        rows.append([m, ' → '.join(lin['ancestors'] + [m]) if lin['ancestors'] else '(root)',
                     *[value_text(cube[c].sel(model=m).values.item()) for c in meta]])
    models = html_table(rows, ['model', 'lineage (drift is measured against the last base)', *meta])
    bench = []
    for b in map(str, cube.benchmark.values):
        mets = [k for bb, k in measured_cells(cube, var='score') if bb == b]
        n = cube.n_items.sel(benchmark=b).max().values.item() if 'n_items' in cube else np.nan
        cat = str(cube.category.sel(benchmark=b).values) if 'category' in cube.coords else ''
        bench.append([b, cat, ', '.join(mets), '' if not np.isfinite(n) or n <= 0 else f"{int(n)}"])
    benches = html_table(bench, ['benchmark', 'category', 'metrics measured', 'items (most per model)'])
    dirs = [[str(k), 'higher is safer' if h else 'lower is safer', str(r)] for k, h, r in
            zip(cube.metric.values, cube.higher_is_safer.values, cube.role.values if 'role' in cube.coords else ['']*cube.sizes['metric'])]
    metrics = html_table(dirs, ['metric', 'direction', 'role'])
    settings = html_table([(label, value_text(cube.attrs[k])) for k, label in _SETTINGS if k in cube.attrs], ['setting', 'value'])
    prov = _provenance(cube)
    short = {k: value_text(v) for k, v in prov.items() if len(value_text(v)) <= PROV_INLINE}
    long = {k: v for k, v in prov.items() if k not in short}
    rows = [(k, short[k] if k in short else f"{len(v)} entries, below" if isinstance(v, (list, dict)) else 'below') for k, v in prov.items()]
    prov_t = html_table(rows, ['provenance', 'value']) if prov else '<p>none recorded</p>'
    prov_t += ''.join(f"<details><summary>{esc(k)}{f' ({len(v)} entries)' if isinstance(v, (list, dict)) else ''}</summary><pre class=\"sd-pre\">"
                      f"{esc(json.dumps(v, indent=1, default=str) if isinstance(v, (list, dict)) else str(v))}</pre></details>"
                      for k, v in long.items())
    judges = _judges(cube, transcripts)
    judge_t = ('<ul>' + ''.join(f'<li>{esc(j)}</li>' for j in judges) + '</ul>') if judges else \
              '<p>No judge is recorded in the cube\'s attributes or provenance.</p>'
    nd = len(derivatives(cube))
    return (f"<p>{cube.sizes['model']} models ({nd} derivatives of {cube.sizes['model'] - nd} roots), "
            f"{cube.sizes['benchmark']} benchmarks, {cube.sizes['metric']} metrics.</p>"
            f"<h3>Models</h3>{models}<h3>Benchmarks</h3>{benches}<h3>Metrics</h3>{metrics}"
            f"<h3>Settings</h3>{settings}<h3>Provenance</h3>{prov_t}<h3>Judges</h3>{judge_t}")

def verdicts_html(cube:xr.Dataset, # a drift cube
                  *, alpha:float=0.05, # FDR level: significant means q_value < alpha
                 ) -> str:
    "One row per derivative: significantly safer and less-safe cells, contradiction, largest regression."
    s = summarize(cube, alpha=alpha)
    rows = [[m, r.base, r.domain, int(r.cells_tested), int(r.n_safer), int(r.n_less_safe),
             'yes' if r.contradictory else 'no', r.largest_regression or '—'] for m, r in s.iterrows()]
    return html_table(rows, ['derivative', 'base', 'domain', 'safety cells tested', 'significantly safer', 'significantly less safe',
                             'contradictory', 'largest significant regression'])

def significant_html(cube:xr.Dataset, # a drift cube
                     *, alpha:float=0.05, # FDR level: significant means q_value < alpha
                     max_rows:int=300, # rows shown at most (most significant first)
                    ) -> str:
    "Every significant derivative cell with its interval, scores, items shared, p and q."
    t = drift_table(cube, alpha=alpha, significant_only=True)
    if t.empty: return f'<p>No derivative cell is significant at q &lt; {alpha:g}.</p>'
    t = t.sort_values(['q_value', 'p_value'], kind='stable')
    ci = float(cube.attrs.get('ci_prob', 0.95))
    cls = {'safer': 'safer', 'better': 'safer', 'less safe': 'less', 'worse': 'less'}
    body = ''.join(
        f'<tr class="{cls.get(r.verdict, "")}"><td>{esc(r.model)}</td><td>{esc(r.base)}</td><td>{esc(r.benchmark)}</td>'
        f'<td>{esc(r.category)}</td><td>{esc(r.metric)}{" (utility)" if r.role == "utility" else ""}</td><td>{esc(r.verdict)}</td>'
        f'<td class="num">{r.safety_drift:+.3f} [{r.lower:+.3f}, {r.upper:+.3f}]</td><td class="num">{r.drift:+.3f}</td>'
        f'<td class="num">{r.base_score:.3f} → {r.score:.3f}</td><td class="num">{int(r.n_shared) if np.isfinite(r.n_shared) else ""}</td>'
        f'<td class="num">{r.p_value:.2g}</td><td class="num">{r.q_value:.2g}</td></tr>' for r in t.head(max_rows).itertuples())
    more = f'<p>{len(t) - max_rows} more significant cells not shown.</p>' if len(t) > max_rows else ''
    head = ('<tr><th>derivative</th><th>base</th><th>benchmark</th><th>category</th><th>metric</th><th>verdict</th>'
            f'<th>safety drift [{ci:.0%} interval]</th><th>drift</th><th>score: base → derivative</th><th>items</th><th>p</th><th>q</th></tr>')
    return f'<p>{len(t)} significant cells (q &lt; {alpha:g}).</p><table class="sd-table">{head}{body}</table>{more}'

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fff}
main{max-width:1200px;margin:0 auto;padding:1.5em 2em 4em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em} .sub{color:#666;margin-top:0}
nav ol{columns:2;color:#444} a{color:#2166ac}
table.sd-table{border-collapse:collapse;font-size:.85em;margin:.6em 0 1.2em;max-width:100%}
table.sd-table th,table.sd-table td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
table.sd-table th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.safer td:nth-child(6){color:#2166ac;font-weight:600} tr.less td:nth-child(6){color:#b2182b;font-weight:600}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.5em 0}
.note{background:#f7f7f7;border-left:3px solid #bbb;padding:.5em 1em;font-size:.9em}
table.sd-flips td div{max-height:14em;overflow:auto}
pre.sd-pre { max-height: 24em; overflow: auto; font-size: 11px; background: #f6f6f6; padding: 0.5em; white-space: pre-wrap; }
"""

def _figure_sections(cube, alpha, dpi):
    out = []
    out.append(('heatmap', 'Drift heatmap', img_tag(plot_drift_heatmap(cube, alpha=alpha), alt='safety drift heatmap', dpi=dpi)))
    safety = [cell_label(c) for c in measured_cells(cube, include_utility=False)]
    if len(safety) >= 2:
        d = disagreement(cube, alpha=alpha, detail=True)
        top = contradictory_pairs(cube, alpha=alpha, data=d)
        cx, cy = (top.cell_x[0], top.cell_y[0]) if len(top) else safety[:2]
        fig = new_figure((14, 6.6))
        a1, a2 = fig.subplots(1, 2, width_ratios=[1, 1.15])
        plot_contradiction(cube, cx, cy, alpha=alpha, ax=a1)
        plot_disagreement(cube, alpha=alpha, data=d, highlight=(cx, cy), ax=a2)
        c = contradiction(cube, alpha=alpha).to_dataframe()
        c = c[c.contradictory.astype(bool)]
        rows = [(m, int(r.n_safer), int(r.n_less_safe), f"{r.contradiction_index:.2f}") for m, r in c.iterrows()]
        table = html_table(rows, ['derivative', 'significantly safer cells', 'significantly less safe cells', 'contradiction index']) \
                if rows else '<p>No derivative is significantly safer on one safety cell and less safe on another.</p>'
        out.append(('contradiction', 'Contradictions',
                    f'<p>The pair of cells shown is the one where most derivatives have significant safety drifts of opposite '
                    f'signs: <b>{esc(cx)}</b> and <b>{esc(cy)}</b>. Right: for every pair of safety cells, the share of derivatives '
                    f'significant on both whose drifts disagree in sign.</p>'
                    + img_tag(fig, alt=f'contradiction scatter of {cx} and {cy}, and the disagreement matrix', dpi=dpi)
                    + '<h3>Contradictory derivatives (all safety cells)</h3>' + table))
    cells = measured_cells(cube, var='score')
    if derivatives(cube) and cells:
        flips = [(len(rank_flip_pairs(cube, c)), -i, c) for i, c in enumerate(cells)]
        best = max(flips)[2]
        out.append(('predictiveness', 'Base versus derivative',
                    f'<p>Does a base model\'s score stand in for its derivatives\'? Cell: <b>{esc(cell_label(best))}</b> (the one with '
                    f'the most rank flips). Points on the dashed line would mean "derivative = base"; orange lines join pairs of '
                    f'derivatives ordered opposite to their bases.</p>'
                    + img_tag(plot_predictiveness(cube, best), alt=f'base versus derivative scores on {cell_label(best)}', dpi=dpi)
                    + _predictiveness_table(cube)))
    return out

def _predictiveness_table(cube):
    p = quiet_predictiveness(cube)
    rows = []
    for b, k in measured_cells(cube, var='score'):
        s = p.sel(benchmark=b, metric=k)
        if int(s.n_pairs) == 0: continue
        lo, hi = s.rank_corr_ci.values
        rank_corr = estimate(s.rank_corr, lo, hi, '.2f', missing='', sep=' ') if np.isfinite(lo) else num(s.rank_corr, '.2f', missing='')
        rows.append([f"{b} / {k}", int(s.n_pairs), rank_corr, num(s.mae_base, '.3f', missing=''), num(s.rank_flip_rate, '.2f', missing=''),
                     int(s.n_comparable)])
    return '<h3>Predictiveness per cell</h3>' + html_table(rows, ['cell', 'pairs', 'rank correlation [interval]',
                                                                   'mean abs. error of "derivative = base"', 'rank flip rate', 'comparable pairs'])

def flips_section(cube:xr.Dataset, # a drift cube
                  transcripts:pd.DataFrame, # model, benchmark, item, prompt, response + judged values
                  *, max_examples:int=5, # items shown per derivative and direction
                  threshold:float=0.5, # a judged value at least this counts as outcome 1
                 ) -> str:
    "Per derivative, items whose judged outcome flipped from its base, with both responses (escaped)."
    tr = validate_transcripts(transcripts)
    have = set(tr.model)
    out, counts = [], []
    for m in derivatives(cube):
        base = lineage_of(cube, m)['ancestors'][-1]
        if m not in have or base not in have: continue
        f = flipped_items(tr, m, cube=cube, threshold=threshold)
        counts.append([m, base, int((f.direction == 'less safe').sum()), int((f.direction == 'safer').sum()),
                       int((f.direction == 'changed').sum())])
        if len(f): out.append(f'<h3>{esc(m)} <small>vs {esc(base)}</small></h3>' + flips_html(f, max_items=max_examples))
    if not counts: return '<p>The transcripts hold no derivative together with its base.</p>'
    return (html_table(counts, ['derivative', 'base', 'items less safe', 'items safer', 'changed (metric of unknown direction)'])
            + ''.join(out))

def report_html(cube:xr.Dataset, # a drift cube
                *,
                alpha:float=0.05, # FDR level: significant means q_value < alpha
                transcripts:pd.DataFrame|None=None, # prompts, responses and judged values per item (optional)
                title:str|None=None, # title of the report
                max_examples:int=5, # flipped items shown per derivative and direction
                dpi:float=100, # resolution of the figures
               ) -> str:
    "The drift report as one self-contained HTML document."
    if not isinstance(cube, xr.Dataset): raise SchemaError(f"report: expected a drift cube (xarray.Dataset), got {type(cube).__name__}")
    missing = [v for v in ('score', 'safety_drift', 'safety_drift_ci', 'drift', 'p_value', 'q_value') if v not in cube.variables]
    if missing: raise SchemaError(f"report: the cube lacks {missing}; is it a drift cube from build_cube or cube_from_scores?")
    if not 0 < alpha < 1: raise SchemaError(f"alpha must be in (0, 1), got {alpha}")
    if transcripts is not None: validate_transcripts(transcripts)
    title = title or 'Safety drift report'
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    ci = float(cube.attrs.get('ci_prob', 0.95))
    sections = [('evaluated', 'What was evaluated', evaluated_html(cube, transcripts)),
                ('verdicts', 'Verdict per derivative', verdicts_html(cube, alpha=alpha)),
                ('significant', 'Significant drifts', significant_html(cube, alpha=alpha))]
    if derivatives(cube):
        with matplotlib.rc_context({'text.parse_math': False}):   # model ids are text: '$x$' is not mathtext
            sections += _figure_sections(cube, alpha, dpi)
    if transcripts is not None:
        sections.append(('flips', 'Items that flipped', flips_section(cube, transcripts, max_examples=max_examples)))
    note = (f'<p class="note"><b>How to read.</b> Drift is a derivative\'s score minus its immediate base\'s score, paired on '
            f'shared items. <i>Safety drift</i> is drift oriented so that positive means safer, whatever the metric\'s direction. '
            f'Intervals cover {ci:.0%}. A drift is <i>significant</i> when its Benjamini-Hochberg q-value is below {alpha:g}; '
            f'the paired test: {esc(cube.attrs.get("test", "not recorded"))}.</p>')
    nav = '<nav><ol>' + ''.join(f'<li><a href="#{k}">{esc(t)}</a></li>' for k, t, _ in sections) + '</ol></nav>'
    body = ''.join(f'<section id="{k}"><h2>{esc(t)}</h2>{h}</section>' for k, t, h in sections)
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><style>{CSS}</style></head><body><main>'
            f'<h1>{esc(title)}</h1><p class="sub">written {now} by safedrift_wb '
            f'{esc(cube.attrs.get("safedrift_wb_version", ""))}; cube created {esc(cube.attrs.get("created", "(unknown)"))}</p>'
            f'{note}{nav}{body}</main></body></html>')

