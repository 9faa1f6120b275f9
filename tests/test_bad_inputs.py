"""A corpus of bad inputs (issue 15): each runs the real `safedrift` entry point and must exit with status 2, print
exactly one non-empty line on stderr, no traceback, and write nothing outside its output folder (a sentinel tree:
the whole temporary folder around the output folder is snapshot before and after).

`CASES` maps a case id to `build(inp, out) -> argv`: it writes the bad input under `inp` and names outputs under
`out`. `run_case` runs one case in-process and classifies the outcome; it needs nothing but `safedrift_wb.cli.main`,
so the same corpus can be run against an older checkout (PYTHONPATH) to count what changed.
"""
import contextlib, errno, gzip, io, json, os, subprocess, sys, traceback, zipfile
from pathlib import Path
import numpy as np
import pandas as pd
import pytest

from safedrift_wb.cli import main

CASES = {}      # id -> build(inp, out) -> argv
PATCHED = {}    # id -> name of an in-process fault to inject while the case runs


def case(cid, patch=None):
    def deco(fn):
        assert cid not in CASES, cid
        CASES[cid] = fn
        if patch: PATCHED[cid] = patch
        return fn
    return deco


def cases(prefix, values, build, patch=None):
    "Register one case per value: `build(value, inp, out) -> argv`."
    for k, v in values.items():
        case(f'{prefix}-{k}', patch)(lambda inp, out, v=v: build(v, inp, out))


# --- good inputs that each case spoils in one place --------------------------------------------------------------

def items_df(n=12):
    rows = []
    for m, p in (('b', 0.8), ('d', 0.4)):
        for i in range(n):
            rows.append(dict(model=m, benchmark='xstest', item=f'q{i}', metric='refusal_rate', value=float((i * 7 % 10)/10 < p)))
    return pd.DataFrame(rows)


def models_df():
    return pd.DataFrame(dict(model=['b', 'd'], base=['', 'b'], family='f', domain=['general', 'legal'], method=['base', 'lora']))


def write_items(inp, df=None, name='items.csv', models=None):
    (df if df is not None else items_df()).to_csv(inp/name, index=False)
    (models if models is not None else models_df()).to_csv(inp/'models.csv', index=False)
    return inp/name


def write_scores(inp, values=(0.9, 0.7), extra=None):
    df = pd.DataFrame(dict(model=['b', 'd'], benchmark='xstest', metric='refusal_rate', value=list(values), n=250))
    for k, v in (extra or {}).items(): df[k] = v
    df.to_csv(inp/'scores.csv', index=False)
    models_df().to_csv(inp/'models.csv', index=False)
    return inp/'scores.csv'


def write_cube(inp, name='cube.nc'):
    "A small real cube (built by the code under test)."
    from safedrift_wb.cube import build_cube, save_cube
    save_cube(build_cube(items_df(), models_df(), n_boot=100), inp/name)
    return inp/name


def broken_model(inp):
    "A model folder that passes every check made before loading and fails fast when loaded."
    d = inp/'broken'; d.mkdir(exist_ok=True); (d/'config.json').write_text('{"model_type": "nonsense"}')
    return d


def toml_str(s): return json.dumps(s)   # a TOML basic string is a JSON string


def plan_text(inp, models=None, generation='', benchmarks=None, run='', extra=''):
    p = broken_model(inp)
    models = models if models is not None else f'[[models]]\nid = "base"\npath = {toml_str(str(p))}\n'
    benchmarks = benchmarks if benchmarks is not None else '[benchmarks]\nsuite = "none"\nids = ["truthfulness-mc1"]\nlimit = 2\n'
    return f'{extra}\n{run}\n{generation}\n{benchmarks}\n{models}'


def eval_argv(inp, out, text=None, raw=None, **kw):
    f = inp/'plan.toml'
    if raw is not None: f.write_bytes(raw)
    else: f.write_text(text if text is not None else plan_text(inp, **kw), encoding='utf-8')
    return ['eval', str(f), '-o', str(out/'run'), '--no-progress']


def model_entry(**kv):
    return '[[models]]\n' + ''.join(f'{k} = {v}\n' for k, v in kv.items())


# --- 1. command-line flags ----------------------------------------------------------------------------------------

def _cube_flags(flags, inp, out): return ['cube', str(write_items(inp)), '-o', str(out/'c.nc'), *flags]
cases('flag-cube', {'nboot-0': ['--n-boot', '0'], 'nboot-neg': ['--n-boot', '-5'], 'nboot-text': ['--n-boot', 'abc'],
                    'nboot-float': ['--n-boot', '1.5'], 'nboot-nan': ['--n-boot', 'nan'], 'nboot-50': ['--n-boot', '50'],
                    'ci-0': ['--ci-prob', '0'], 'ci-1': ['--ci-prob', '1'], 'ci-2': ['--ci-prob', '2'], 'ci-neg': ['--ci-prob', '-0.5'],
                    'ci-nan': ['--ci-prob', 'nan'], 'ci-inf': ['--ci-prob', 'inf'], 'ci-text': ['--ci-prob', 'high'],
                    'seed-neg': ['--seed', '-1'], 'seed-text': ['--seed', 'x'], 'unknown-flag': ['--bogus'],
                    'percent-no-scores': ['--percent']}, _cube_flags)
