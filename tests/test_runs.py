"""Plans, the run store, resumability, failure isolation and distributed runs (tiny local models)."""
import contextlib, io, json
from pathlib import Path
import numpy as np, pandas as pd, pytest

from safedrift_wb.runs import (read_plan, parse_plan, evaluate, load_run, run_unit, eval_model, PlanError, ModelSpec,
                               make_judges, unit_key, model_identity, cli_eval, DEFAULT_GENERATION)
from safedrift_wb.benchmarks import get_benchmark
from safedrift_wb.cli import main
from safedrift_wb.schema import project_data_dir
from conftest import plan_text, tiny_family

BENCHES = ["harmful-refusal", "truthfulness-mc1"]


@pytest.fixture(scope='module')
def family(tmp_path_factory, tiny_models):
    base = tiny_models.model('base', seed=0)
    return tmp_path_factory.mktemp('fam'), base, tiny_models.adapter('lora', base, seed=1)


def write_plan(d, base, lora, extra_models='', limit=6, name='plan.toml'):
    text = plan_text(tiny_family(base, lora), benchmarks=BENCHES, limit=limit, max_new_tokens=6, extra=extra_models)
    (d/name).write_text(text)
    return d/name


def test_example_plans_parse_offline():
    import tomllib
    plans = [p for p in sorted((project_data_dir()/'plans').glob('*.toml')) if 'models' in tomllib.loads(p.read_text())]
    assert len(plans) >= 2       # evaluation plans; fine-tuning-only plans are checked by the fine-tuning tests
    for p in plans:
        plan = read_plan(p)
        models = plan.model_table()
        assert (models.base != '').sum() >= 2, p
        assert set(models.domain) >= {'general'} and len(set(models.domain)) >= 3, p
        assert all(not m.trust_remote_code for m in plan.models)


@pytest.mark.parametrize('text, message', [
    ('[[models]]\nid = "a"\npath = "o/a"\ndtyp = "bf16"\n', "[[models]][0].dtyp: unknown key"),
    ('[[models]]\nid = "a"\n', "missing key 'path'"),
    ('[generation]\nmax_new_tokens = 0\n[[models]]\nid = "a"\npath = "o/a"\n', 'max_new_tokens: must be at least 1'),
    ('[benchmarks]\nids = ["nope"]\n[[models]]\nid = "a"\npath = "o/a"\n', "unknown benchmark 'nope'"),
    ('[[models]]\nid = "a"\npath = "o/a"\nbase = "b"\n', "base 'b', which is not in the table"),
    ('[[models]]\nid = "a"\npath = "o/a"\n[[models]]\nid = "a"\npath = "o/b"\n', 'listed twice: a'),
    ('models = 3 = 4', 'not valid TOML'),
])
def test_bad_plans_exit_2_with_one_line(tmp_path, text, message):
    p = tmp_path/'bad.toml'; p.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err): rc = main(['eval', str(p), '-o', str(tmp_path/'run')])
    assert rc == 2
    out = err.getvalue().strip()
    assert message in out and len(out.splitlines()) == 1 and str(p) in out, out


def test_missing_plan_and_paths(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err): assert main(['eval', str(tmp_path/'none.toml'), '-o', 'x']) == 2
    assert 'plan not found' in err.getvalue()
    p = tmp_path/'p.toml'; p.write_text('[benchmarks]\nsuite="none"\nids=["harmful-refusal"]\n[[benchmarks.load]]\nloader="xstest"\npath="./missing.csv"\n[[models]]\nid="a"\npath="o/a"\n')
    with pytest.raises(PlanError, match=r"\[benchmarks\].load\[0\].path: not found"): read_plan(p)


def test_run_cache_and_cube(family, tmp_path):
    d, base, lora = family
    plan = read_plan(write_plan(d, base, lora))
    s1 = evaluate(plan, tmp_path/'run', progress=False)
    assert set(s1.status) == {'done'} and len(s1) == 4
    s2 = evaluate(plan, tmp_path/'run', progress=False)
    assert set(s2.status) == {'cached'}
    items, models, prov = load_run(tmp_path/'run')
    assert set(items.model) == {'tiny', 'tiny-lora'} and set(items.benchmark) == set(BENCHES)
    assert items.groupby(['model', 'benchmark']).item.nunique().eq(6).all()
    man = json.loads((tmp_path/'run'/'manifest.json').read_text())
    assert man['versions']['torch'] and man['benchmarks'][0]['hash']
    unit = json.loads((tmp_path/'run'/'units'/'tiny-lora'/'harmful-refusal'/'unit.json').read_text())
    assert unit['lm']['adapter_sha256'] and unit['lm']['dtype'] == 'float32' and unit['judges']['refusal'].startswith('refusal-')
    tr = pd.read_parquet(tmp_path/'run'/'units'/'tiny'/'truthfulness-mc1'/'transcript.parquet')
    assert {'prompt', 'choices', 'loglikelihoods'} <= set(tr.columns)
    rc = main(['cube', str(tmp_path/'run'), '-o', str(tmp_path/'c.nc'), '--n-boot', '200'])
    assert rc == 0 and (tmp_path/'c.nc').exists()


