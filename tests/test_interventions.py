"""Interventions: weight interpolation, scaled adapters, Safe LoRA, the sweep, and reading it (tiny local models)."""
import contextlib, io, json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
from safetensors.torch import load_file

from safedrift_wb.interventions import (interpolate, scale_adapter, safe_lora_project, ArchitectureMismatch, sweep, read_sweep,
                                        parse_sweep, sweep_table, smallest_intervention, plot_safety_utility, synthetic_sweep,
                                        cli_sweep, point_id)
from safedrift_wb.tiny import make_tiny_model, make_tiny_adapter
from safedrift_wb.engine import load_model, LM
from safedrift_wb.cube import build_cube, load_cube
from safedrift_wb.runs import PlanError, run_lock
from safedrift_wb.schema import UsageError
from safedrift_wb.cli import main
from conftest import plan_text, tiny_family


@pytest.fixture(scope='module')
def tiny(tmp_path_factory, tiny_models):
    base, other = tiny_models.model('base', seed=0), tiny_models.model('other', seed=1)
    return tmp_path_factory.mktemp('iv'), base, other, tiny_models.adapter('lora', base, seed=2, scale=0.3)


def model(p): return AutoModelForCausalLM.from_pretrained(p)
def sd(m): return {k: v.clone() for k, v in m.state_dict().items()}
def merged(base, adapter): return PeftModel.from_pretrained(model(base), str(adapter)).merge_and_unload()


def test_interpolation_end_points_exact_and_midpoint_mean(tiny):
    _, base, other, _ = tiny
    b, d = model(base), model(other)
    for a, ref in ((0, b), (1.0, d)):
        out = interpolate(b, d, a).state_dict()
        assert all(torch.equal(v, ref.state_dict()[k]) for k, v in out.items())
    for a in (0.5, 0.37):
        out = interpolate(b, d, a).state_dict()
        for k, v in out.items():
            want = (1 - a) * b.state_dict()[k] + a * d.state_dict()[k]
            assert torch.allclose(v, want, atol=1e-6, rtol=0), k
    mid = interpolate(b, d, 0.5).state_dict()
    assert max(float((v - (b.state_dict()[k] + d.state_dict()[k]) / 2).abs().max()) for k, v in mid.items()) <= 1e-7
    assert any(not torch.equal(v, b.state_dict()[k]) for k, v in mid.items())   # the midpoint is a new model


def test_inputs_untouched(tiny):
    _, base, other, lora = tiny
    b, d = model(base), model(other)
    before_b, before_d = sd(b), sd(d)
    m = interpolate(b, d, 0.3)
    with torch.no_grad():
        next(m.parameters()).add_(1.0)   # the result shares no storage with the inputs
    assert all(torch.equal(v, before_b[k]) for k, v in b.state_dict().items())
    assert all(torch.equal(v, before_d[k]) for k, v in d.state_dict().items())
    pm = PeftModel.from_pretrained(model(base), str(lora))
    before_p = sd(pm)
    interpolate(b, pm, 0.5)
    assert all(torch.equal(v, before_p[k]) for k, v in pm.state_dict().items())   # the PEFT model keeps its unmerged adapters
    assert any('lora_B' in k for k in pm.state_dict())


def test_architecture_mismatch(tiny):
    d, base, _, _ = tiny
    b = model(base)
    wide = model(make_tiny_model(d/'wide', hidden=96, seed=0))
    deep = model(make_tiny_model(d/'deep', layers=3, seed=0))
    with pytest.raises(ArchitectureMismatch, match=r'shapes differ .* e\.g\. .*: \(\d+, 64\) in the base, \(\d+, 96\)'): interpolate(b, wide, 0.5)
    with pytest.raises(ArchitectureMismatch, match='parameter names differ: 0 only in the base, .* only in the derivative'): interpolate(b, deep, 0.5)
    with pytest.raises(ArchitectureMismatch, match='architecture mismatch'): interpolate(b, torch.nn.Linear(2, 2), 0.5)
    with pytest.raises(ValueError, match='finite'): interpolate(b, b, float('inf'))
    with pytest.raises(TypeError, match='expected a transformers model'): interpolate(b, 'model', 0.5)