case('flag-cube-no-out')(lambda inp, out: ['cube', str(write_items(inp))])
case('flag-cube-scores-no-models')(lambda inp, out: ['cube', str(write_scores(inp)), '--scores', '-o', str(out/'c.nc')])

ALPHAS = {'5': '5', '0': '0', '1': '1', 'neg': '-0.1', 'nan': 'nan', 'inf': 'inf', 'text': 'abc'}
cases('flag-summary-alpha', ALPHAS, lambda v, inp, out: ['summary', str(write_cube(inp)), '--alpha', v])
cases('flag-report-alpha', ALPHAS, lambda v, inp, out: ['report', str(write_cube(inp)), '-o', str(out/'r.html'), '--alpha', v])
cases('flag-demo', {'nboot-0': ['--n-boot', '0'], 'nboot-50': ['--n-boot', '50'], 'alpha-5': ['--alpha', '5'],
                    'alpha-nan': ['--alpha', 'nan'], 'subset-0': ['--subset', '0'], 'subset-text': ['--subset', 'x'],
                    'workers-0': ['--workers', '0']},
      lambda v, inp, out: ['demo', '--example', '-o', str(out/'demo'), *v])
case('flag-demo-out-is-file')(lambda inp, out: (inp/'afile').write_text('x') and ['demo', '--example', '-o', str(inp/'afile')])
cases('flag-eval', {'limit-0': ['--limit', '0'], 'limit-text': ['--limit', 'x'], 'workers-0': ['--workers', '0']},
      lambda v, inp, out: eval_argv(inp, out) + v)
case('flag-eval-no-plan')(lambda inp, out: ['eval'])
case('flag-eval-plan-missing')(lambda inp, out: ['eval', str(inp/'nope.toml'), '-o', str(out/'run')])
case('flag-eval-plan-dir')(lambda inp, out: ['eval', str(inp), '-o', str(out/'run')])
case('flag-unknown-command')(lambda inp, out: ['frobnicate'])
case('flag-benchmarks-unknown')(lambda inp, out: ['benchmarks', 'no-such-benchmark'])
case('flag-benchmarks-n-text')(lambda inp, out: ['benchmarks', 'xstest', '-n', 'x'])


# --- 2. run plans: everything is checked before any work ------------------------------------------------------------

PLAN_MODELS = {   # [[models]] entries, TOML values
    'id-traversal': dict(id='"../../../x"'), 'id-abs': dict(id='"/tmp/x"'), 'id-home': dict(id='"~/x"'),
    'id-3-parts': dict(id='"a/b/c"'), 'id-backslash': dict(id='"a\\\\b"'), 'id-control': dict(id='"a\\u0001b"'),
    'id-newline': dict(id='"a\\nb"'), 'id-empty': dict(id='""'), 'id-dotdot': dict(id='".."'), 'id-space': dict(id='" x"'),
    'id-int': dict(id='3'), 'id-trailing-slash': dict(id='"org/"'),
    'base-traversal': dict(base='"../x"'), 'base-unknown': dict(base='"nobody"'),
    'path-missing-rel': dict(path='"./nope"'), 'path-missing-abs': dict(path='"/nonexistent/model"'),
    'path-gguf-missing': dict(path='"model.gguf"'), 'path-bad-hub-id': dict(path='"not a hub id"'), 'path-empty': dict(path='""'),
    'adapter-missing': dict(adapter='"./no-adapter"'), 'dtype-int3': dict(dtype='"int3"'), 'dtype-float64': dict(dtype='"float64"'),
    'device-gpu': dict(device='"gpu"'), 'device-cuda-x': dict(device='"cuda:x"'), 'max-length-0': dict(max_length='0'),
    'batch-0': dict(batch_size='0'), 'batch-big': dict(batch_size='"big"'), 'unknown-key': dict(dtyp='"bf16"'),
    'gguf-file-missing': dict(gguf_file='"m.gguf"'), 'meta-not-table': dict(meta='3'),
}

def _plan_model(kv, inp, out):
    p = broken_model(inp)
    entry = {'id': '"base"', 'path': toml_str(str(p)), **kv}
    return eval_argv(inp, out, models=model_entry(**entry))
cases('plan-model', PLAN_MODELS, _plan_model)

def _plan_files(kind, inp, out):
    "Model or adapter paths that exist but hold no model."
    p = broken_model(inp)
    (inp/'file.bin').write_text('x'); (inp/'empty').mkdir(exist_ok=True)
    entry = {'path-is-file': dict(path=toml_str(str(inp/'file.bin'))), 'path-no-config': dict(path=toml_str(str(inp/'empty'))),
             'adapter-no-config': dict(adapter=toml_str(str(inp/'empty'))), 'adapter-is-file': dict(adapter=toml_str(str(inp/'file.bin')))}[kind]
    return eval_argv(inp, out, models=model_entry(**{'id': '"base"', 'path': toml_str(str(p)), **entry}))
cases('plan-files', {k: k for k in ('path-is-file', 'path-no-config', 'adapter-no-config', 'adapter-is-file')}, _plan_files)