def test_key_changes_with_what_changes_answers(family):
    d, base, lora = family
    b = get_benchmark('harmful-refusal'); items = b.items(4)
    spec = ModelSpec(id='t', path=str(base))
    ident = model_identity(spec)
    k = unit_key(ident, b, items, DEFAULT_GENERATION, {'refusal': 'refusal-rules@1'})
    assert k == unit_key(model_identity(spec), b, items, DEFAULT_GENERATION, {'refusal': 'refusal-rules@1'})
    others = [unit_key(model_identity(ModelSpec(id='t', path=str(base), dtype='bfloat16')), b, items, DEFAULT_GENERATION, {'refusal': 'refusal-rules@1'}),
              unit_key(model_identity(ModelSpec(id='t', path=str(base), adapter=str(lora))), b, items, DEFAULT_GENERATION, {'refusal': 'refusal-rules@1'}),
              unit_key(ident, b, b.items(5), DEFAULT_GENERATION, {'refusal': 'refusal-rules@1'}),
              unit_key(ident, b, items, dict(DEFAULT_GENERATION, max_new_tokens=9), {'refusal': 'refusal-rules@1'}),
              unit_key(ident, b, items, DEFAULT_GENERATION, {'refusal': 'refusal-rules@2'}),
              unit_key(ident, get_benchmark('domain-harm'), items, DEFAULT_GENERATION, {'refusal': 'refusal-rules@1'})]
    assert len({k, *others}) == 7


class Crashy:
    "Wraps an LM and dies after `n` generate calls, like a process killed mid-unit."
    def __init__(self, lm, n): self.lm, self.n, self.calls, self.generated = lm, n, 0, 0
    def __getattr__(self, k): return getattr(self.lm, k)
    def generate(self, prompts, **kw):
        if self.calls >= self.n: raise KeyboardInterrupt('killed')
        self.calls += 1; self.generated += len(prompts)
        return self.lm.generate(prompts, **kw)


def test_resume_after_kill_loses_at_most_the_batch_in_flight(family, tmp_path, monkeypatch):
    import safedrift_wb.runs.unit as R
    from safedrift_wb.engine import load_model
    d, base, _ = family
    monkeypatch.setattr(R, 'CHUNK', 4)
    lm = load_model(base)
    b = get_benchmark('harmful-refusal'); items = b.items(10)
    judges = make_judges(b.judges, {})
    udir = tmp_path/'u'
    crashy = Crashy(lm, 2)
    with pytest.raises(KeyboardInterrupt): run_unit(crashy, b, items, judges, DEFAULT_GENERATION, udir, 'k1', progress=False)
    assert not (udir/'unit.json').exists() and len((udir/'partial.jsonl').read_text().splitlines()) == 8
    again = Crashy(lm, 99)
    rec = run_unit(again, b, items, judges, DEFAULT_GENERATION, udir, 'k1', progress=False)
    assert again.generated == 2 and rec['n_items'] == 10            # only the 2 missing items were generated
    resumed = pd.read_parquet(udir/'transcript.parquet')
    fresh_dir = tmp_path/'fresh'
    run_unit(lm, b, items, judges, DEFAULT_GENERATION, fresh_dir, 'k1', progress=False)
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(fresh_dir/'transcript.parquet'))
    # a checkpoint under another key is never reused
    (udir/'partial.jsonl').write_text(json.dumps(dict(key='other', item=items[0]['item'], prompt='p', response='STALE')) + '\n')
    (udir/'unit.json').unlink()
    run_unit(lm, b, items, judges, DEFAULT_GENERATION, udir, 'k1', progress=False)
    assert 'STALE' not in set(pd.read_parquet(udir/'transcript.parquet').response)


