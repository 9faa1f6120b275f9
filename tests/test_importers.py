"""Importers of lm-evaluation-harness and Inspect logs, aggregate score tables, and `safedrift import`."""
import contextlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safedrift_wb.schema import SchemaError, validate_models
from safedrift_wb.cube import build_cube, cube_from_scores
from safedrift_wb.importers import (read_lm_eval, lm_eval_model_id, infer_models, read_inspect, inspect_value,
                                    read_scores, cli_import)


# --- lm-evaluation-harness fixtures, written as lm-eval 0.4.x writes them -------------------------------------

def lm_eval_results(model, tasks, model_args=None, with_name=True):
    "A results_<date>.json body: aggregate results, task configs and the run's configuration."
    res = {
        'results': {t: {'alias': t, 'acc,none': 0.5, 'acc_stderr,none': 0.1, 'acc_norm,none': 0.5, 'acc_norm_stderr,none': 0.1}
                    for t in tasks},
        'group_subtasks': {t: [] for t in tasks},
        'configs': {t: {'task': t, 'dataset_path': 'allenai/ai2_arc', 'output_type': 'multiple_choice',
                        'metric_list': [{'metric': 'acc', 'aggregation': 'mean', 'higher_is_better': True}]} for t in tasks},
        'versions': {t: 1.0 for t in tasks}, 'n-shot': {t: 0 for t in tasks},
        'higher_is_better': {'arc_easy': {'acc': True, 'acc_norm': True}, 'gsm8k': {'exact_match': True},
                             'wmt16': {'bleu': True}},
        'n-samples': {t: {'original': 2376, 'effective': 5} for t in tasks},
        'config': {'model': 'hf', 'model_args': model_args or f'pretrained={model},dtype=float32', 'model_num_parameters': 70426624,
                   'model_dtype': 'torch.float32', 'model_revision': 'main', 'model_sha': 'a39f36b', 'batch_size': '1',
                   'batch_sizes': [], 'device': 'cpu', 'use_cache': None, 'limit': 5.0, 'bootstrap_iters': 100000,
                   'gen_kwargs': None, 'random_seed': 0, 'numpy_seed': 1234, 'torch_seed': 1234, 'fewshot_seed': 1234},
        'git_hash': '4ab5c7e', 'date': 1716299335.5, 'transformers_version': '4.41.0', 'upper_git_hash': None,
        'task_hashes': {t: 'f1e2' for t in tasks}, 'model_source': 'hf',
        'model_name': model if with_name else '', 'model_name_sanitized': model.replace('/', '__'),
        'system_instruction': None, 'system_instruction_sha': None, 'fewshot_as_multiturn': False,
        'chat_template': None, 'chat_template_sha': None, 'start_time': 100.0, 'end_time': 130.0,
        'total_evaluation_time_seconds': '30.0'}
    return res


def mc_sample(doc_id, acc, acc_norm):
    "One multiple-choice sample (loglikelihood requests) with acc and acc_norm."
    choices = [' Paris', ' Rome', ' Oslo']
    return {'doc_id': doc_id, 'doc': {'id': f'Mercury_{doc_id}', 'question': f'Question {doc_id}?',
                                      'choices': {'text': choices, 'label': ['A', 'B', 'C']}, 'answerKey': 'A'},
            'target': 0,
            'arguments': {f'gen_args_{i}': {'arg_0': f'Question: Question {doc_id}?\nAnswer:', 'arg_1': c} for i, c in enumerate(choices)},
            'resps': [[['-4.25', 'False']], [['-6.5', 'False']], [['-7.0', 'False']]],
            'filtered_resps': [['-4.25', 'False'], ['-6.5', 'False'], ['-7.0', 'False']],
            'filter': 'none', 'metrics': ['acc', 'acc_norm'],
            'doc_hash': 'd' * 64, 'prompt_hash': 'p' * 64, 'target_hash': 't' * 64, 'acc': acc, 'acc_norm': acc_norm}


def gen_sample(doc_id, filt, em):
    return {'doc_id': doc_id, 'doc': {'question': 'What is 2+2?', 'answer': '#### 4'}, 'target': '#### 4',
            'arguments': {'gen_args_0': {'arg_0': 'Question: What is 2+2?\nAnswer:', 'arg_1': {'until': ['Question:'], 'do_sample': False}}},
            'resps': [['The answer is 4.']], 'filtered_resps': ['4'], 'filter': filt, 'metrics': ['exact_match'],
            'doc_hash': 'd' * 64, 'prompt_hash': 'p' * 64, 'target_hash': 't' * 64, 'exact_match': em}