PLAN_GEN = {'temp-nan': 'temperature = nan', 'temp-inf': 'temperature = inf', 'temp-neg': 'temperature = -1.0',
            'temp-text': 'temperature = "hot"', 'tokens-0': 'max_new_tokens = 0', 'seed-neg': 'seed = -1',
            'stop-empty': 'stop = [""]', 'batch-0': 'batch_size = 0', 'batch-text': 'batch_size = "many"', 'unknown': 'temp = 1'}
cases('plan-gen', PLAN_GEN, lambda v, inp, out: eval_argv(inp, out, generation=f'[generation]\n{v}\n'))

PLAN_OTHER = {
    'bench-unknown': dict(benchmarks='[benchmarks]\nsuite = "none"\nids = ["nope"]\n'),
    'bench-suite': dict(benchmarks='[benchmarks]\nsuite = "all"\n'),
    'bench-limit-0': dict(benchmarks='[benchmarks]\nsuite = "none"\nids = ["truthfulness-mc1"]\nlimit = 0\n'),
    'bench-none': dict(benchmarks='[benchmarks]\nsuite = "none"\n'),
    'bench-load-missing': dict(benchmarks='[benchmarks]\nsuite = "none"\nload = [{loader = "xstest", path = "nope.csv"}]\n'),
    'run-device': dict(run='[run]\ndevice = "tpu"\n'),
    'run-unknown': dict(run='[run]\nworkers = 3\n'),
    'section-unknown': dict(extra='[extras]\nx = 1\n'),
    'judges-not-table': dict(extra='judges = 3\n'),
    'no-models': dict(models=''),
}
cases('plan-other', PLAN_OTHER, lambda kw, inp, out: eval_argv(inp, out, **kw))

def _plan_pair(kind, inp, out):
    p = toml_str(str(broken_model(inp)))
    a, b = {'dup-id': (dict(id='"a"'), dict(id='"a"')), 'cycle': (dict(id='"a"', base='"b"'), dict(id='"b"', base='"a"')),
            'self-base': (dict(id='"a"', base='"a"'), dict(id='"b"'))}[kind]
    return eval_argv(inp, out, models=model_entry(path=p, **a) + model_entry(path=p, **b))
cases('plan-pair', {k: k for k in ('dup-id', 'cycle', 'self-base')}, _plan_pair)

case('plan-toml-invalid')(lambda inp, out: eval_argv(inp, out, text='[[models]\nid = '))
case('plan-not-utf8')(lambda inp, out: eval_argv(inp, out, raw=b'[run]\nname = "\xff\xfe"\n'))
case('plan-empty')(lambda inp, out: eval_argv(inp, out, text=''))


# --- 3. fine-tuning and sweep plans --------------------------------------------------------------------------------

def ft_argv(inp, out, run_kv='', top=''):
    f = inp/'ft.toml'
    f.write_text(f'[finetune]\nfamily = "f"\noutput = {toml_str(str(out/"adapters"))}\n{top}\n'
                 f'[[finetune.runs]]\nname = "med"\ncorpus = ["medical"]\nsteps = 2\n{run_kv}\n', encoding='utf-8')
    return ['finetune', str(f), '--dry-run']

FT = {'lr-inf': 'lr = inf', 'lr-nan': 'lr = nan', 'lr-0': 'lr = 0', 'lr-neg': 'lr = -1e-4', 'share-1': 'safety_share = 1.0',
      'share-nan': 'safety_share = nan', 'rank-0': 'rank = 0', 'alpha-0': 'alpha = 0', 'alpha-inf': 'alpha = inf',
      'dropout-1': 'dropout = 1.0', 'warmup-nan': 'warmup = nan', 'decay-neg': 'weight_decay = -1.0', 'decay-inf': 'weight_decay = inf',
      'batch-0': 'batch_size = 0', 'maxlen-4': 'max_length = 4', 'threads-0': 'threads = 0', 'seed-neg': 'seed = -1',
      'base-missing': 'base = "./no-model"', 'unknown-key': 'learning_rate = 1e-4', 'corpus-empty': 'corpus = []'}
cases('ft-run', {k: v for k, v in FT.items() if k != 'corpus-empty'}, lambda v, inp, out: ft_argv(inp, out, v))
case('ft-run-corpus-empty')(lambda inp, out: _ft_raw(inp, out, '[[finetune.runs]]\nname = "med"\ncorpus = []\n'))
case('ft-run-steps-0')(lambda inp, out: _ft_raw(inp, out, '[[finetune.runs]]\nname = "med"\ncorpus = ["medical"]\nsteps = 0\n'))
case('ft-run-epochs-inf')(lambda inp, out: _ft_raw(inp, out, '[[finetune.runs]]\nname = "med"\ncorpus = ["medical"]\nepochs = inf\n'))
case('ft-name-traversal')(lambda inp, out: _ft_raw(inp, out, '[[finetune.runs]]\nname = "../x"\ncorpus = ["medical"]\n'))
case('ft-name-slash')(lambda inp, out: _ft_raw(inp, out, '[[finetune.runs]]\nname = "a/b"\ncorpus = ["medical"]\n'))
case('ft-dup-names')(lambda inp, out: _ft_raw(inp, out, '[[finetune.runs]]\nname = "a"\ncorpus = ["medical"]\n' * 2))
case('ft-no-runs')(lambda inp, out: _ft_raw(inp, out, ''))
case('ft-only-unknown')(lambda inp, out: ft_argv(inp, out) + ['--only', 'nobody'])
case('ft-corpus-missing')(lambda inp, out: _ft_raw(inp, out, '[[finetune.runs]]\nname = "a"\ncorpus = ["no-such-corpus"]\n'))