def test_a_failing_model_is_recorded_and_others_go_on(family, tmp_path):
    d, base, lora = family
    broken = d/'broken'; broken.mkdir(exist_ok=True); (broken/'config.json').write_text('{"model_type": "nonsense"}')
    extra = f'[[models]]\nid = "broken"\npath = "{broken}"\nbase = "tiny"\nfamily = "tiny"\ndomain = "legal"\nmethod = "lora"\n'
    p = write_plan(d, base, lora, extra, name='plan_broken.toml')
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(['eval', str(p), '-o', str(tmp_path/'run'), '--no-progress'])
    assert rc == 2   # the run's other units are stored, and the command says which failed and why, in one line
    lines = [l for l in err.getvalue().splitlines() if l.strip()]
    assert len(lines) == 1 and '2 unit(s) failed, first broken / ' in lines[0] and 'failures.json' in lines[0]
    text = out.getvalue()
    assert 'FAILED broken / harmful-refusal (load)' in text and '2 unit(s) failed' in text
    fails = json.loads((tmp_path/'run'/'failures.json').read_text())
    assert {f['model'] for f in fails} == {'broken'}
    items, _, _ = load_run(tmp_path/'run')
    assert set(items.model) == {'tiny', 'tiny-lora'}


def test_nan_loglikelihoods_fail_the_unit(family, tmp_path):
    from safedrift_wb.engine import load_model
    d, base, _ = family
    lm = load_model(base)
    class NaNLM:
        def __getattr__(self, k): return getattr(lm, k)
        def loglikelihood(self, reqs, **kw): return [(float('nan'), False)]*len(reqs)
    b = get_benchmark('truthfulness-mc1')
    with pytest.raises(FloatingPointError, match='non-finite'):
        run_unit(NaNLM(), b, b.items(3), {}, DEFAULT_GENERATION, tmp_path/'u', 'k', progress=False)


def _same_runs(a_dir, b_dir):
    a, _, _ = load_run(a_dir); b, _, _ = load_run(b_dir)
    key = ['model', 'benchmark', 'item', 'metric']
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))
    for m in ['tiny', 'tiny-lora']:
        ta = pd.read_parquet(a_dir/'units'/m/'harmful-refusal'/'transcript.parquet')
        tb = pd.read_parquet(b_dir/'units'/m/'harmful-refusal'/'transcript.parquet')
        pd.testing.assert_frame_equal(ta, tb)


def test_two_local_processes_equal_serial(family, tmp_path, capsys):
    d, base, lora = family
    plan = read_plan(write_plan(d, base, lora, limit=4, name='plan_procs.toml'))
    evaluate(plan, tmp_path/'serial', progress=False)
    status = evaluate(plan, tmp_path/'procs', workers=2)
    assert set(status.status) == {'done'} and list(status.model) == ['tiny', 'tiny', 'tiny-lora', 'tiny-lora']
    assert '4/4' in capsys.readouterr().err        # the progress bar counted every unit as the processes finished it
    _same_runs(tmp_path/'serial', tmp_path/'procs')
    with pytest.raises(ValueError, match='workers must be a positive int'): evaluate(plan, tmp_path/'x', workers=0)