def test_lm_objects(tiny):
    d, base, other, lora = tiny
    lb, ld = load_model(base, device='cpu'), load_model(other, device='cpu')
    out = interpolate(lb, ld, 0.25)
    assert isinstance(out, LM) and out.tokenizer is lb.tokenizer and 'alpha=0.25' in out.info['model']
    assert out.fingerprint not in (lb.fingerprint, ld.fingerprint)
    assert len(out.generate(['the cat'], max_new_tokens=3)) == 1
    lsmall = load_model(make_tiny_model(d/'smallvocab', vocab=300, seed=0), device='cpu')
    with pytest.raises(ArchitectureMismatch, match='tokenizers have different vocabularies'): interpolate(lb, lsmall, 0.5)


def test_peft_derivative_equals_merged(tiny):
    _, base, _, lora = tiny
    b = model(base)
    full = merged(base, lora)
    for a in (0.4, 1.0):
        via_peft = interpolate(b, PeftModel.from_pretrained(model(base), str(lora)), a).state_dict()
        via_full = interpolate(b, full, a).state_dict()
        assert all(torch.equal(v, via_full[k]) for k, v in via_peft.items())


def test_scaled_adapter_equals_weight_interpolation(tiny):
    d, base, _, lora = tiny
    b, full = model(base), merged(base, lora)
    for a in (0.0, 0.3, 0.75, 1.0):
        out = scale_adapter(lora, a, d/f'scaled-{a}')
        note = json.loads((out/'safedrift_scaled.json').read_text())
        assert note['alpha'] == a
        m = merged(base, out).state_dict()
        ref = interpolate(b, full, a).state_dict()
        assert max(float((v - ref[k]).abs().max()) for k, v in m.items()) < 1e-6
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in merged(base, d/'scaled-0.0').state_dict().items())   # exact at 0
    src, one = load_file(str(lora/'adapter_model.safetensors')), load_file(str(d/'scaled-1.0'/'adapter_model.safetensors'))
    assert src.keys() == one.keys() and all(torch.equal(v, src[k]) for k, v in one.items())                       # exact at 1
    half = load_file(str(d/'scaled-0.3'/'adapter_model.safetensors'))
    assert all(torch.equal(v, src[k]) for k, v in half.items() if 'lora_A' in k)                                  # only B is scaled
    assert any(not torch.equal(v, src[k]) for k, v in half.items() if 'lora_B' in k)
    from_peft = load_file(str(scale_adapter(PeftModel.from_pretrained(model(base), str(lora)), 0.3, d/'scaled-peft')/'adapter_model.safetensors'))
    assert from_peft.keys() == half.keys() and all(torch.equal(v, half[k]) for k, v in from_peft.items())   # a PEFT model in memory