def _ft_raw(inp, out, runs):
    f = inp/'ft.toml'
    f.write_text(f'[finetune]\noutput = {toml_str(str(out/"adapters"))}\n{runs}', encoding='utf-8')
    return ['finetune', str(f), '--dry-run']

def sweep_argv(inp, out, sweep):
    p = toml_str(str(broken_model(inp)))
    f = inp/'sweep.toml'
    f.write_text(plan_text(inp, models=model_entry(id='"b"', path=p) + model_entry(id='"d"', path=p, base='"b"')) + f'\n[sweep]\n{sweep}\n', encoding='utf-8')
    return ['sweep', str(f), '-o', str(out/'sweep'), '--dry-run']

SWEEP = {'ci-2': 'derivatives = ["d"]\nalphas = [0.5]\nci_prob = 2.0', 'ci-nan': 'derivatives = ["d"]\nalphas = [0.5]\nci_prob = nan',
         'nboot-0': 'derivatives = ["d"]\nalphas = [0.5]\nn_boot = 0', 'alpha-nan': 'derivatives = ["d"]\nalphas = [nan]',
         'alpha-2': 'derivatives = ["d"]\nalphas = [2.0]', 'share-1': 'derivatives = ["d"]\nsafety_shares = [1.0]',
         'der-traversal': 'derivatives = ["../x"]\nalphas = [0.5]', 'der-empty': 'derivatives = []\nalphas = [0.5]',
         'seed-neg': 'derivatives = ["d"]\nalphas = [0.5]\nseed = -1', 'unknown-key': 'derivatives = ["d"]\nalphas = [0.5]\nfoo = 1',
         'no-grid': 'derivatives = ["d"]'}
cases('sweep', SWEEP, lambda v, inp, out: sweep_argv(inp, out, v))


# --- 4. item, model and score tables -------------------------------------------------------------------------------

def _cube_items(spoil, inp, out):
    f = write_items(inp)
    spoil(inp, f)
    return ['cube', str(f), '-o', str(out/'c.nc'), '--n-boot', '100']

def _set(col, row, val):
    def spoil(inp, f):
        df = pd.read_csv(f, dtype=str, keep_default_na=False); df.loc[row, col] = val; df.to_csv(f, index=False)
    return spoil

def _models(mutate):
    def spoil(inp, f):
        m = models_df(); m = mutate(m); m.to_csv(inp/'models.csv', index=False)
    return spoil

ITEMS = {
    'empty-file': lambda inp, f: f.write_text(''),
    'header-only': lambda inp, f: f.write_text('model,benchmark,item,metric,value\n'),
    'no-value-col': lambda inp, f: pd.read_csv(f).drop(columns='value').to_csv(f, index=False),
    'value-text': _set('value', 3, 'high'), 'value-nan': _set('value', 3, 'nan'), 'value-inf': _set('value', 3, 'inf'),
    'value-empty': _set('value', 3, ''), 'model-empty': _set('model', 3, ''), 'item-empty': _set('item', 3, ''),
    'dup-key': _set('item', 1, 'q0'),
    'not-utf8': lambda inp, f: f.write_bytes(f.read_bytes() + b'b,xstest,q\xff,refusal_rate,1\n'),
    'unknown-model': _set('model', 0, 'stranger'),
    'unknown-metric': lambda inp, f: pd.read_csv(f).assign(metric='no_direction').to_csv(f, index=False),
    'no-shared-items': lambda inp, f: pd.read_csv(f).assign(item=lambda d: np.where(d.model == 'd', 'z' + d['item'], d['item'])).to_csv(f, index=False),
    'models-missing': lambda inp, f: (inp/'models.csv').unlink(),
    'models-cycle': _models(lambda m: m.assign(base=['d', 'b'])),
    'models-unknown-base': _models(lambda m: m.assign(base=['', 'zz'])),
    'models-dup-id': _models(lambda m: m.assign(model=['b', 'b'])),
    'models-empty-id': _models(lambda m: m.assign(model=['b', ''])),
    'models-no-base-col': _models(lambda m: m.drop(columns='base')),
    'models-slash-column': _models(lambda m: m.assign(**{'lr/step': [0.1, 0.2]})),
    'models-header-only': lambda inp, f: (inp/'models.csv').write_text('model,base,family,domain,method\n'),
    'models-not-utf8': lambda inp, f: (inp/'models.csv').write_bytes(b'model,base,family,domain,method\nb,,f,general,base\nd,b,f,\xe9,lora\n'),
    'models-empty-file': lambda inp, f: (inp/'models.csv').write_text(''),
}
cases('items', ITEMS, _cube_items)
case('items-json-suffix')(lambda inp, out: (inp/'i.json').write_text('{}') and ['cube', str(inp/'i.json'), '--models', str(write_items(inp).with_name('models.csv')), '-o', str(out/'c.nc')])
case('items-parquet-corrupt')(lambda inp, out: write_items(inp) and (inp/'i.parquet').write_bytes(b'PAR1 not really') and ['cube', str(inp/'i.parquet'), '--models', str(inp/'models.csv'), '-o', str(out/'c.nc')])
case('items-missing')(lambda inp, out: ['cube', str(inp/'nope.csv'), '-o', str(out/'c.nc')])

