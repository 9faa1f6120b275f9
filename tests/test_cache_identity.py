"""No stale cache: a unit's key names everything that changes its answers (STYLE 14), and nothing else.

Each change below is made alone, to a copy of the files or of the plan, and must change the keys of exactly the
units it can affect; a few go through `evaluate` to show a recompute, and a same-content copy of the model
folder in another place is reused."""
import contextlib, copy, dataclasses, io, json, os, shutil, struct
from pathlib import Path
import pytest

from safedrift_wb.benchmarks import get_benchmark
from safedrift_wb.cli import main
from safedrift_wb.common.io import file_sha256
from safedrift_wb.runs import ModelSpec, evaluate, read_plan
from safedrift_wb.runs.unit import explain_unit, model_identity
from conftest import plan_text, tiny_family

GEN, MC = 'harmful-refusal', 'truthfulness-mc1'
MODELS = ('tiny', 'tiny-lora')
ALL = {(m, b) for m in MODELS for b in (GEN, MC)}


@pytest.fixture(scope='module')
def world(tmp_path_factory, tiny_models):
    "Copies of a tiny model and adapter, a plan over them (chat-template multiple choice, a system prompt), one run."
    root = tmp_path_factory.mktemp('cache-identity')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SAFEDRIFT_CACHE', str(root/'cache'))
        base = Path(shutil.copytree(tiny_models.model('base', seed=0), root/'base'))
        lora = Path(shutil.copytree(tiny_models.adapter('lora', tiny_models.model('base', seed=0), seed=1), root/'lora'))
        (root/'plan.toml').write_text(plan_text(tiny_family(base, lora), benchmarks=[GEN, MC], limit=3, max_new_tokens=4))
        plan = read_plan(root/'plan.toml')
        plan.generation.update(system='You are a careful assistant.', chat_mc=True)
        status = evaluate(plan, root/'run', progress=False)
        assert set(status.status) == {'done'} and len(status) == 4
        yield dict(root=root, base=base, lora=lora, plan=plan, run=root/'run', keys=unit_keys(plan, root/'run'))


@pytest.fixture(autouse=True)
def own_cache(world, monkeypatch):
    monkeypatch.setenv('SAFEDRIFT_CACHE', str(world['root']/'cache'))


def unit_keys(plan, run) -> dict:
    "(model, benchmark) -> the key `evaluate` would look for, computed without loading a model."
    return {(m.id, b.id): explain_unit(plan, run, f'{m.id}/{b.id}')['key'] for m in plan.models for b in plan.benchmarks}


def changed_units(world, plan) -> set:
    now = unit_keys(plan, world['run'])
    return {u for u, k in now.items() if k != world['keys'][u]}


def with_models(plan, per_model=None, **changes):
    "A copy of `plan` whose model specs get `changes`, or `per_model(spec)` -> dict of changes."
    p = copy.copy(plan)
    p.models = [dataclasses.replace(m, **(per_model(m) if per_model else changes)) for m in plan.models]
    return p


def model_copy(world, name, edit) -> Path:
    "A copy of the base model folder with `edit(folder)` applied."
    d = Path(shutil.copytree(world['base'], world['root']/'variants'/name))
    edit(d)
    return d


def adapter_copy(world, name, edit) -> Path:
    d = Path(shutil.copytree(world['lora'], world['root']/'variants'/name))
    edit(d)
    return d


def edit_json(path, **kv):
    d = json.loads(Path(path).read_text()); d.update(kv); Path(path).write_text(json.dumps(d, indent=2))