def test_dask_scheduler_equals_serial(family, tmp_path):
    pytest.importorskip('dask.distributed')
    from dask.distributed import LocalCluster
    d, base, lora = family
    plan = read_plan(write_plan(d, base, lora, limit=4, name='plan_dask.toml'))
    evaluate(plan, tmp_path/'serial', progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        status = evaluate(plan, tmp_path/'dask', scheduler=cluster.scheduler_address, progress=False)
    assert set(status.status) == {'done'}
    _same_runs(tmp_path/'serial', tmp_path/'dask')


def die_on_lora(spec, benches, out, kw):
    "Runs in a spawned worker: the process evaluating tiny-lora exits abruptly, like one killed for memory."
    import os, time
    from safedrift_wb.runs import eval_in_worker
    if spec.id == 'tiny-lora': time.sleep(0.5); os._exit(3)
    return eval_in_worker(spec, benches, out, kw)


def test_a_dead_worker_fails_its_model_only(family, tmp_path):
    from safedrift_wb.runs import evaluate_local
    d, base, lora = family
    plan = read_plan(write_plan(d, base, lora, limit=2, name='plan_dead.toml'))
    kw = dict(limit=2, generation=plan.generation, judge_options={}, force=False)
    recs = evaluate_local(plan, tmp_path/'run', 2, kw, False, _run=die_on_lora)
    assert {(r['model'], r['status']) for r in recs} == {('tiny', 'done'), ('tiny-lora', 'failed')}
    assert all('worker process died' in r['error'] for r in recs if r['status'] == 'failed')


def test_generation_across_benchmarks_equals_unit_by_unit(family, tmp_path):
    "eval_model generates the prompts of all generation benchmarks together; samples and transcripts are unchanged."
    from safedrift_wb.engine import load_model
    d, base, _ = family
    benches = [get_benchmark(b) for b in ('harmful-refusal', 'over-refusal', 'truthfulness-mc1')]
    for temperature in (0.0, 1.0):
        gen = dict(DEFAULT_GENERATION, max_new_tokens=6, temperature=temperature, seed=5)
        out = tmp_path/f'together{temperature}'
        recs = eval_model(ModelSpec(id='tiny', path=str(base)), benches, out, limit=6, generation=gen, progress=False)
        assert [r['status'] for r in recs] == ['done'] * 3 and all(r['seconds'] > 0 for r in recs)
        lm = load_model(base)
        for b in benches[:2]:
            items = b.items(6)
            run_unit(lm, b, items, make_judges(b.judges, {}), gen, tmp_path/f'alone{temperature}'/b.id, 'k', progress=False)
            pd.testing.assert_frame_equal(pd.read_parquet(out/'units'/'tiny'/b.id/'transcript.parquet'),
                                          pd.read_parquet(tmp_path/f'alone{temperature}'/b.id/'transcript.parquet'))


def test_generation_across_benchmarks_resumes_after_kill(family, tmp_path, monkeypatch):
    import safedrift_wb.runs.unit as R
    from safedrift_wb.engine import load_model
    d, base, _ = family
    monkeypatch.setattr(R, 'CHUNK', 4)
    lm = load_model(base, batch_size=2)            # checkpoints every max(CHUNK, 4 x 2 rows) = 8 prompts at most
    benches = [get_benchmark(b) for b in ('harmful-refusal', 'over-refusal')]
    gen = dict(DEFAULT_GENERATION, max_new_tokens=6)
    units = [(b, b.items(6), f'key-{b.id}', tmp_path/b.id) for b in benches]
    crashy = Crashy(lm, 1)
    with pytest.raises(KeyboardInterrupt): R.generate_together(crashy, units, gen, progress=False)
    saved = sum(len((u[3]/'partial.jsonl').read_text().splitlines()) for u in units if (u[3]/'partial.jsonl').exists())
    assert saved == 6                             # 12 prompts in two calls of 6: the first call's are on disk
    again = Crashy(lm, 99)
    secs = R.generate_together(again, units, gen, progress=False)
    assert again.generated == 6 and set(secs) == {units[1][3]}
    for b, items, key, udir in units:
        rec = run_unit(again, b, items, make_judges(b.judges, {}), gen, udir, key, progress=False)
        assert rec['n_items'] == 6 and not (udir/'partial.jsonl').exists()
    assert again.generated == 6                   # run_unit found every response checkpointed


def test_resume_drops_torn_and_stale_lines(tmp_path):
    from safedrift_wb.runs import resume_unit, append_line, read_lines
    part = tmp_path/'partial.jsonl'
    good = [dict(key='k', item=f'i{n}', response='r') for n in range(2)]
    part.write_text(''.join(json.dumps(r) + '\n' for r in good) + json.dumps(dict(key='other', item='x')) + '\n{"key": "k", "ite')
    assert set(resume_unit(part, 'k')) == {'i0', 'i1'}
    append_line(part, dict(key='k', item='i2', response='r'))   # not hidden behind the torn line
    assert [r['item'] for r in read_lines(part)] == ['i0', 'i1', 'i2']
    part.write_text(json.dumps(dict(key='other', item='x')) + '\n')
    assert resume_unit(part, 'k') == {} and not part.exists()


def test_benchmarks_sent_by_id_must_match():
    from safedrift_wb.runs import unpack_benchmarks, pack_benchmarks
    b = get_benchmark('harmful-refusal')
    assert [x.id for x in unpack_benchmarks(('ids', [(b.id, b.content_hash())]))] == [b.id]
    assert unpack_benchmarks(pack_benchmarks([b]))[0].content_hash() == b.content_hash()
    with pytest.raises(RuntimeError, match='defined only in the calling session'): unpack_benchmarks(('ids', [(b.id, 'other')]))