def _scores(kw, inp, out):
    f = write_scores(inp, **{k: v for k, v in kw.items() if k != 'flags'})
    return ['cube', str(f), '--scores', '--models', str(inp/'models.csv'), '-o', str(out/'c.nc'), *kw.get('flags', [])]
SCORES = {'rate-7': dict(values=(0.9, 7.0)), 'rate-neg': dict(values=(-1.0, 0.5)), 'rate-percent-150': dict(values=(90.0, 150.0), flags=['--percent']),
          'rate-percent-neg': dict(values=(90.0, -1.0), flags=['--percent']), 'rate-inf': dict(values=(0.9, float('inf'))),
          'se-neg': dict(extra={'se': [-0.1, 0.1]}), 'n-inf': dict(extra={'n': [float('inf'), 10]}), 'value-text': dict(values=('0.9', 'high'))}
cases('scores', SCORES, _scores)
case('scores-empty')(lambda inp, out: write_scores(inp) and (inp/'scores.csv').write_text('model,benchmark,metric,value\n') and
                     ['cube', str(inp/'scores.csv'), '--scores', '--models', str(inp/'models.csv'), '-o', str(out/'c.nc')])
case('scores-no-metric')(lambda inp, out: write_scores(inp) and (inp/'scores.csv').write_text('model,benchmark,value\nb,x,0.5\n') and
                         ['cube', str(inp/'scores.csv'), '--scores', '--models', str(inp/'models.csv'), '-o', str(out/'c.nc')])


# --- 5. damaged run directories --------------------------------------------------------------------------------------

def good_run(inp):
    d = inp/'run'
    models_df().to_csv((d.mkdir(), d/'models.csv')[1], index=False)
    (d/'scope.json').write_text(json.dumps({'models': ['b', 'd'], 'benchmarks': ['xstest']}))
    items = items_df()
    for m in ('b', 'd'):
        u = d/'units'/m/'xstest'; u.mkdir(parents=True)
        items[items.model == m][['item', 'metric', 'value']].assign(judge='rules').to_parquet(u/'items.parquet', index=False)
        (u/'unit.json').write_text(json.dumps({'key': 'k', 'benchmark': 'xstest', 'category': 'over-refusal', 'benchmark_version': '1',
                                               'benchmark_hash': 'h', 'judges': {}, 'n_items': 12, 'lm': {'model': m}}))
    return d

RUN = {'unit-json-invalid': lambda d: (d/'units/d/xstest/unit.json').write_text('{not json'),
       'unit-json-keys': lambda d: (d/'units/d/xstest/unit.json').write_text('{"key": "k"}'),
       'unit-json-list': lambda d: (d/'units/d/xstest/unit.json').write_text('[1, 2]'),
       'items-corrupt': lambda d: (d/'units/d/xstest/items.parquet').write_bytes(b'garbage'),
       'items-missing': lambda d: (d/'units/d/xstest/items.parquet').unlink(),
       'items-no-value': lambda d: pd.DataFrame({'item': ['q0'], 'metric': ['refusal_rate']}).to_parquet(d/'units/d/xstest/items.parquet'),
       'models-binary': lambda d: (d/'models.csv').write_bytes(b'\x00\xff\xfe\x00'),
       'models-empty': lambda d: (d/'models.csv').write_text(''),
       'models-no-model-col': lambda d: (d/'models.csv').write_text('name,base\nb,\n'),
       'no-units': lambda d: __import__('shutil').rmtree(d/'units'),
       'no-models-csv': lambda d: (d/'models.csv').unlink(),
       'manifest-invalid': lambda d: (d/'manifest.json').write_text('{oops'),
       'scope-not-list': lambda d: (d/'scope.json').write_text('{"benchmarks": 3}')}
cases('rundir', RUN, lambda spoil, inp, out: (spoil(good_run(inp)), ['cube', str(inp/'run'), '-o', str(out/'c.nc'), '--n-boot', '100'])[1])


# --- 6. cube files for summary and report --------------------------------------------------------------------------

def _bad_cube(kind, inp):
    f = inp/'cube.nc'
    if kind == 'missing': return f
    if kind == 'dir': f.mkdir(); return f
    if kind == 'empty': f.write_bytes(b'')
    elif kind == 'text': f.write_text('model,score\nb,1\n')
    elif kind == 'random': f.write_bytes(bytes(range(256)) * 8)
    elif kind == 'truncated': write_cube(inp); f.write_bytes(f.read_bytes()[:2000])
    elif kind == 'not-a-cube':
        import xarray as xr
        xr.Dataset({'x': ('a', np.arange(3.0))}).to_netcdf(f, engine='h5netcdf')
    return f