def flip_weight_bit(path, where:float=0.5):
    "Change one float32 of a safetensors file by one ulp, in place: same size; the caller restores the mtime."
    data = bytearray(Path(path).read_bytes())
    start = 8 + struct.unpack('<Q', data[:8])[0]
    off = start + (int((len(data) - start) * where) // 4) * 4   # the lowest mantissa byte of a float32
    data[off] ^= 1
    st = os.stat(path)
    with open(path, 'r+b') as f: f.seek(off); f.write(data[off:off + 1])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def template_file(folder) -> Path:
    "Where the tokenizer keeps its chat template: chat_template.jinja, or tokenizer_config.json."
    return folder/'chat_template.jinja' if (folder/'chat_template.jinja').exists() else folder/'tokenizer_config.json'


def change_chat_template(folder):
    f = template_file(folder)
    if f.suffix == '.jinja': f.write_text(f.read_text().replace('<|end|>', '<|end|>\n'))
    else: edit_json(f, chat_template=json.loads(f.read_text())['chat_template'].replace('<|end|>', '<|end|>\n'))


def change_tokenizer(folder):
    tj = json.loads((folder/'tokenizer.json').read_text())
    tj['added_tokens'][0]['normalized'] = not tj['added_tokens'][0]['normalized']
    (folder/'tokenizer.json').write_text(json.dumps(tj))


def replace_bench(plan, bid, per_bench=None, **changes):
    "A copy of `plan` whose benchmark `bid` gets `changes`, or `per_bench(bench)` -> dict of changes."
    p = copy.copy(plan)
    p.benchmarks = [dataclasses.replace(b, **(per_bench(b) if per_bench else changes)) if b.id == bid else b for b in plan.benchmarks]
    return p


def edit_first_item(b):
    "A loader whose first selected item has one more word in its prompt."
    first = b.items(3)[0]['item']
    def loader():
        return [dict(it, prompt=it['prompt'] + ' Please.') if it['item'] == first else it for it in b.loader()]
    return dict(loader=loader)


def gen(plan, **kv):
    p = copy.copy(plan); p.generation = dict(plan.generation, **kv); return p


# each change alone, and the units whose keys it must change (every other unit keeps its key)
CHANGES = {
    'config.json': (lambda w, p: with_models(p, path=str(model_copy(w, 'config', lambda d: edit_json(d/'config.json', rms_norm_eps=1e-5)))), ALL),
    'generation_config eos': (lambda w, p: with_models(p, path=str(model_copy(w, 'eos', lambda d: edit_json(d/'generation_config.json', eos_token_id=5)))), ALL),
    'tokenizer file': (lambda w, p: with_models(p, path=str(model_copy(w, 'tok', change_tokenizer))), ALL),
    'chat template': (lambda w, p: with_models(p, path=str(model_copy(w, 'chat', change_chat_template))), ALL),
    'weights (copy)': (lambda w, p: with_models(p, path=str(model_copy(w, 'weights', lambda d: flip_weight_bit(d/'model.safetensors')))), ALL),
    'adapter weights': (lambda w, p: with_models(p, lambda m: dict(adapter=str(adapter_copy(w, 'aw', lambda d: flip_weight_bit(d/'adapter_model.safetensors')))) if m.adapter else {}),
                        {('tiny-lora', GEN), ('tiny-lora', MC)}),
    'adapter config': (lambda w, p: with_models(p, lambda m: dict(adapter=str(adapter_copy(w, 'ac', lambda d: edit_json(d/'adapter_config.json', lora_alpha=16)))) if m.adapter else {}),
                       {('tiny-lora', GEN), ('tiny-lora', MC)}),
    'dtype': (lambda w, p: with_models(p, lambda m: dict(dtype='bfloat16') if not m.adapter else {}), {('tiny', GEN), ('tiny', MC)}),
    'benchmark version': (lambda w, p: replace_bench(p, GEN, lambda b: dict(version=b.version + '.1')), {(m, GEN) for m in MODELS}),
    'benchmark params (mc template)': (lambda w, p: replace_bench(p, MC, template='letters'), {(m, MC) for m in MODELS}),
    'prompt template': (lambda w, p: replace_bench(p, GEN, template='Answer briefly. {prompt}'), {(m, GEN) for m in MODELS}),
    'item content': (lambda w, p: replace_bench(p, GEN, edit_first_item), {(m, GEN) for m in MODELS}),
    'limit': (lambda w, p: dataclasses.replace(p, limit=4), ALL),
    'system prompt': (lambda w, p: gen(p, system='Answer in French.'), ALL),    # chat_mc: multiple choice sees it too
    'max_new_tokens': (lambda w, p: gen(p, max_new_tokens=5), {(m, GEN) for m in MODELS}),
    'temperature': (lambda w, p: gen(p, temperature=0.7), {(m, GEN) for m in MODELS}),
    'seed': (lambda w, p: gen(p, seed=3), {(m, GEN) for m in MODELS}),
    'stop': (lambda w, p: gen(p, stop=['\n\n']), {(m, GEN) for m in MODELS}),
    'chat_mc': (lambda w, p: gen(p, chat_mc=False), {(m, MC) for m in MODELS}),
    'judge options': (lambda w, p: dataclasses.replace(p, judges={'refusal': {'threshold': 0.4}}), {(m, GEN) for m in MODELS}),
}


@pytest.mark.parametrize('name', sorted(CHANGES))
def test_each_change_recomputes_exactly_the_units_it_affects(world, name):
    make, expected = CHANGES[name]
    assert changed_units(world, make(world, world['plan'])) == expected


def test_scoring_package_version_is_part_of_the_key(world, monkeypatch):
    import safedrift_wb.runs.unit as U
    monkeypatch.setattr(U, 'package_version', lambda: '999.0')
    assert changed_units(world, world['plan']) == ALL


def test_what_does_not_change_answers_keeps_keys(world):
    "Batch size, model ids' table columns and, without chat-template scoring, the system prompt of a multiple-choice unit."
    p = with_models(world['plan'], batch_size=2, domain='general')
    p.generation = dict(p.generation, batch_size=3)
    assert changed_units(world, p) == set()
    q = gen(world['plan'], chat_mc=False)
    a, b = unit_keys(q, world['run']), unit_keys(gen(q, system='Other.'), world['run'])
    assert {u for u in a if a[u] != b[u]} == {(m, GEN) for m in MODELS}


def rerun(world, tmp_path, plan) -> dict:
    "Evaluate `plan` into a copy of the first run; (model, benchmark) -> status."
    run = Path(shutil.copytree(world['run'], tmp_path/'run'))
    st = evaluate(plan, run, progress=False)
    return {(r.model, r.benchmark): r.status for r in st.itertuples()}


def test_a_same_content_copy_elsewhere_is_reused(world, tmp_path):
    base2 = Path(shutil.copytree(world['base'], tmp_path/'elsewhere'/'model'))
    lora2 = Path(shutil.copytree(world['lora'], tmp_path/'elsewhere'/'adapter'))
    p = with_models(world['plan'], lambda m: dict(path=str(base2), adapter=str(lora2) if m.adapter else None))
    assert set(rerun(world, tmp_path, p).values()) == {'cached'}


def test_unchanged_plan_is_reused_and_explained(world):
    e = explain_unit(world['plan'], world['run'], f'tiny/{MC}')
    assert e['status'] == 'reuse' and e['stored_key'] == e['key'] and e['changed'] == []
    assert e['components']['generation.system'] == 'You are a careful assistant.' and e['components']['model.config_sha256']


def test_weights_replaced_in_place_same_size_and_mtime_recompute(world, tmp_path):
    "The issue's case: the content-hash memo was keyed by size and mtime, so a same-size, same-mtime file was stale."
    d = Path(shutil.copytree(world['base'], tmp_path/'w'))
    p = with_models(world['plan'], path=str(d))
    w = d/'model.safetensors'
    assert w.stat().st_size > 2 * 65536                       # large enough for the memo to be used
    before = file_sha256(w)
    assert set(rerun(world, tmp_path, p).values()) == {'cached'}   # the copy is the same model; its digest is now memoised
    flip_weight_bit(w)
    assert file_sha256(w) != before
    shutil.rmtree(tmp_path/'run')
    assert rerun(world, tmp_path, p) == {u: 'done' for u in ALL}


def test_generation_config_eos_recomputes_through_evaluate(world, tmp_path):
    d = model_copy(world, 'eos-eval', lambda d: edit_json(d/'generation_config.json', eos_token_id=7))
    assert rerun(world, tmp_path, with_models(world['plan'], path=str(d))) == {u: 'done' for u in ALL}


def test_system_prompt_with_chat_mc_recomputes_through_evaluate(world, tmp_path):
    got = rerun(world, tmp_path, gen(world['plan'], system='Answer in one word.'))
    assert got == {u: 'done' for u in ALL}


def test_judge_options_recompute_through_evaluate(world, tmp_path):
    got = rerun(world, tmp_path, dataclasses.replace(world['plan'], judges={'refusal': {'empty': 0.0}}))
    assert got == {(m, b): 'done' if b == GEN else 'cached' for m, b in ALL}


def test_hub_model_without_revision_is_keyed_by_its_commit(world, tmp_path, monkeypatch):
    "Offline, a hub id's revision (default main) resolves through the hub cache's refs to snapshots/<commit>."
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path/'hub'))
    repo = tmp_path/'hub'/'models--org--tiny'
    (repo/'refs').mkdir(parents=True)
    for c in ('a' * 40, 'b' * 40): (repo/'snapshots'/c).mkdir(parents=True)
    (repo/'refs'/'main').write_text('a' * 40)
    spec = ModelSpec(id='hub', path='org/tiny')
    first = model_identity(spec)
    assert first['revision'] == 'a' * 40 and first['repo'] == 'org/tiny'
    (repo/'refs'/'main').write_text('b' * 40)               # main moved: another model
    assert model_identity(spec)['revision'] == 'b' * 40
    assert model_identity(dataclasses.replace(spec, revision='a' * 40))['revision'] == 'a' * 40
    with pytest.raises(FileNotFoundError, match='cannot be resolved to a commit'):
        model_identity(dataclasses.replace(spec, revision='v9'))   # never a bare id without a commit
    p = dataclasses.replace(world['plan'], models=[dataclasses.replace(spec, revision='v9')])
    st = evaluate(p, tmp_path/'hubrun', progress=False)     # a setup failure of that model, not a stale unit
    assert set(st.status) == {'failed'} and set(st.stage) == {'setup'}


