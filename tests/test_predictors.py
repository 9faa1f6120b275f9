"Tests of the predictors of drift (`safedrift_wb.finetune.predictors`): weight measures against hand-computed values and dense references, the committed adapters, bad inputs."
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
from safetensors.numpy import save_file

from safedrift_wb.common.errors import SchemaError
from safedrift_wb.common.paths import cache_dir, project_data_dir
from safedrift_wb.finetune.predictors import (as_dense, base_perplexity, delta_inner, dense_deltas, layer_type, lora_deltas,
                                              lora_scale, module_name, predictor_table, read_weights, training_record,
                                              update_cosine, update_norms)

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = project_data_dir()/'adapters'
ALIGNED = 'smollm2-135m-aligned'
Q, V, O = (f'model.layers.0.self_attn.{t}' for t in ('q_proj', 'v_proj', 'o_proj'))

# Hand-computed example.
#   B = [[1,0],[0,1],[1,1]] (3x2), A = [[1,2],[0,1]] (2x2), scale 1:
#   B A = [[1*1+0*0, 1*2+0*1], [0*1+1*0, 0*2+1*1], [1*1+1*0, 1*2+1*1]] = [[1,2],[0,1],[1,3]]
#   ||BA||_F^2 = 1+4+0+1+1+9 = 16 -> ||BA||_F = 4
#   D = [[1,0],[0,1],[0,0]]: <BA, D> = 1*1 + 2*0 + 0*0 + 1*1 + 1*0 + 3*0 = 2, ||D||_F = sqrt(2)
#   V = [[3,4]]: ||V||_F = 5;  O = [[2]]: ||O||_F = 2
#   update a = {q: BA, v: V}: norms q 4, v 5, all sqrt(16+25) = sqrt(41)
#   base W_q = [[2,0],[0,2],[0,0]] (norm sqrt 8), W_v = [[0,5]] (norm 5):
#   rel q = 4/sqrt(8) = sqrt(2), rel v = 5/5 = 1, rel all = sqrt(41)/sqrt(8+25) = sqrt(41/33)
#   update b = {q: D, o: O}: cos q = 2/(4*sqrt 2) = 0.353553..., cos all = 2/sqrt(41*(2+4)) = 0.127515...
#   (v is in a only and o in b only: they add to the norms, not to the inner product; their per-type cosine is undefined)
BH = np.array([[1., 0.], [0., 1.], [1., 1.]])
AH = np.array([[1., 2.], [0., 1.]])
DH = np.array([[1., 0.], [0., 1.], [0., 0.]])
UPD_A = {Q: (BH, AH, 1.0), V: np.array([[3., 4.]])}
UPD_B = {Q: DH, O: np.array([[2.]])}
BASE_W = {Q: np.array([[2., 0.], [0., 2.], [0., 0.]]), V: np.array([[0., 5.]])}


def test_hand_computed_norms():
    n = update_norms(UPD_A, BASE_W)
    assert list(n.index) == ['q_proj', 'v_proj', 'all']
    np.testing.assert_allclose(n['l2'], [4, 5, math.sqrt(41)], rtol=1e-12)
    np.testing.assert_allclose(n['base_l2'], [math.sqrt(8), 5, math.sqrt(33)], rtol=1e-12)
    np.testing.assert_allclose(n['rel_l2'], [math.sqrt(2), 1, math.sqrt(41 / 33)], rtol=1e-12)
    assert list(n['modules']) == [1, 1, 2]
    assert update_norms({Q: (BH, AH, 2.0)})['l2'].iloc[0] == pytest.approx(8.0)   # the scale multiplies the update
    assert 'rel_l2' not in update_norms(UPD_A)