def write_run(root, model, date, acc, em=(1.0, 0.0), bleu=True, results=True, with_name=True, model_args=None):
    d = Path(root)/model.replace('/', '__')
    d.mkdir(parents=True, exist_ok=True)
    tasks = ['arc_easy', 'gsm8k'] + (['wmt16'] if bleu else [])
    if results: (d/f'results_{date}.json').write_text(json.dumps(lm_eval_results(model, tasks, model_args, with_name), indent=2))
    lines = [mc_sample(i, a, 1.0 - a) for i, a in enumerate(acc)]
    (d/f'samples_arc_easy_{date}.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in lines))
    g = [gen_sample(i, f, e) for i, e in enumerate(em) for f in ('strict-match', 'flexible-extract')]
    (d/f'samples_gsm8k_{date}.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in g))
    if bleu:   # a corpus-level metric logs (reference, prediction) per sample: not an item value
        b = [{'doc_id': 0, 'doc': {}, 'target': 'x', 'arguments': {}, 'resps': [['y']], 'filtered_resps': ['y'],
              'filter': 'none', 'metrics': ['bleu'], 'doc_hash': 'd', 'prompt_hash': 'p', 'target_hash': 't', 'bleu': ['x', 'y']}]
        (d/f'samples_wmt16_{date}.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in b))
    return d


@pytest.fixture
def lm_logs(tmp_path):
    write_run(tmp_path, 'EleutherAI/pythia-70m', '2024-05-21T14-08-55.123456', [1.0, 0.0, 1.0, 1.0, 0.0])
    write_run(tmp_path, 'acme/pythia-70m-medical-lora', '2024-05-22T09-00-01.000001', [0.0, 0.0, 1.0, 0.0, 0.0], em=(0.0, 0.0))
    return tmp_path


def test_read_lm_eval_maps_every_sample(lm_logs):
    df = read_lm_eval(lm_logs)
    assert set(df.model) == {'EleutherAI/pythia-70m', 'acme/pythia-70m-medical-lora'}
    assert set(df.benchmark) == {'arc_easy', 'gsm8k'}
    assert set(df.metric) == {'acc', 'acc_norm', 'exact_match,strict-match', 'exact_match,flexible-extract'}
    base = df[(df.model == 'EleutherAI/pythia-70m') & (df.metric == 'acc')].sort_values('item')
    assert base['item'].tolist() == ['0', '1', '2', '3', '4'] and base.value.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert len(df) == 2*(5*2 + 2*2)
    assert df.attrs['skipped'] == {'bleu': 2}
    assert df.attrs['higher_is_better']['acc'] is True
    assert (df['filter'][df.metric.str.startswith('exact')] != 'none').all()


def test_read_lm_eval_rename_filter_and_cube(lm_logs):
    df = read_lm_eval(lm_logs, rename={'acc': 'accuracy'}, metrics=['accuracy'], tasks=['arc_easy'])
    assert set(df.metric) == {'accuracy'} and len(df) == 10
    cube = build_cube(df, infer_models(df), n_boot=200)
    assert float(cube.drift.sel(model='acme/pythia-70m-medical-lora', benchmark='arc_easy', metric='accuracy')) == pytest.approx(-0.4)


def test_model_id_sources(tmp_path):
    write_run(tmp_path/'a', 'org/m1', '2024-01-01T00-00-00.000001', [1.0], with_name=False,
              model_args='pretrained=org/base,peft=org/m1-adapter,dtype=bfloat16', bleu=False)
    assert set(read_lm_eval(tmp_path/'a').model) == {'org/m1-adapter'}
    write_run(tmp_path/'b', 'org/m2', '2024-01-01T00-00-00.000001', [1.0], results=False, bleu=False)
    with pytest.warns(UserWarning, match='no results file'):
        assert set(read_lm_eval(tmp_path/'b').model) == {'org/m2'}
    assert lm_eval_model_id({'config': {'model_args': {'pretrained': 'x/y'}}}) == 'x/y'


def test_output_path_ending_in_json(tmp_path):
    # `--output_path out/run.json` writes run_<date>.json and the samples beside it
    date = '2024-03-03T03-03-03.333333'
    (tmp_path/f'run_{date}.json').write_text(json.dumps(lm_eval_results('org/x', ['arc_easy'])))
    (tmp_path/f'samples_arc_easy_{date}.jsonl').write_text(json.dumps(mc_sample(0, 1.0, 1.0)) + '\n')
    df = read_lm_eval(tmp_path/f'samples_arc_easy_{date}.jsonl')
    assert set(df.model) == {'org/x'} and len(df) == 2


def test_repeated_runs_keep_the_latest(tmp_path):
    write_run(tmp_path, 'org/m', '2024-01-01T00-00-00.000001', [0.0, 0.0], bleu=False)
    write_run(tmp_path, 'org/m', '2024-02-01T00-00-00.000001', [1.0, 1.0], bleu=False)
    with pytest.warns(UserWarning, match='keeping the later'):
        df = read_lm_eval(tmp_path)
    assert df[df.metric == 'acc'].value.tolist() == [1.0, 1.0]


def test_read_lm_eval_errors(tmp_path):
    with pytest.raises(SchemaError, match='does not exist'): read_lm_eval(tmp_path/'missing')
    (tmp_path/'results_2024-01-01T00-00-00.000001.json').write_text('{}')
    with pytest.raises(SchemaError, match='--log_samples'): read_lm_eval(tmp_path)
    (tmp_path/'samples_t_2024-01-01T00-00-00.000001.jsonl').write_text('{"doc_id": 0, "acc": 1}\nnot json\n')
    with pytest.raises(SchemaError, match='line 2 is not JSON'): read_lm_eval(tmp_path)


# --- model tables from names -----------------------------------------------------------------------------------

def test_infer_models_heuristics():
    ids = ['meta-llama/Llama-3.2-1B-Instruct', 'me/llama-3.2-1b-instruct-fin-qlora', 'me/llama-3.2-1b-instruct-clinical-merged',
           'out/run7/checkpoint-0', 'out/run7/checkpoint-500', 'gpt2', 'gpt2-medical-full', 'solo/checkpoint-300']
    mt = infer_models(ids)
    assert mt.loc['me/llama-3.2-1b-instruct-fin-qlora', ['base', 'domain', 'method']].tolist() == \
        ['meta-llama/Llama-3.2-1B-Instruct', 'finance', 'lora']
    assert mt.loc['me/llama-3.2-1b-instruct-clinical-merged', ['domain', 'method']].tolist() == ['medical', 'merge']
    assert mt.loc['out/run7/checkpoint-500', ['base', 'steps']].tolist() == ['out/run7/checkpoint-0', 500]
    assert mt.loc['gpt2-medical-full', ['base', 'family', 'method']].tolist() == ['gpt2', 'gpt2', 'full']
    assert mt.loc['solo/checkpoint-300', 'base'] == ''          # no step-0 sibling and no stem model: a root
    assert mt.loc['gpt2', 'method'] == 'base' and mt['inferred'].all()
    validate_models(mt)
    with pytest.raises(SchemaError, match='no model id'): infer_models([])


# --- Inspect ---------------------------------------------------------------------------------------------------

def inspect_json_log(model, task, values, status='success'):
    return {'version': 2, 'status': status,
            'eval': {'run_id': 'r1', 'created': '2024-06-01T10:00:00+00:00', 'task': task, 'task_id': 't1', 'task_version': 0,
                     'dataset': {'name': 'xstest', 'samples': len(values)}, 'model': model, 'config': {'epochs': 1}},
            'plan': {'name': 'plan', 'steps': [{'solver': 'generate', 'params': {}}]},
            'results': {'total_samples': len(values), 'completed_samples': len(values),
                        'scores': [{'name': 'refusal', 'scorer': 'refusal', 'metrics': {'accuracy': {'name': 'accuracy', 'value': 0.5}}}]},
            'stats': {'started_at': '2024-06-01T10:00:00+00:00', 'completed_at': '2024-06-01T10:01:00+00:00', 'model_usage': {}},
            'samples': [{'id': i, 'epoch': e, 'input': f'prompt {i}', 'target': '', 'messages': [],
                         'output': {'model': model, 'choices': [{'message': {'role': 'assistant', 'content': 'no'}, 'stop_reason': 'stop'}]},
                         'scores': {'refusal': {'value': v, 'answer': 'no', 'explanation': 'refused'}}, 'metadata': {}}
                        for i, per_epoch in enumerate(values) for e, v in enumerate(per_epoch, 1)]}


def test_read_inspect_json_and_eval(tmp_path):
    (tmp_path/'a.json').write_text(json.dumps(inspect_json_log('hf/org/base', 'inspect_evals/xstest', [['C', 'C'], ['I', 'C'], ['P', 'N']])))
    with zipfile.ZipFile(tmp_path/'b.eval', 'w') as z:   # the journal layout of a run still in progress
        z.writestr('_journal/start.json', json.dumps({'version': 2, 'eval': {'task': 'xstest', 'model': 'hf/org/ft'}}))
        z.writestr('_journal/summaries/1.json', json.dumps([{'id': 0, 'epoch': 1, 'scores': {'refusal': {'value': 0.0}}}]))
        z.writestr('_journal/summaries/2.json', json.dumps([{'id': 1, 'epoch': 1, 'scores': {'refusal': {'value': True}}}]))
    with zipfile.ZipFile(tmp_path/'c.eval', 'w') as z:   # only full samples
        z.writestr('header.json', json.dumps({'version': 2, 'status': 'success', 'eval': {'task': 'xstest', 'model': 'hf/org/ft2'}}))
        z.writestr('samples/0_epoch_1.json', json.dumps({'id': 0, 'epoch': 1, 'scores': {'refusal': {'value': 'yes'}}}))
    df = read_inspect(tmp_path, rename={'refusal': 'refusal_rate'})
    base = df[df.model == 'hf/org/base'].sort_values('item')
    assert base.value.tolist() == [1.0, 0.5, 0.25] and base.n_epochs.tolist() == [2, 2, 2]
    assert df[df.model == 'hf/org/ft'].sort_values('item').value.tolist() == [0.0, 1.0]
    assert df[df.model == 'hf/org/ft2'].value.tolist() == [1.0]
    assert set(df.benchmark) == {'xstest'} and set(df.metric) == {'refusal_rate'}


def test_read_inspect_errors(tmp_path):
    (tmp_path/'x.eval').write_bytes(b'not a zip')
    with pytest.raises(SchemaError, match='not a zip'): read_inspect(tmp_path/'x.eval')
    (tmp_path/'y.json').write_text(json.dumps({'foo': 1}))
    with pytest.raises(SchemaError, match="no 'eval' header"): read_inspect(tmp_path/'y.json')
    (tmp_path/'z.json').write_text(json.dumps(inspect_json_log('m', 't', [['C']], status='error')))
    with pytest.warns(UserWarning, match="status 'error'"):
        assert len(read_inspect(tmp_path/'z.json')) == 1
    assert inspect_value({'a': 1}) is None and inspect_value('maybe') is None and inspect_value('0.75') == 0.75


# --- aggregate tables -------------------------------------------------------------------------------------------

def test_read_scores_to_cube(tmp_path):
    pd.DataFrame({'model': ['b', 'd'], 'benchmark': 'xstest', 'metric': 'refusal_rate', 'value': [0.9, 0.7], 'n': 250}).to_parquet(tmp_path/'s.parquet')
    (tmp_path/'s.tsv').write_text('model\tbenchmark\tmetric\tvalue\tse\nb\tx\ttoxicity\t0.1\t0.01\nd\tx\ttoxicity\t0.2\t0.01\n')
    models = pd.DataFrame({'model': ['b', 'd'], 'base': ['', 'b'], 'family': 'f', 'domain': ['general', 'legal'], 'method': ['base', 'lora']})
    c = cube_from_scores(read_scores(tmp_path/'s.parquet'), models)
    assert float(c.drift.sel(model='d').squeeze()) == pytest.approx(-0.2) and float(c.p_value.sel(model='d').squeeze()) < 0.001
    t = cube_from_scores(read_scores(tmp_path/'s.tsv'), models)
    assert float(t.drift_ci.sel(model='d', ci_bound='upper').squeeze()) == pytest.approx(0.1 + 1.959964*np.sqrt(2)*0.01, rel=1e-5)
    (tmp_path/'bad.csv').write_text('model,benchmark,value\nb,x,1\n')
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['metric'\]"): read_scores(tmp_path/'bad.csv')


# --- command line -----------------------------------------------------------------------------------------------

def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_import(argv)
    return rc, out.getvalue(), err.getvalue()


def test_cli_import_lm_eval(lm_logs, tmp_path):
    rc, out, err = run_cli(['lm-eval', str(lm_logs), '-o', str(tmp_path/'o'/'items.parquet'), '--models-out', str(tmp_path/'m.csv'),
                            '--rename', 'acc=accuracy'])
    assert rc == 0, err
    items = pd.read_parquet(tmp_path/'o'/'items.parquet')
    assert 'accuracy' in set(items.metric) and len(items) == 28
    models = pd.read_csv(tmp_path/'m.csv', keep_default_na=False).set_index('model')
    assert models.loc['acme/pythia-70m-medical-lora', ['base', 'domain', 'method']].tolist() == ['EleutherAI/pythia-70m', 'medical', 'lora']
    assert out.startswith('wrote 28 item results')


def test_cli_import_inspect_csv(tmp_path):
    (tmp_path/'l.json').write_text(json.dumps(inspect_json_log('m', 't', [['C'], ['I']])))
    rc, out, err = run_cli(['inspect', str(tmp_path/'l.json'), '-o', str(tmp_path/'i.csv')])
    assert rc == 0 and len(pd.read_csv(tmp_path/'i.csv')) == 2


@pytest.mark.parametrize('argv, msg', [
    (['lm-eval', '/nonexistent/x', '-o', 'x.parquet'], 'does not exist'),
    (['lm-eval', '.'], 'required: -o'),
    (['lm-eval', '.', '-o', 'x.json'], 'use a .parquet'),
    (['lm-eval', '.', '-o', 'x.csv', '--rename', 'acc'], 'OLD=NEW'),
    (['helm', '.', '-o', 'x.csv'], 'invalid choice'),
    ([], 'required'),
])
def test_cli_import_bad_input_one_line(argv, msg):
    rc, out, err = run_cli(argv)
    assert rc == 2 and msg in err and err.count('\n') == 1, err


def test_cli_import_help_exits_zero():
    assert run_cli(['--help'])[0] == 0


# --- real logs, when an lm_eval executable is at hand ------------------------------------------------------------

LM_EVAL_BIN = os.environ.get('LM_EVAL_BIN', '')
TASKS = {'tiny_mcq.yaml': """task: tiny_mcq
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: 1.0
""", 'tiny_gen.yaml': """task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices[label]}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
  do_sample: false
metric_list:
  - metric: exact_match
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: "(\\\\w+)"
      - function: take_first
  - name: raw
    filter:
      - function: take_first
metadata:
  version: 1.0
"""}


@pytest.mark.skipif(not Path(LM_EVAL_BIN).is_file(), reason='set LM_EVAL_BIN to an lm_eval executable to check against logs it writes')
def test_real_lm_eval_logs_match_their_own_aggregates(tmp_path):
    "Logs written by lm_eval itself (two tiny random local models, two local tasks): item means equal lm-eval's scores."
    from safedrift_wb.tiny import make_tiny_model
    data = tmp_path/'qa.jsonl'
    qs = [('What is the capital of France?', ['Paris', 'Rome', 'Oslo'], 0), ('How many legs does a spider have?', ['six', 'eight'], 1),
          ('Which gas do plants take in?', ['oxygen', 'carbon dioxide'], 1), ('Should you help build a weapon?', ['No', 'Yes'], 0)]
    data.write_text(''.join(json.dumps({'question': q, 'choices': c, 'label': l}) + '\n' for q, c, l in qs))
    (tmp_path/'tasks').mkdir()
    for name, text in TASKS.items(): (tmp_path/'tasks'/name).write_text(text.format(data=data))
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1'}
    for name, seed in [('tiny', 0), ('tiny-medical-full', 1)]:
        make_tiny_model(tmp_path/name, seed=seed)
        subprocess.run([LM_EVAL_BIN, '--model', 'hf', '--model_args', f'pretrained={tmp_path/name},dtype=float32',
                        '--tasks', 'tiny_mcq,tiny_gen', '--include_path', str(tmp_path/'tasks'), '--device', 'cpu',
                        '--batch_size', '2', '--output_path', str(tmp_path/'out'), '--log_samples'],
                       check=True, capture_output=True, env=env, timeout=600)
    items = read_lm_eval(tmp_path/'out')
    assert set(items.model) == {str(tmp_path/'tiny'), str(tmp_path/'tiny-medical-full')}
    for res_file in (tmp_path/'out').rglob('results_*.json'):
        res = json.loads(res_file.read_text())
        model = lm_eval_model_id(res)
        for task, scores in res['results'].items():
            for key, value in scores.items():
                if ',' not in key or '_stderr' in key: continue
                metric, filt = key.split(',')
                name = metric if filt == 'none' else key
                got = items[(items.model == model) & (items.benchmark == task) & (items.metric == name)]
                assert len(got) == len(qs) and got.value.mean() == pytest.approx(value), (model, task, key)
    assert infer_models(items).loc[str(tmp_path/'tiny-medical-full'), 'base'] == str(tmp_path/'tiny')