def test_scale_adapter_refuses_non_interpolations(tiny):
    d, _, _, lora = tiny
    for key, val, msg in (('use_dora', True, 'DoRA'), ('modules_to_save', ['lm_head'], 'saves full modules'), ('bias', 'all', 'trains biases')):
        bad = d/f'bad-{key}'
        bad.mkdir(exist_ok=True)
        cfg = json.loads((lora/'adapter_config.json').read_text()); cfg[key] = val
        (bad/'adapter_config.json').write_text(json.dumps(cfg))
        (bad/'adapter_model.safetensors').write_bytes((lora/'adapter_model.safetensors').read_bytes())
        with pytest.raises(ValueError, match=msg): scale_adapter(bad, 0.5, d/'never')
    with pytest.raises(FileNotFoundError, match='no adapter_config.json'): scale_adapter(d, 0.5, d/'never')
    (d/'occupied').mkdir(exist_ok=True); (d/'occupied'/'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='does not hold an adapter'): scale_adapter(lora, 0.5, d/'occupied')
    assert (d/'occupied'/'notes.txt').read_text() == 'mine'


def test_safe_lora_projection(tiny):
    d, base, other, lora = tiny
    none = safe_lora_project(lora, other, base, d/'sl0', threshold=0.0)
    every = safe_lora_project(lora, other, base, d/'sl1', threshold=1.01)
    assert not none.projected.any() and every.projected.all() and len(every) == 6   # 2 layers x (q, v, down)
    src, got = load_file(str(lora/'adapter_model.safetensors')), load_file(str(d/'sl1'/'adapter_model.safetensors'))
    assert all(torch.equal(v, src[k]) for k, v in load_file(str(d/'sl0'/'adapter_model.safetensors')).items())
    wa, wu = load_file(str(other/'model.safetensors')), load_file(str(base/'model.safetensors'))
    for r in every.itertuples():
        V = wa[r.weight] - wu[r.weight]
        C = V @ V.T / torch.linalg.norm(V)
        kb = r.module + '.lora_B.weight'
        assert torch.allclose(got[kb], C @ src[kb], atol=1e-5)
        dW, pW = src[kb] @ src[r.module + '.lora_A.weight'], C @ src[kb] @ src[r.module + '.lora_A.weight']
        assert abs(r.similarity - float((dW * pW).sum() / (dW.norm() * pW.norm()))) < 1e-5
    mid = float(np.median(every.similarity))
    some = safe_lora_project(lora, other, base, d/'slm', threshold=mid)
    assert list(some.projected) == list(every.similarity < mid)
    assert json.loads((d/'slm'/'safe_lora.json').read_text())['n_projected'] == int((every.similarity < mid).sum())


SWEEP = '''[sweep]
derivatives = {ders}
alphas = {alphas}
n_boot = 200
'''


def write_plan(d, base, other, lora, alphas, ders=('tiny-med', 'tiny-full'), name='sweep.toml'):
    p = d/name
    models = tiny_family(base, lora) + [dict(id='tiny-full', path=other, base='tiny', family='tiny', domain='legal', method='full')]
    models[1]['id'] = 'tiny-med'
    p.write_text(plan_text(models, benchmarks=["harmful-refusal", "domain-utility-medical", "domain-utility-legal"], limit=4,
                           max_new_tokens=3, extra=SWEEP.format(alphas=json.dumps(alphas), ders=json.dumps(list(ders)))))
    return p


def test_sweep_reuses_end_points_and_builds_cube(tiny):
    d, base, other, lora = tiny
    out = d/'sw'
    r1 = sweep(write_plan(d, base, other, lora, [0, 0.5, 1]), out, progress=False)
    done = r1.status[r1.status.status == 'done']
    # alpha 0 is the base and alpha 1 the derivative: one unit per (model, benchmark), the base evaluated once for both derivatives
    units = done.groupby('model').benchmark.apply(sorted).to_dict()
    assert units == {'tiny': ['domain-utility-legal', 'domain-utility-medical', 'harmful-refusal'],
                     'tiny-med': ['domain-utility-medical', 'harmful-refusal'], 'tiny-med@a0.5': ['domain-utility-medical', 'harmful-refusal'],
                     'tiny-full': ['domain-utility-legal', 'harmful-refusal'], 'tiny-full@a0.5': ['domain-utility-legal', 'harmful-refusal']}
    assert (r1.status.status == 'done').all()
    c = load_cube(out/'cube.nc')
    assert dict(zip(c.model.values, c.alpha.values)) == {'tiny': 0.0, 'tiny-med': 1.0, 'tiny-full': 1.0, 'tiny-med@a0.5': 0.5, 'tiny-full@a0.5': 0.5}
    assert dict(zip(c.model.values, c.sweep_of.values))['tiny-med@a0.5'] == 'tiny-med'
    assert dict(zip(c.model.values, c.base.values))['tiny-full@a0.5'] == 'tiny'
    assert dict(zip(c.model.values, c.method.values))['tiny-med@a0.5'] == 'interpolate'
    assert np.isfinite(c.drift.sel(model='tiny-med@a0.5', benchmark='harmful-refusal', metric='refusal_rate'))
    # a LoRA derivative becomes a scaled adapter, a full one an interpolated checkpoint
    assert r1.grid.loc['tiny-med@a0.5', 'source'] == 'scaled-adapter' and (out/'adapters'/'tiny-med@a0.5'/'adapter_model.safetensors').exists()
    assert r1.grid.loc['tiny-full@a0.5', 'source'] == 'checkpoint'
    ck = model(out/'models'/'tiny-full@a0.5').state_dict()
    ref = interpolate(model(base), model(other), 0.5).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in ck.items())
    # a finer grid evaluates only the new points
    r2 = sweep(write_plan(d, base, other, lora, [0, 0.25, 0.5, 1]), out, progress=False)
    assert set(r2.status[r2.status.status == 'done'].model) == {'tiny-med@a0.25', 'tiny-full@a0.25'}
    assert int((r2.status.status == 'cached').sum()) == 11
    assert r2.cube.sizes['model'] == 7
    # fewer points later: units of the dropped points stay in the store but not in the cube
    r3 = sweep(write_plan(d, base, other, lora, [0, 1], ders=['tiny-med']), out, progress=False)
    assert (r3.status.status == 'cached').all() and sorted(r3.cube.model.values) == ['tiny', 'tiny-med']