def test_adapter_only_folder_identifies_its_base(world, tmp_path):
    "A plan model that is an adapter folder alone is keyed by its base's files too."
    a = Path(shutil.copytree(world['lora'], tmp_path/'a'))
    edit_json(a/'adapter_config.json', base_model_name_or_path=str(world['base']))
    one = model_identity(ModelSpec(id='x', path=str(a)))
    other = Path(shutil.copytree(world['base'], tmp_path/'b'))
    edit_json(other/'config.json', rms_norm_eps=1e-5)
    edit_json(a/'adapter_config.json', base_model_name_or_path=str(other))
    two = model_identity(ModelSpec(id='x', path=str(a)))
    assert one['adapter_sha256'] == two['adapter_sha256'] and one['config_sha256'] != two['config_sha256']


def test_cli_explain_names_the_changed_component(world, tmp_path):
    d = Path(shutil.copytree(world['base'], tmp_path/'m'))
    plan = tmp_path/'plan.toml'
    plan.write_text(plan_text([dict(id='tiny', path=d)], benchmarks=[GEN], limit=2, max_new_tokens=3))
    run = tmp_path/'run'
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(['eval', str(plan), '-o', str(run), '--no-progress']) == 0
    def explain(unit):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(['eval', str(plan), '-o', str(run), '--explain', unit])
        return rc, out.getvalue(), err.getvalue()
    rc, out, _ = explain(f'tiny/{GEN}')
    assert rc == 0 and 'would be reused' in out and 'model.weights_sha256' in out
    edit_json(d/'config.json', rms_norm_eps=1e-5)
    rc, out, _ = explain(f'tiny/{GEN}')
    assert rc == 0 and 'would be recomputed' in out
    changed = out.split('changed since the stored unit:')[1].split('key components now:')[0]
    assert [l.split(':')[0].strip() for l in changed.strip().splitlines()] == ['model.config_sha256']
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    for bad in ['tiny/nope', 'ghost/' + GEN, 'tiny', f'tiny/{GEN}/x']:
        rc, out, err = explain(bad)
        assert rc == 2 and out == '' and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, (bad, err)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before   # --explain writes nothing


def test_a_judge_model_named_by_path_is_keyed_by_its_content(world, tmp_path):
    "A judge option that names a local model (file or folder) enters the key by content, not only by its path."
    from safedrift_wb.runs.unit import unit_components, components_key
    from safedrift_wb.benchmarks import get_benchmark
    jm = tmp_path/'judge-model'; jm.mkdir(); (jm/'config.json').write_text('{"a": 1}'); (jm/'weights.bin').write_bytes(b'\x00' * 64)
    bench = get_benchmark('harmful-refusal')
    def key(): return components_key(unit_components({'source': 'm'}, bench, [], {}, {}, {'refusal': {'model': str(jm)}}))
    k0 = key()
    (jm/'weights.bin').write_bytes(b'\x01' * 64)     # same path, same size, new content
    k1 = key()
    assert k1 != k0
    (jm/'weights.bin').write_bytes(b'\x00' * 64)
    assert key() == k0