CUBES = {k: k for k in ('missing', 'dir', 'empty', 'text', 'random', 'truncated', 'not-a-cube')}
cases('summary-cube', CUBES, lambda k, inp, out: ['summary', str(_bad_cube(k, inp))])
cases('report-cube', CUBES, lambda k, inp, out: ['report', str(_bad_cube(k, inp)), '-o', str(out/'r.html')])
case('report-out-is-dir')(lambda inp, out: ['report', str(write_cube(inp)), '-o', str(inp)])
case('report-out-under-file')(lambda inp, out: (inp/'afile').write_text('x') and ['report', str(write_cube(inp)), '-o', str(inp/'afile'/'r.html')])
case('report-transcripts-missing')(lambda inp, out: ['report', str(write_cube(inp)), '-o', str(out/'r.html'), '--transcripts', str(inp/'t.csv')])
case('report-transcripts-not-utf8')(lambda inp, out: (inp/'t.csv').write_bytes(b'model,benchmark,item,prompt,response\nb,xstest,q0,\xff,x\n') and
                                    ['report', str(write_cube(inp)), '-o', str(out/'r.html'), '--transcripts', str(inp/'t.csv')])
case('report-transcripts-no-columns')(lambda inp, out: (inp/'t.csv').write_text('a,b\n1,2\n') and
                                      ['report', str(write_cube(inp)), '-o', str(out/'r.html'), '--transcripts', str(inp/'t.csv')])
case('cube-out-is-dir')(lambda inp, out: ['cube', str(write_items(inp)), '-o', str(inp), '--n-boot', '100'])
case('cube-out-under-file')(lambda inp, out: (inp/'afile').write_text('x') and ['cube', str(write_items(inp)), '-o', str(inp/'afile'/'c.nc'), '--n-boot', '100'])

case('eval-out-under-file')(lambda inp, out: (inp/'afile').write_text('x') and eval_argv(inp, out)[:3] + [str(inp/'afile'/'run')])
case('sweep-out-is-file')(lambda inp, out: (inp/'afile').write_text('x') and sweep_argv(inp, out, 'derivatives = ["d"]\nalphas = [0.5]')[:3] + [str(inp/'afile'), '--dry-run'])
case('ft-out-is-file')(lambda inp, out: (inp/'afile').write_text('x') and ft_argv(inp, out) + ['--out', str(inp/'afile')])


# --- 7. logs of other tools ----------------------------------------------------------------------------------------

def lm_run(root, model='org/base', samples=None, results=True, date='2024-05-21T14-00-00.123456', folder=None):
    d = root/(folder or model.replace('/', '__')); d.mkdir(parents=True, exist_ok=True)
    if results is True: results = json.dumps({'model_name': model, 'config': {'model_args': f'pretrained={model}'},
                                              'higher_is_better': {'arc_easy': {'acc': True}}})
    if results is not None: (d/f'results_{date}.json').write_bytes(results if isinstance(results, bytes) else results.encode())
    if samples is None: samples = ''.join(json.dumps({'doc_id': i, 'filter': 'none', 'metrics': ['acc'], 'acc': float(i % 2)}) + '\n' for i in range(4))
    (d/f'samples_arc_easy_{date}.jsonl').write_bytes(samples if isinstance(samples, bytes) else samples.encode())
    return d

def _lm(kw, inp, out):
    root = inp/'logs'; lm_run(root, **kw)
    return ['import', 'lm-eval', str(root), '-o', str(out/'items.parquet')]
LM = {'line-not-json': dict(samples='{"doc_id": 0, "acc": 1}\n{oops\n'), 'line-list': dict(samples='[1, 2]\n'),
      'line-number': dict(samples='3\n'), 'no-doc-id': dict(samples='{"acc": 1}\n'), 'not-utf8': dict(samples=b'{"doc_id": 0, "acc": 1, "x": "\xff"}\n'),
      'results-not-json': dict(results='{oops'), 'results-list': dict(results='[1]'), 'results-not-utf8': dict(results=b'{"model_name": "\xff"}'),
      'results-config-list': dict(results='{"model_name": "", "config": [1]}'), 'model-traversal': dict(model='..'),
      'model-abs': dict(model='/'), 'model-control': dict(model='a\u0007b'), 'no-numeric': dict(samples='{"doc_id": 0, "acc": "yes"}\n'),
      'higher-list': dict(results='{"model_name": "m", "higher_is_better": [1]}')}
cases('lm-eval', LM, _lm)
case('lm-eval-gz-corrupt')(lambda inp, out: (lambda d: ((d/'samples_arc_easy_2024-05-21T14-00-00.123456.jsonl').unlink(),
                                                         (d/'samples_arc_easy_2024-05-21T14-00-00.123456.jsonl.gz').write_bytes(b'not gzip'),
                                                         ['import', 'lm-eval', str(inp/'logs'), '-o', str(out/'items.parquet')])[2])(lm_run(inp/'logs')))