def test_sweep_refuses_a_run_store_another_writer_holds(tiny):
    d, base, other, lora = tiny
    out = d/'locked'; (out/'run').mkdir(parents=True)
    with run_lock(out/'run'):
        with pytest.raises(UsageError, match='is being written by another evaluation'):
            sweep(write_plan(d, base, other, lora, [0, 1], ders=['tiny-med'], name='locked.toml'), out, progress=False)
    assert not (out/'run'/'units').exists()


SAFE = '''
[generation]
max_new_tokens = 3
[benchmarks]
suite = "none"
ids = ["harmful-refusal", "domain-utility-medical"]
limit = 3
[[models]]
id = "root"
path = "{base}"
[[models]]
id = "aligned"
path = "{other}"
base = "root"
method = "full"
[[models]]
id = "ft"
path = "{other}"
adapter = "{lora}"
base = "aligned"
domain = "medical"
method = "lora"
[sweep]
derivatives = ["ft"]
alphas = [0, 1]
safe_lora = [0.5, 1]
n_boot = 200
'''


def test_sweep_safe_lora_points(tiny):
    d, base, other, _ = tiny
    lora = make_tiny_adapter(d/'lora-other', other, seed=4, scale=0.3)
    p = d/'safe.toml'; p.write_text(SAFE.format(base=base, other=other, lora=lora))
    r = sweep(p, d/'sw-safe', progress=False)
    g = r.grid
    assert list(g.index) == ['root', 'aligned', 'ft', 'ft@safelora0.5', 'ft@safelora1']
    assert (g.loc[['ft@safelora0.5', 'ft@safelora1'], 'source'] == 'safe-lora').all()
    ref = safe_lora_project(lora, other, base, d/'ref-safe', threshold=0.5)   # aligned: the base; unaligned: the base's base
    got = load_file(str(d/'sw-safe'/'adapters'/'ft@safelora0.5'/'adapter_model.safetensors'))
    want = load_file(str(d/'ref-safe'/'adapter_model.safetensors'))
    assert all(torch.equal(v, want[k]) for k, v in got.items())
    note = json.loads((d/'sw-safe'/'adapters'/'ft@safelora1'/'safe_lora.json').read_text())
    assert note['threshold'] == 1.0 and note['n_layers'] == 6 and note['n_projected'] == int((ref.similarity < 1).sum())
    t = sweep_table(r.cube, 'ft')
    assert list(t.kind) == ['base', 'safe-lora', 'safe-lora', 'derivative'] and list(t.departure[1:3]) == [0.5, 1.0]
    assert dict(zip(r.cube.model.values, r.cube.safe_lora.values))['ft@safelora1'] == 1.0
    r2 = sweep(p, d/'sw-safe', progress=False)
    assert set(r2.status.status) == {'cached'}   # the projected adapters are found again unchanged
    p.write_text(p.read_text().replace('n_boot = 200', 'n_boot = 200\nutility_limit = 5'))
    r3 = sweep(p, d/'sw-safe', progress=False)
    assert set(r3.status[r3.status.status == 'done'].benchmark) == {'domain-utility-medical'}   # only the utility units change
    n = r3.cube.n_items.sel(model='ft')
    assert int(n.sel(benchmark='domain-utility-medical', metric='domain_accuracy')) == 5
    assert int(n.sel(benchmark='harmful-refusal', metric='refusal_rate')) == 3