def test_hand_computed_cosine():
    c = update_cosine(UPD_A, UPD_B)
    assert list(c.index) == ['o_proj', 'q_proj', 'v_proj', 'all']
    assert c['q_proj'] == pytest.approx(1 / (2 * math.sqrt(2)), rel=1e-12)
    assert c['all'] == pytest.approx(2 / math.sqrt(41 * 6), rel=1e-12)
    assert np.isnan(c['o_proj']) and np.isnan(c['v_proj'])
    assert delta_inner((BH, AH, 1.0), DH) == pytest.approx(2.0) and delta_inner(DH, (BH, AH, 3.0)) == pytest.approx(6.0)
    np.testing.assert_array_equal(as_dense((BH, AH, 1.0)), [[1, 2], [0, 1], [1, 3]])


def _random_lora(rng, types, r, scale, layers=3, shape=(16, 10)):
    return {f'model.layers.{i}.self_attn.{t}': (rng.normal(size=(shape[0], r)), rng.normal(size=(r, shape[1])), scale)
            for i in range(layers) for t in types}


def test_factorised_equals_dense_on_random_factors():
    rng = np.random.default_rng(1)
    a = _random_lora(rng, ('q_proj', 'v_proj'), 4, 2.0)
    b = _random_lora(rng, ('q_proj', 'v_proj', 'o_proj'), 3, 0.7)
    dense = lambda u: {k: as_dense(v) for k, v in u.items()}
    ref_all = sum(np.sum(as_dense(a[k]) * as_dense(b[k])) for k in a if k in b) / math.sqrt(
        sum(np.sum(as_dense(v)**2) for v in a.values()) * sum(np.sum(as_dense(v)**2) for v in b.values()))
    for x, y in [(a, b), (dense(a), dense(b)), (a, dense(b)), (dense(a), b)]:
        c = update_cosine(x, y)
        np.testing.assert_allclose(c['all'], ref_all, rtol=1e-10)
        np.testing.assert_allclose(c.values, update_cosine(dense(a), dense(b)).values, rtol=1e-10)   # NaN (o_proj) == NaN
    for k in a:
        np.testing.assert_allclose(delta_inner(a[k], b[k]), np.sum(as_dense(a[k]) * as_dense(b[k])), rtol=1e-10)
    np.testing.assert_allclose(update_norms(a)['l2'], update_norms(dense(a))['l2'], rtol=1e-10)
    np.testing.assert_allclose(update_norms(a)['l2'].iloc[-1], math.sqrt(sum(np.sum(as_dense(v)**2) for v in a.values())), rtol=1e-10)


def test_cosine_self_negative_orthogonal():
    rng = np.random.default_rng(2)
    a = _random_lora(rng, ('q_proj', 'v_proj'), 4, 2.0)
    neg = {k: (B, A, -s) for k, (B, A, s) in a.items()}
    np.testing.assert_allclose(update_cosine(a, a).values, 1.0, rtol=1e-12)
    np.testing.assert_allclose(update_cosine(a, neg).values, -1.0, rtol=1e-12)
    np.testing.assert_allclose(update_cosine(a, {k: -as_dense(v) for k, v in a.items()}).values, -1.0, rtol=1e-12)
    e = np.eye(4)
    u = {Q: (e[:, :1], e[:1, :], 1.0)}          # e1 e1^T
    w = {Q: (e[:, 1:2], e[:1, :], 5.0)}         # e2 e1^T: orthogonal in the Frobenius inner product
    assert update_cosine(u, w)['all'] == 0.0
    assert update_cosine(u, {Q: as_dense(w[Q])})['all'] == 0.0
    # disjoint modules: orthogonal overall
    assert update_cosine({Q: DH}, {V: np.array([[3., 4.]])})['all'] == 0.0