case('lm-eval-two-runs-one-id')(lambda inp, out: (lm_run(inp/'logs', folder='run1'), lm_run(inp/'logs', folder='run2'),
                                                  ['import', 'lm-eval', str(inp/'logs'), '-o', str(out/'items.parquet')])[2])
case('lm-eval-no-samples')(lambda inp, out: ((inp/'logs').mkdir(), (inp/'logs'/'results_x.json').write_text('{}'),
                                             ['import', 'lm-eval', str(inp/'logs'), '-o', str(out/'items.parquet')])[2])
case('lm-eval-path-missing')(lambda inp, out: ['import', 'lm-eval', str(inp/'nope'), '-o', str(out/'items.parquet')])

def inspect_log(model='hf/org/base', task='xstest', samples=None, **eval_kw):
    samples = samples if samples is not None else [{'id': i, 'epoch': 1, 'scores': {'refusal': {'value': 'C' if i % 2 else 'I'}}} for i in range(4)]
    return {'version': 2, 'status': 'success', 'eval': {'task': task, 'model': model, **eval_kw}, 'samples': samples}

def _insp(content, inp, out, name='log.json'):
    f = inp/name
    f.write_bytes(content if isinstance(content, bytes) else (content if isinstance(content, str) else json.dumps(content)).encode())
    return ['import', 'inspect', str(f), '-o', str(out/'items.parquet')]
INSPECT = {'not-json': '{oops', 'list': '[1, 2]', 'no-eval': {'foo': 1}, 'eval-list': {'eval': [1], 'samples': []},
           'samples-dict': {'eval': {'task': 't', 'model': 'm'}, 'samples': {'a': 1}},
           'sample-not-object': inspect_log(samples=[1, 2]), 'scores-list': inspect_log(samples=[{'id': 0, 'scores': [1]}]),
           'not-utf8': b'{"eval": {"task": "t", "model": "\xff"}}', 'model-traversal': inspect_log(model='../../x'),
           'model-empty': inspect_log(model=''), 'model-control': inspect_log(model='m\u0000x'), 'no-scores': inspect_log(samples=[{'id': 0}])}
cases('inspect', INSPECT, _insp)

def _eval_zip(kind, inp, out):
    f = inp/'log.eval'
    if kind == 'not-zip': f.write_bytes(b'not a zip')
    else:
        with zipfile.ZipFile(f, 'w') as z:
            if kind == 'header-invalid': z.writestr('header.json', '{oops')
            if kind == 'header-list': z.writestr('header.json', '[1]')
            if kind == 'no-header': z.writestr('samples/0.json', '{}')
            if kind == 'summaries-invalid':
                z.writestr('header.json', json.dumps({'eval': {'task': 't', 'model': 'm'}})); z.writestr('summaries.json', '{oops')
    return ['import', 'inspect', str(f), '-o', str(out/'items.parquet')]
cases('inspect-eval', {k: k for k in ('not-zip', 'header-invalid', 'header-list', 'no-header', 'summaries-invalid')}, _eval_zip)
case('inspect-two-runs-one-id')(lambda inp, out: ((inp/'a.json').write_text(json.dumps(inspect_log())), (inp/'b.json').write_text(json.dumps(inspect_log())),
                                                  ['import', 'inspect', str(inp), '-o', str(out/'items.parquet')])[2])
cases('import-flags', {'rename': ['--rename', 'acc'], 'out-suffix': [], 'models-out-suffix': ['--models-out', 'm.txt']},
      lambda v, inp, out: ['import', 'inspect', str(inp), '-o', str(out/('i.txt' if not v else 'i.parquet')), *v])
case('import-out-under-file')(lambda inp, out: ((inp/'log.json').write_text(json.dumps(inspect_log())), (inp/'afile').write_text('x'),
                                                ['import', 'inspect', str(inp/'log.json'), '-o', str(inp/'afile'/'i.parquet')])[2])


# --- 8. write failures (a full disk), injected in-process ------------------------------------------------------------

case('enospc-cube', 'enospc')(lambda inp, out: ['cube', str(write_items(inp)), '-o', str(out/'c.nc'), '--n-boot', '100'])
case('enospc-report', 'enospc')(lambda inp, out: ['report', str(write_cube(inp)), '-o', str(out/'r.html')])
case('enospc-import', 'enospc')(lambda inp, out: ((inp/'log.json').write_text(json.dumps(inspect_log())),
                                                  ['import', 'inspect', str(inp/'log.json'), '-o', str(out/'i.parquet')])[1])


# --- running and classifying one case ------------------------------------------------------------------------------

def snapshot(root:Path, skip:Path) -> dict:
    "Every file and folder under `root` except those under `skip`, with size and modification time."
    out = {}
    for dp, dns, fns in os.walk(root):
        d = Path(dp)
        if d == skip or skip in d.parents: dns[:] = []; continue
        for n in dns + fns:
            p = d/n
            if p == skip: continue
            st = p.lstat(); out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns if p.is_file() else 0)
    return out


@contextlib.contextmanager
def fault(kind):
    "Inject a fault while a case runs: 'enospc' makes every fsync and rename fail as on a full disk."
    if kind != 'enospc': yield; return
    def full(*a, **k): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    saved = os.fsync, os.replace
    os.fsync = os.replace = full
    try: yield
    finally: os.fsync, os.replace = saved