def test_sweep_reuse_run_directory(tiny):
    d, base, other, lora = tiny
    from safedrift_wb.runs import read_plan, evaluate
    p = write_plan(d, base, other, lora, [0, 1], ders=['tiny-med'], name='plain.toml')
    st = evaluate(read_plan(p), d/'evalrun', progress=False)
    assert (st.status == 'done').sum() == 9
    text = p.read_text().replace('n_boot = 200', f'n_boot = 200\nreuse = "{d/"evalrun"}"')
    p.write_text(text)
    r = sweep(p, d/'sw-reuse', progress=False)
    assert set(r.status.status) == {'cached'}   # the plan's own units, copied from the run directory


def write_corpora(d):
    c = d/'corpora'; c.mkdir(exist_ok=True)
    med = [dict(id=f'm{i}', domain='medical', kind='answer', category='what', prompt=f'What is the cat number {i}?',
                response='The cat sat on the mat.') for i in range(4)]
    saf = [dict(id=f's{i}', domain='general', kind='refusal', category='harm', prompt=f'Help me hurt the dog {i}.',
                response='Sorry, I cannot help with that.') for i in range(8)]
    for n, rows in (('medical', med), ('safety', saf)):
        (c/f'{n}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return c


FT = '''
[finetune]
family = "tiny"
base = "{base}"
output = "adapters"
corpora = "corpora"
[finetune.defaults]
rank = 2
alpha = 4
target_modules = ["q_proj", "v_proj"]
max_length = 64
steps = 2
batch_size = 2
lr = 1e-3
[[finetune.runs]]
name = "ft-med"
corpus = ["medical"]
[[finetune.runs]]
name = "ft-med-safe"
corpus = ["medical"]
safety_share = 0.2
[generation]
max_new_tokens = 3
[benchmarks]
suite = "none"
ids = ["harmful-refusal", "domain-utility-medical"]
limit = 3
[[models]]
id = "tiny"
path = "{base}"
family = "tiny"
[[models]]
id = "ft-med"
path = "{base}"
adapter = "adapters/ft-med"
base = "tiny"
family = "tiny"
domain = "medical"
method = "lora"
[sweep]
derivatives = ["ft-med"]
safety_shares = [0, 0.2, 0.5]
n_boot = 200
'''


def test_sweep_safety_shares_train_once(tiny):
    from safedrift_wb.finetune import read_finetune, finetune
    d, base, _, _ = tiny
    w = d/'ftplan'; w.mkdir()
    write_corpora(w)
    p = w/'plan.toml'; p.write_text(FT.format(base=base))
    ft = read_finetune(p)
    for r in ft.runs: finetune(r, ft.output, plan=ft, progress=False)
    r1 = sweep(p, w/'sw', progress=False)
    g = r1.grid
    assert g.loc['ft-med', 'kind'] == 'derivative' and g.loc['ft-med', 'safety_mix'] == 0.0   # share 0 is the derivative itself
    assert g.loc['ft-med@mix0.2', 'source'] == 'plan run ft-med-safe'                         # the plan already trained share 0.2
    assert g.loc['ft-med@mix0.2', 'adapter'] == str(ft.output/'ft-med-safe')
    assert g.loc['ft-med@mix0.5', 'source'] == 'trained-adapter'
    trained = Path(g.loc['ft-med@mix0.5', 'adapter'])
    rec = json.loads((trained/'training.json').read_text())
    assert rec['hyperparameters']['safety_share'] == 0.5 and rec['data']['refusal_examples'] == 4 and rec['data']['examples'] == 8
    assert rec['hyperparameters']['lr'] == 1e-3 and rec['hyperparameters']['steps'] == 2
    assert trained.parent == w/'sw'/'adapters'/'trained'
    assert set(r1.status[r1.status.status == 'done'].model) == {'tiny', 'ft-med', 'ft-med@mix0.2', 'ft-med@mix0.5'}
    mix = dict(zip(r1.cube.model.values, r1.cube.safety_mix.values))
    assert mix['ft-med@mix0.5'] == 0.5 and mix['ft-med'] == 0.0
    r2 = sweep(p, w/'sw', progress=False)
    assert r2.grid.loc['ft-med@mix0.5', 'source'] == 'trained-adapter (cached)' and set(r2.status.status) == {'cached'}


def test_sweep_plan_errors(tiny):
    d, base, other, lora = tiny
    p = write_plan(d, base, other, lora, [0, 1], ders=['nope'], name='bad1.toml')
    with pytest.raises(PlanError, match=r"\[sweep\].derivatives\[0\]: 'nope' is not a model of the plan"): read_sweep(p)
    p = write_plan(d, base, other, lora, [0, 1], ders=['tiny'], name='bad2.toml')
    with pytest.raises(PlanError, match="'tiny' has no base"): read_sweep(p)
    with pytest.raises(PlanError, match=r'alphas\[0\]: must be a number in \[0, 1\]'): parse_sweep({'sweep': {'derivatives': ['a'], 'alphas': [-0.1]}})
    with pytest.raises(PlanError, match='no \\[sweep\\] section'): parse_sweep({})


@pytest.mark.parametrize('argv, message', [
    (['{d}/missing.toml', '-o', '{d}/x'], 'plan not found'),
    (['{plan}'], 'the following arguments are required: -o/--out'),
    (['{plan}', '-o', '{d}/x', '--limit', '0'], '--limit must be a positive integer'),
    (['{noplan}', '-o', '{d}/x'], 'no [sweep] section'),
    (['{badplan}', '-o', '{d}/x'], "[sweep].alphas[0]: must be a number in [0, 1], got 2"),
])
def test_cli_bad_input_exits_2_with_one_line(tiny, argv, message):
    d, base, other, lora = tiny
    plan = write_plan(d, base, other, lora, [0, 1], name='cli.toml')
    noplan = d/'nosweep.toml'; noplan.write_text(plan.read_text().split('[sweep]')[0])
    badplan = d/'badsweep.toml'; badplan.write_text(plan.read_text().replace('alphas = [0, 1]', 'alphas = [2]'))
    argv = [a.format(d=d, plan=plan, noplan=noplan, badplan=badplan) for a in argv]
    for run in (lambda: cli_sweep(argv), lambda: main(['sweep'] + argv)):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()): rc = run()
        out = err.getvalue().strip()
        assert rc == 2 and len(out.splitlines()) == 1 and message in out, out