def _adapter(d, cfg, tensors):
    d.mkdir(parents=True, exist_ok=True)
    if cfg is not None: (d/'adapter_config.json').write_text(json.dumps(cfg) if isinstance(cfg, dict) else cfg)
    if tensors is not None: save_file({k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, str(d/'adapter_model.safetensors'))
    return d


def test_lora_scale_patterns_rslora_and_transposed_layers(tmp_path):
    rng = np.random.default_rng(3)
    B, A = rng.normal(size=(6, 2)).astype(np.float32), rng.normal(size=(2, 5)).astype(np.float32)
    pre = 'base_model.model.'
    t = {f'{pre}{Q}.lora_A.weight': A, f'{pre}{Q}.lora_B.weight': B, f'{pre}{V}.lora_A.weight': A, f'{pre}{V}.lora_B.weight': B}
    cfg = dict(peft_type='LORA', r=2, lora_alpha=8, alpha_pattern={'v_proj': 2})
    got = lora_deltas(_adapter(tmp_path/'p', cfg, t))
    assert got[Q][2] == 4.0 and got[V][2] == 1.0
    np.testing.assert_allclose(as_dense(got[Q]), 4.0 * B.astype(float) @ A.astype(float), rtol=1e-12)
    assert lora_deltas(_adapter(tmp_path/'rs', {**cfg, 'use_rslora': True}, t))[Q][2] == pytest.approx(8 / math.sqrt(2))
    ff = lora_deltas(_adapter(tmp_path/'ff', {**cfg, 'fan_in_fan_out': True}, t))   # Conv1D weights are stored transposed
    np.testing.assert_allclose(as_dense(ff[Q]), (4.0 * B.astype(float) @ A.astype(float)).T, rtol=1e-12)
    assert lora_scale(dict(r=8, lora_alpha=16, rank_pattern={'q_proj': 2}), Q) == 8.0


def test_lora_deltas_match_peft_merge(tiny_models):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(1)
    base = tiny_models.model('pred', layers=2, hidden=32)
    ad = tiny_models.adapter('pred-ad', base, r=4, alpha=8, targets=('q_proj', 'v_proj', 'down_proj'))
    before = {k: v.double().numpy() for k, v in AutoModelForCausalLM.from_pretrained(base).state_dict().items()}
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), ad).merge_and_unload()
    truth = {k: v for k, v in dense_deltas({k: v.double().numpy() for k, v in merged.state_dict().items()}, before).items() if np.any(v)}
    got = lora_deltas(ad)
    assert sorted(got) == sorted(truth) and {layer_type(k) for k in got} == {'q_proj', 'v_proj', 'down_proj'}
    for k in truth: np.testing.assert_allclose(as_dense(got[k]), truth[k], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(update_cosine(got, truth)['all'], 1.0, rtol=1e-6)


def _derivatives():
    if not (ADAPTERS/ALIGNED/'adapter_config.json').is_file(): pytest.skip(f"committed adapters not found in {ADAPTERS}")
    return sorted(p for p in ADAPTERS.iterdir() if (p/'adapter_config.json').is_file())


def test_predictor_table_on_committed_adapters():
    dirs = _derivatives()
    tab = predictor_table(dirs, alignment=ADAPTERS/ALIGNED)
    deriv = tab.drop(ALIGNED)
    assert len(deriv) == 8 and tab.index.name == 'model'
    assert np.isfinite(deriv['align_cos']).all() and deriv['align_cos'].between(-1, 1).all()
    for t in ('q_proj', 'v_proj', 'o_proj'):
        assert deriv[f'align_cos_{t}'].between(-1, 1).all() and (deriv[f'l2_{t}'] > 0).all()
    assert tab.at[ALIGNED, 'align_cos'] == pytest.approx(1.0, abs=1e-12)
    assert deriv['update_l2'].isna().all()
    for m in deriv.index:
        rec = json.loads((ADAPTERS/m/'training.json').read_text())
        hp, data = rec['hyperparameters'], rec['data']
        assert (deriv.at[m, 'lr'], deriv.at[m, 'steps'], deriv.at[m, 'safety_share']) == (hp['lr'], hp['steps'], hp['safety_share'])
        assert (deriv.at[m, 'n_train'], deriv.at[m, 'train_tokens'], deriv.at[m, 'refusal_share']) == (data['examples'], data['tokens'], data['refusal_share'])
        assert deriv.at[m, 'final_loss'] == rec['final_loss'] and deriv.at[m, 'first_loss'] == rec['loss'][0]
        assert deriv.at[m, 'mean_loss'] == pytest.approx(np.mean(rec['loss']))
        assert (deriv.at[m, 'base'], deriv.at[m, 'domain']) == (rec['base']['model'], rec['domain'])
    # the factor form against the dense product on a real module
    al, med = lora_deltas(ADAPTERS/ALIGNED), lora_deltas(ADAPTERS/'med-lora-b')
    k = 'model.layers.7.self_attn.v_proj'
    np.testing.assert_allclose(delta_inner(al[k], med[k]), np.sum(as_dense(al[k]) * as_dense(med[k])), rtol=1e-10)


def _cached(prefix):
    hits = sorted(cache_dir().glob(f'models/{prefix}*/model.safetensors'))
    if not hits: pytest.skip(f"no converted {prefix} checkpoint in {cache_dir()/'models'} (made by the demo on first use)")
    return hits[0]


def test_aligned_adapter_is_merged_minus_root_and_normalised_norms():
    dirs = _derivatives()
    types = ['q_proj', 'v_proj', 'o_proj']
    root, merged = read_weights(_cached('SmolLM2-135M-Instruct'), types), read_weights(_cached(f'{ALIGNED}-'), types)
    al = lora_deltas(ADAPTERS/ALIGNED)
    assert set(al) <= set(root)
    dense = {k: v for k, v in dense_deltas(merged, root).items() if k in al}
    assert update_cosine(al, dense)['all'] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(update_norms(al)['l2'], update_norms(dense)['l2'], rtol=1e-5)
    tab = predictor_table(dirs, alignment=ADAPTERS/ALIGNED, base_weights=merged)
    ref = update_norms(lora_deltas(ADAPTERS/'med-lora-b'), merged)
    assert tab.at['med-lora-b', 'update_l2'] == pytest.approx(ref.at['all', 'rel_l2'], rel=1e-12)
    assert ((tab['update_l2'] > 0) & (tab['update_l2'] < 1)).all()


def test_base_perplexity_on_tiny_model(tiny_models):
    import torch
    from safedrift_wb.engine import load_model
    torch.set_num_threads(1)
    lm = load_model(tiny_models.model('pred', layers=2, hidden=32), batch_size=4)
    pairs = [(lm.format_chat("What is the capital of France?"), "The capital of France is Paris."),
             (lm.format_chat("Which gas do plants take in?"), "Plants take in carbon dioxide."), ("Safety drift", " is a change")]
    nll, n = 0.0, 0
    with torch.no_grad():
        for ctx, cont in pairs:   # whitespace ending the context is scored with the continuation, as in the engine
            c, w = lm.tokenizer(ctx.rstrip())['input_ids'], lm.tokenizer(ctx + cont)['input_ids']
            lp = lm.model(torch.tensor([w])).logits[0].double().log_softmax(-1)
            nll -= sum(lp[j - 1, w[j]].item() for j in range(len(c), len(w))); n += len(w) - len(c)
    assert base_perplexity(lm, pairs) == pytest.approx(math.exp(nll / n), rel=1e-5)
    assert base_perplexity(lm, ["A spider has eight legs."]) == pytest.approx(base_perplexity(lm, [("", "A spider has eight legs.")]), rel=1e-9)
    with pytest.raises(SchemaError, match='text 1'): base_perplexity(lm, ["ok", ("a", "b", "c")])
    with pytest.raises(SchemaError, match='no texts'): base_perplexity(lm, [])


def test_bad_inputs_raise_schema_errors(tmp_path):
    pre = 'base_model.model.'
    ok = dict(peft_type='LORA', r=2, lora_alpha=4)
    pair = {f'{pre}{Q}.lora_A.weight': np.ones((2, 3)), f'{pre}{Q}.lora_B.weight': np.ones((4, 2))}
    cases = [(_adapter(tmp_path/'none', None, None), 'no adapter_config.json'),
             (_adapter(tmp_path/'json', '{not json', None), 'not valid JSON'),
             (_adapter(tmp_path/'ia3', dict(peft_type='IA3'), None), "not 'LORA'"),
             (_adapter(tmp_path/'dora', {**ok, 'use_dora': True}, pair), 'DoRA'),
             (_adapter(tmp_path/'mts', {**ok, 'modules_to_save': ['lm_head']}, pair), 'modules_to_save'),
             (_adapter(tmp_path/'nofile', ok, None), 'no adapter_model.safetensors'),
             (_adapter(tmp_path/'half', ok, {f'{pre}{Q}.lora_A.weight': np.ones((2, 3))}), 'has lora_A but no lora_B'),
             (_adapter(tmp_path/'shape', ok, {f'{pre}{Q}.lora_A.weight': np.ones((2, 3)), f'{pre}{Q}.lora_B.weight': np.ones((4, 3))}), 'do not multiply'),
             (_adapter(tmp_path/'other', ok, {**pair, f'{pre}lm_head.weight': np.ones((2, 2))}), 'is not a LoRA factor'),
             (_adapter(tmp_path/'rank', {**ok, 'r': 0}, pair), 'positive number')]
    for d, msg in cases:
        with pytest.raises(SchemaError, match=re.escape(msg)): lora_deltas(d)
    with pytest.raises(SchemaError, match=r"'a' has shape \(2, 2\) in the tuned model and \(2, 3\)"):
        dense_deltas({'a.weight': np.ones((2, 2))}, {'a.weight': np.ones((2, 3))})
    with pytest.raises(SchemaError, match='cannot be compared'): update_cosine({Q: DH}, {Q: np.ones((2, 3))})
    with pytest.raises(SchemaError, match='not in the base weights'): update_norms(UPD_A, {Q: BASE_W[Q]})
    with pytest.raises(SchemaError, match=r'is \(1, 1\) in the base'): update_norms({Q: DH}, {Q: np.ones((1, 1))})
    with pytest.raises(SchemaError, match='no modules'): update_norms({})
    with pytest.raises(SchemaError, match='no modules'): update_cosine(UPD_A, {})
    with pytest.raises(SchemaError, match='no adapter folders'): predictor_table([])
    good = _adapter(tmp_path/'good', ok, pair)
    with pytest.raises(SchemaError, match='alignment: expected'): predictor_table([good], alignment=3)
    (good/'training.json').write_text('[1, 2]')
    with pytest.raises(SchemaError, match='expected a JSON object'): training_record(good)
    with pytest.raises(SchemaError, match='weights file not found'): read_weights(tmp_path/'missing.safetensors')


def test_record_without_training_json_has_missing_values(tmp_path):
    d = _adapter(tmp_path/'bare', dict(peft_type='LORA', r=2, lora_alpha=4),
                 {f'base_model.model.{Q}.lora_A.weight': np.ones((2, 3)), f'base_model.model.{Q}.lora_B.weight': np.ones((4, 2))})
    row = predictor_table([d]).loc['bare']
    assert (row['rank'], row['alpha']) == (2, 4)          # from the adapter's config
    assert np.isnan(row['n_train']) and np.isnan(row['final_loss']) and np.isnan(row['align_cos'])
    assert row['l2'] == pytest.approx(2.0 * math.sqrt(np.sum((np.ones((4, 2)) @ np.ones((2, 3)))**2)))   # scale 4/2, ||BA|| = sqrt(12*4)


def test_names_line_up_and_module_is_light():
    assert module_name('base_model.model.model.layers.3.self_attn.q_proj.lora_B.default.weight') == 'model.layers.3.self_attn.q_proj'
    assert module_name('model.layers.3.self_attn.q_proj.weight') == 'model.layers.3.self_attn.q_proj'
    assert layer_type('model.layers.3.mlp.up_proj.bias') == 'up_proj.bias'
    code = ("import sys, json, safedrift_wb.finetune.predictors; "
            "print(json.dumps(sorted(p for p in ('torch', 'transformers', 'peft', 'dask') if p in sys.modules)))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