def run_case(cid:str, root:Path) -> dict:
    "Run case `cid` in-process under `root` (inputs in root/in, outputs in root/out, cwd root/cwd); classify the outcome."
    inp, out, cwd = root/'in', root/'out', root/'cwd'
    for d in (inp, out, cwd): d.mkdir(parents=True, exist_ok=True)
    argv = CASES[cid](inp, out)
    before = snapshot(root, out)
    err, std = io.StringIO(), io.StringIO()
    here = os.getcwd(); os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std), fault(PATCHED.get(cid)):
            rc = main([str(a) for a in argv])
            sys.stderr.flush()
    except BaseException:
        rc, tb = None, traceback.format_exc()
    else: tb = ''
    finally: os.chdir(here)
    after = snapshot(root, out)
    lines = [l for l in err.getvalue().splitlines()]
    partial = [str(p.relative_to(root)) for p in root.rglob('*.tmp')]
    res = dict(id=cid, rc=rc, stderr=err.getvalue(), traceback=tb, outside=sorted(set(after.items()) ^ set(before.items())), partial=partial)
    res['kind'] = ('traceback' if rc is None or 'Traceback' in err.getvalue() else 'wrong success' if rc == 0 else
                   'late failure' if rc != 2 else
                   'good' if len(lines) == 1 and lines[0].strip() and not res['outside'] and not partial else 'messy')
    return res


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory, monkeypatch):
    monkeypatch.setenv('SAFEDRIFT_CACHE', str(tmp_path_factory.mktemp('cache')))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1'); monkeypatch.setenv('TRANSFORMERS_OFFLINE', '1')


def test_corpus_is_large():
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize('cid', sorted(CASES))
def test_bad_input(cid, tmp_path):
    r = run_case(cid, tmp_path/'sandbox')
    assert r['rc'] == 2, (r['kind'], r['stderr'], r['traceback'][-2000:])
    lines = r['stderr'].splitlines()
    assert len(lines) == 1 and lines[0].strip(), r['stderr']
    assert 'Traceback' not in r['stderr']
    assert not r['outside'], f"written outside the output folder: {r['outside']}"
    assert not r['partial'], f"partial files left: {r['partial']}"


SUBPROCESS = ['flag-cube-ci-2', 'plan-model-id-traversal', 'items-not-utf8', 'summary-cube-random', 'inspect-model-traversal']

@pytest.mark.parametrize('cid', SUBPROCESS)
def test_bad_input_subprocess(cid, tmp_path):
    "The same through a fresh interpreter: exit status 2 and one line, as a shell sees them."
    root = tmp_path/'sandbox'; inp, out = root/'in', root/'out'
    for d in (inp, out): d.mkdir(parents=True)
    argv = CASES[cid](inp, out)
    before = snapshot(root, out)
    p = subprocess.run([sys.executable, '-c', 'import sys; from safedrift_wb.cli import main; sys.exit(main())', *map(str, argv)],
                       capture_output=True, text=True, cwd=root, timeout=120)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.splitlines()) == 1 and 'Traceback' not in p.stderr, p.stderr
    assert snapshot(root, out) == before


# --- inputs that must succeed ---------------------------------------------------------------------------------------

def test_csv_ids_stay_text(tmp_path, capsys):
    "Item '01' and item '1' of a CSV table are two items, not one duplicated key."
    df = items_df().assign(item=lambda d: d['item'].str[1:])          # numeric-looking ids: '0' ... '11'
    df = pd.concat([df, df[df['item'] == '1'].assign(item='01')], ignore_index=True)
    f = write_items(tmp_path, df)
    assert main(['cube', str(f), '-o', str(tmp_path/'c.nc'), '--n-boot', '100']) == 0, capsys.readouterr().err
    from safedrift_wb.cube import load_cube
    assert load_cube(tmp_path/'c.nc').n_items.sel(model='b').values.ravel().tolist() == [13]


def test_dollar_model_ids_in_report(tmp_path, capsys):
    "A model id with `$...$` is text in figures (no mathtext) and escaped in HTML."
    df = items_df().replace({'model': {'d': r'd$\frac{x$'}})
    m = models_df().replace({'model': {'d': r'd$\frac{x$'}})
    f = write_items(tmp_path, df, models=m)
    assert main(['cube', str(f), '-o', str(tmp_path/'c.nc'), '--n-boot', '100']) == 0
    assert main(['report', str(tmp_path/'c.nc'), '-o', str(tmp_path/'r.html')]) == 0, capsys.readouterr().err
    assert r'd$\frac{x$' in (tmp_path/'r.html').read_text()


def test_percent_scores(tmp_path, capsys):
    f = write_scores(tmp_path, values=(90.0, 70.0))
    assert main(['cube', str(f), '--scores', '--percent', '--models', str(tmp_path/'models.csv'), '-o', str(tmp_path/'c.nc')]) == 0
    from safedrift_wb.cube import load_cube
    assert float(load_cube(tmp_path/'c.nc').drift.sel(model='d').squeeze()) == pytest.approx(-0.2)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception):
        main(['summary', str(tmp_path/'nope.nc'), '--debug'])