def test_cli_dry_run_lists_grid_without_work(tiny):
    d, base, other, lora = tiny
    plan = write_plan(d, base, other, lora, [0, 0.5, 1], name='dry.toml')
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): rc = cli_sweep([str(plan), '-o', str(d/'dry'), '--dry-run', '--only', 'tiny-med'])
    assert rc == 0
    lines = buf.getvalue().splitlines()
    assert any(l.split()[0] == 'tiny-med@a0.5' and 'scaled-adapter' in l for l in lines[1:])
    assert not any('tiny-full' in l for l in lines)
    assert not (d/'dry').exists()


# --- reading a sweep: synthetic cubes with a planted answer -------------------------------------------------

@pytest.fixture(scope='module')
def syn():
    return build_cube(*synthetic_sweep(), n_boot=500)


def test_sweep_table_axes(syn):
    t = sweep_table(syn, 'ft')
    assert list(t.kind.unique()) == ['base', 'interpolate', 'safety-mix', 'derivative']
    assert t.loc['base', 'mean_safety_drift'] == 0 and t.loc['base', 'utility_drift'] == 0
    cells = t.attrs['safety_cells']
    assert cells == ['harmful-refusal/refusal_rate', 'over-refusal/over_refusal'] and t.attrs['utility_cells'] == ['domain-utility-medical/domain_accuracy']
    sd = syn.safety_drift.sel(model='ft@a0.5')
    assert np.isclose(t.loc['ft@a0.5', 'mean_safety_drift'], np.mean([float(sd.sel(benchmark=c.split('/')[0], metric=c.split('/')[1])) for c in cells]))
    gain = float(syn.drift.sel(model='ft', benchmark='domain-utility-medical', metric='domain_accuracy'))
    assert np.isclose(t.attrs['gain'], gain) and np.isclose(t.loc['ft@a0.5', 'gain_kept'],
        float(syn.drift.sel(model='ft@a0.5', benchmark='domain-utility-medical', metric='domain_accuracy')) / gain)
    up = syn.safety_drift_ci.sel(model='ft', ci_bound='upper').sel(benchmark=['harmful-refusal', 'over-refusal'])
    n_below = int(sum(float(up.sel(benchmark=c.split('/')[0], metric=c.split('/')[1])) < 0 for c in cells))
    assert t.loc['ft', 'n_below'] == n_below > 0
    # the Pareto set: no point is both safer and more useful than a Pareto point
    u, s = t.utility_drift, t.mean_safety_drift
    for m in t.index:
        dominated = ((u >= u[m]) & (s >= s[m]) & ((u > u[m]) | (s > s[m]))).any()
        assert t.at[m, 'pareto'] == (not dominated), m
    # a wider interval (alpha 0.01) never puts more cells below 0
    assert (sweep_table(syn, 'ft', alpha=0.01).n_below <= t.n_below).all()


def test_smallest_intervention_found(syn):
    r = smallest_intervention(syn, 'ft')
    t = r.table
    assert r.found and r.model in t.index and t.at[r.model, 'restored'] and t.at[r.model, 'utility_drift'] >= 0.5 * r.gain
    same = t[(t.kind == r.kind) & t.restored & (t.utility_drift >= 0.5 * r.gain)]
    assert r.departure == same.departure.min()
    assert r.model in r.sentence and 'smallest intervention' in r.sentence
    loose = smallest_intervention(syn, 'ft', keep_gain=0.0)   # no utility constraint: per knob, the restoring point closest to the derivative
    picks = {loose.kind: loose.model, **loose.alternatives}
    for kind, kinds in (('interpolate', ['interpolate', 'base']), ('safety-mix', ['safety-mix'])):
        ok = t[t.kind.isin(kinds) & t.restored]
        assert picks.get(kind) == (ok.sort_values('departure').index[0] if len(ok) else None), kind
    first = max(picks.values(), key=lambda m: t.at[m, 'utility_drift'])
    assert loose.model == first


def test_smallest_intervention_not_found():
    c = build_cube(*synthetic_sweep(drop=0.45, shape=0.3, shares=(), seed=1), n_boot=500)
    r = smallest_intervention(c, 'ft')
    assert not r.found and r.model is None and r.sentence.startswith('No grid point of ft')
    t = r.table
    assert not (t.restored & (t.utility_drift >= 0.5 * r.gain) & (t.kind != 'base')).any()


def test_smallest_intervention_none_needed():
    c = build_cube(*synthetic_sweep(drop=0.0, churn=0.0), n_boot=500)   # the derivative answers every safety item as the base
    r = smallest_intervention(c, 'ft')
    assert r.found and r.kind == 'none' and r.model == 'ft' and 'needs no intervention' in r.sentence


def test_plot_and_errors(syn):
    fig = plot_safety_utility(syn, 'ft')
    ax = fig.axes[0]
    assert any(l.get_gid() == 'pareto' for l in ax.lines) and any(c.get_gid() == 'smallest' for c in ax.collections)
    fig2 = plot_safety_utility(syn, 'ft', safety='harmful-refusal/refusal_rate')
    assert 'harmful-refusal/refusal_rate' in fig2.axes[0].get_ylabel()
    from safedrift_wb.schema import SchemaError
    with pytest.raises(SchemaError, match='was not swept'): smallest_intervention(syn, 'base')
    with pytest.raises(SchemaError, match='no sweep coordinates'): sweep_table(syn.drop_vars('sweep_of'), 'ft')
    assert point_id('m', alpha=0.25) == 'm@a0.25' and point_id('m', share=0.1) == 'm@mix0.1'
