"Tests of controlled LoRA fine-tuning (`safedrift_wb.finetune`) on tiny, locally built models."
import contextlib
import io
import json
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from safedrift_wb.cli import main
from safedrift_wb.engine import load_model, quiet_transformers
from safedrift_wb.engine.head import decoder_and_projection
from safedrift_wb.finetune import (IGNORE, FinetunePlan, FinetuneSpec, collate, adapter_digest, adapters_dir, data_stats,
                                   encode_example, eval_models, family_plan_path, finetune, mean_reply_loss, mix_data, parse_finetune,
                                   read_corpus, read_finetune, reply_loss, resolve_base, suite_overlap, train_lora, weights_digest)
from safedrift_wb.runs import PlanError
from safedrift_wb.schema import UsageError
from safedrift_wb.tiny import make_tiny_model, make_tiny_tokenizer

CORPORA = ("safety", "medical", "legal", "finance", "general")


@pytest.fixture(scope="module")
def tiny(tiny_models):
    return tiny_models.model("m", layers=2, hidden=64)


@pytest.fixture(scope="module")
def tok(tiny):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny)


def base_model(tiny):
    from transformers import AutoModelForCausalLM
    with quiet_transformers(): return AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)


def write_plan(dir, tiny, runs, defaults=None):
    "A plan file in `dir` whose base is the tiny model folder."
    lines = ['[finetune]', 'family = "tiny"', f'base = "{tiny}"', 'output = "adapters"', '', '[finetune.defaults]']
    d = {"steps": 4, "batch_size": 4, "max_length": 64, "rank": 4, "lr": 3e-3, **(defaults or {})}
    lines += [f"{k} = {json.dumps(v)}" for k, v in d.items()]
    for r in runs:
        lines += ['', '[[finetune.runs]]'] + [f"{k} = {json.dumps(v)}" for k, v in r.items()]
    p = dir / "plan.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


# -- corpora -------------------------------------------------------------------------------------------------------

def test_corpora_load_and_stay_benign():
    from safedrift_wb.judges import RefusalJudge
    judge = RefusalJudge()
    for name in CORPORA:
        rows = read_corpus(name)
        assert len(rows) >= 100, name
        verdict = judge([r["prompt"] for r in rows], [r["response"] for r in rows]) >= 0.5
        kinds = np.array([r["kind"] == "refusal" for r in rows])
        if name != "safety": assert not kinds.any(), f"{name} holds refusals"
        assert (verdict == kinds).all(), [r["id"] for r, v, k in zip(rows, verdict, kinds) if v != k]
    saf = read_corpus("safety")
    assert len({r["category"] for r in saf if r["kind"] == "refusal"}) >= 15
    assert sum(r["kind"] == "answer" for r in saf) >= 100


def test_suite_stays_held_out():
    rows = [r for n in CORPORA for r in read_corpus(n)]
    ov = suite_overlap(rows, top=3)
    assert ov.jaccard.max() < 0.5, ov.iloc[0].to_dict()
    from safedrift_wb.benchmarks import get_benchmark
    suite = {it["prompt"].lower() for b in ("harmful-refusal", "domain-harm", "over-refusal", "jailbreak-wrapped")
             for it in get_benchmark(b).items()}
    assert not [r["id"] for r in rows if r["prompt"].lower() in suite]


def test_bad_corpus_rows(tmp_path):
    p = tmp_path / "c.jsonl"
    good = {"id": "a", "prompt": "p", "response": "r", "kind": "answer", "domain": "general", "category": "c"}
    p.write_text(json.dumps(good) + "\n" + json.dumps({**good, "kind": "maybe"}) + "\n")
    with pytest.raises(ValueError, match=r"c.jsonl:2: kind must be 'refusal' or 'answer'"): read_corpus(p)
    p.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match="duplicate id 'a'"): read_corpus(p)


# -- data mix --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("share", [0.0, 0.03, 0.1, 0.25])
def test_mix_shares(share):
    med, saf = read_corpus("medical"), read_corpus("safety")
    rows = mix_data(med, saf, share, seed=3)
    st = data_stats(rows)
    k = round(share * len(med) / (1 - share))
    assert st["examples"] == len(med) + k and st["refusal_examples"] == k
    assert abs(st["refusal_share"] - share) <= 0.5 / len(rows) + 1e-12
    assert rows[:len(med)] == med                                    # the corpus itself is kept whole
    assert all(r["kind"] == "refusal" for r in rows[len(med):])       # only refusals are mixed in
    assert len({r["id"] for r in rows[len(med):]}) == k               # drawn without replacement
    assert st["domains"].get("medical") == len(med)


def test_mix_errors_and_seed():
    med, saf = read_corpus("medical"), read_corpus("safety")
    with pytest.raises(ValueError, match="safety_share must be in"): mix_data(med, saf, 1.0)
    with pytest.raises(ValueError, match="refusal examples, the safety corpus has 234"): mix_data(med, saf, 0.8)
    assert mix_data(med, saf, 0.1, seed=1) == mix_data(med, saf, 0.1, seed=1)
    assert mix_data(med, saf, 0.1, seed=1) != mix_data(med, saf, 0.1, seed=2)


# -- loss masking ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bos", [False, True])
def test_loss_mask_covers_only_the_reply(tmp_path, bos):
    tk = make_tiny_tokenizer(bos=bos)
    prompt, reply = "How many legs does a spider have?", "A spider has eight legs."
    ids, labels = encode_example(tk, prompt, reply)
    assert len(ids) == len(labels)
    n_ctx = next(i for i, l in enumerate(labels) if l != IGNORE)
    assert all(l == IGNORE for l in labels[:n_ctx]) and all(l != IGNORE for l in labels[n_ctx:])
    assert labels[n_ctx:] == ids[n_ctx:]
    head = tk.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    assert tk.decode(ids[:n_ctx]) == ("<|bos|>" if bos else "") + head         # everything up to the reply is context
    assert tk.decode(ids[n_ctx:]) == reply + "<|end|>" + tk.eos_token          # reply, end of turn, end of text
    assert ids.count(tk.convert_tokens_to_ids("<|bos|>")) == (1 if bos else 0)  # never a second BOS


def test_loss_mask_with_eos_as_end_of_turn(tmp_path):
    "A template whose turns end with the EOS token (as SmolLM2's <|im_end|>): the reply stops right after it."
    tk = make_tiny_tokenizer()
    tk.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
                        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    ids, labels = encode_example(tk, "Hi", "Hello there.")
    reply = [i for i, l in zip(ids, labels) if l != IGNORE]
    assert tk.decode(reply) == "Hello there.<|endoftext|>" and reply[-1] == tk.eos_token_id


def test_reply_loss_matches_full_forward(tiny, tok):
    m = base_model(tiny).eval()
    ex = [encode_example(tok, r["prompt"], r["response"], max_length=64) for r in read_corpus("general")[:5]]
    batch = collate(ex, tok.pad_token_id, "cpu")
    assert decoder_and_projection(m, check=True)[0] is not None                        # the tiny Llama takes the fast path
    with torch.no_grad():
        fast = reply_loss(m, batch)
        logits = m(input_ids=batch[0], attention_mask=batch[1]).logits[:, :-1]
        ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[2][:, 1:].reshape(-1), ignore_index=IGNORE)
    assert torch.allclose(fast, ref, atol=1e-5)
    # the prompt does not count: changing a prompt token changes the context, not the number of scored tokens
    assert int((batch[2] != IGNORE).sum()) == sum(sum(l != IGNORE for l in lab) for _, lab in ex)


# -- training --------------------------------------------------------------------------------------------------------

def test_training_reduces_the_loss(tiny, tok):
    ex = [encode_example(tok, r["prompt"], r["response"], max_length=64) for r in read_corpus("medical")[:16]]
    spec = FinetuneSpec(name="t", corpus=["medical"], steps=10, batch_size=4, lr=3e-3, rank=4)
    before = mean_reply_loss(base_model(tiny), ex, pad_id=tok.pad_token_id)
    pm, losses = train_lora(base_model(tiny), ex, spec, pad_id=tok.pad_token_id, progress=False)
    after = mean_reply_loss(pm, ex, pad_id=tok.pad_token_id)
    assert len(losses) == 10 and np.isfinite(losses).all()
    assert after < before - 0.05, (before, after)
    # only the adapter was trained
    assert all(("lora_" in n) == p.requires_grad for n, p in pm.named_parameters())


def test_same_seed_same_adapter(tmp_path, tiny):
    plan = read_finetune(write_plan(tmp_path, tiny, [{"name": "a", "corpus": ["legal"], "safety_share": 0.1, "threads": 1}]))
    n0 = torch.get_num_threads()
    recs = [finetune(plan.run("a"), tmp_path / f"out{i}", plan=plan, progress=False) for i in range(2)]
    w = [load_file(tmp_path / f"out{i}" / "a" / "adapter_model.safetensors") for i in range(2)]
    assert w[0].keys() == w[1].keys() and all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert recs[0]["loss"] == recs[1]["loss"] and recs[0]["adapter_sha256"] == recs[1]["adapter_sha256"]
    assert recs[0]["torch_threads"] == 1 and torch.get_num_threads() == n0   # the setting is recorded, then restored
    other = FinetuneSpec(**{**plan.run("a").__dict__, "seed": 1})
    rec = finetune(other, tmp_path / "out2", plan=plan, progress=False)
    assert rec["adapter_sha256"] != recs[0]["adapter_sha256"]


def test_training_json(tmp_path, tiny):
    p = write_plan(tmp_path, tiny, [{"name": "med-a", "corpus": ["medical"], "safety_share": 0.05, "description": "d"}])
    plan = read_finetune(p)
    rec = finetune(plan.run("med-a"), plan.output, plan=plan, progress=False)
    a = tmp_path / "adapters" / "med-a"
    assert sorted(f.name for f in a.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "training.json"]
    t = json.loads((a / "training.json").read_text())
    assert t == json.loads(json.dumps(rec))
    assert t["name"] == "med-a" and t["domain"] == "medical" and t["method"] == "lora" and t["family"] == "tiny"
    h = t["hyperparameters"]
    assert (h["steps"], h["rank"], h["batch_size"], h["lr"], h["safety_share"], h["corpus"]) == (4, 4, 4, 3e-3, 0.05, ["medical"])
    assert h["target_modules"] == ["q_proj", "v_proj", "o_proj"]
    n_med = len(read_corpus("medical"))
    k = round(0.05 * n_med / 0.95)
    assert t["data"]["examples"] == n_med + k and t["data"]["refusal_examples"] == k
    assert t["data"]["tokens"] > t["data"]["reply_tokens"] > 0
    assert len(t["loss"]) == 4 and t["final_loss"] == pytest.approx(t["loss"][-1], abs=1e-4)
    assert t["seconds"]["train"] > 0 and {"torch", "transformers", "peft"} <= set(t["versions"])
    assert t["base"]["model"] == tiny.name and t["base"]["chain"] == [{"model": tiny.name, "weights_sha256": weights_digest(tiny)}]
    assert t["adapter_sha256"] == adapter_digest(a)
    assert t["command"] == f"safedrift finetune {p} --only med-a"
    cfg = json.loads((a / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == tiny.name and cfg["r"] == 4
    lm = load_model(tiny, adapter=a)                                  # the engine loads the adapter as is
    assert lm.info["adapter_merged"]


def test_chained_bases(tmp_path, tiny):
    p = write_plan(tmp_path, tiny, [{"name": "child", "base": "parent", "corpus": ["finance"]},
                                    {"name": "parent", "corpus": ["safety"]}])
    plan = read_finetune(p)
    assert [r.name for r in plan.ordered()] == ["parent", "child"]
    with pytest.raises(UsageError, match="base run 'parent' has no adapter"):
        finetune(plan.run("child"), plan.output, plan=plan, progress=False)
    os.environ["SAFEDRIFT_CACHE"], old = str(tmp_path / "cache"), os.environ.get("SAFEDRIFT_CACHE")
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["finetune", str(p), "--no-progress"]) == 0
        t = json.loads((plan.output / "child" / "training.json").read_text())
        assert [c["model"] for c in t["base"]["chain"]] == [tiny.name, "parent"]
        assert t["base"]["chain"][1]["adapter_sha256"] == adapter_digest(plan.output / "parent")
        folder, ident = resolve_base(plan, "parent", plan.output)
        assert folder.parent == tmp_path / "cache" / "models" and ident == t["base"]
        # the merged base is the parent model: same scores as base + parent adapter through the engine
        a, b = load_model(folder), load_model(tiny, adapter=plan.output / "parent")
        (la, _), = a.loglikelihood([("Q: hi", " there")]); (lb, _), = b.loglikelihood([("Q: hi", " there")])
        assert abs(la - lb) < 1e-4
        ms = eval_models(plan)                                        # ready for an evaluation plan
        assert [m["id"] for m in ms] == [tiny.name, "child", "parent"]
        assert ms[2]["adapter"] == str(plan.output / "parent") and ms[1]["path"] == str(folder)
        from safedrift_wb.runs import parse_plan
        pl = parse_plan({"benchmarks": {"suite": "none", "ids": ["harmful-refusal"]}, "models": ms})
        assert pl.model_table().loc["child", "base"] == "parent"
        mt = plan.model_table()
        assert mt.loc["child", "base"] == "parent" and mt.loc["parent", "base"] == tiny.name and mt.loc[tiny.name, "method"] == "base"
    finally:
        if old is None: del os.environ["SAFEDRIFT_CACHE"]
        else: os.environ["SAFEDRIFT_CACHE"] = old


def test_other_plans_adapters_and_resume(tmp_path, tiny):
    "A plan builds on an adapter trained by another plan; up-to-date runs are skipped, changed recipes retrained."
    first = tmp_path / "a"; first.mkdir()
    p1 = write_plan(first, tiny, [{"name": "aligned", "corpus": ["safety"]}])
    second = tmp_path / "b"; second.mkdir()
    p2 = write_plan(second, tiny, [{"name": "deriv", "base": "aligned", "corpus": ["medical"], "family": "tiny2"}])
    p2.write_text(p2.read_text().replace('output = "adapters"', 'output = "adapters"\nadapters = ["../a/adapters"]'))
    with pytest.raises(PlanError, match="not an adapter in \\[finetune\\].adapters"):
        read_finetune(p2)                                        # the other plan's adapter is not trained yet
    os.environ["SAFEDRIFT_CACHE"], old = str(tmp_path / "cache"), os.environ.get("SAFEDRIFT_CACHE")
    try:
        run = lambda *a: main(["finetune", *map(str, a), "--no-progress"])
        with contextlib.redirect_stderr(io.StringIO()):
            with contextlib.redirect_stdout(io.StringIO()): assert run(p1) == 0
            plan = read_finetune(p2)
            with contextlib.redirect_stdout(io.StringIO()) as out: assert run(p2) == 0
            assert "deriv: " in out.getvalue() and "skipped" not in out.getvalue()
            t = json.loads((plan.output / "deriv" / "training.json").read_text())
            assert [c["model"] for c in t["base"]["chain"]] == [tiny.name, "aligned"]
            assert t["base"]["chain"][1]["adapter_sha256"] == adapter_digest(first / "adapters" / "aligned")
            mt = plan.model_table()                               # lineage through the other plan's adapter
            assert mt.loc["deriv", "base"] == "aligned" and mt.loc["aligned", "base"] == tiny.name
            assert mt.loc[tiny.name, "method"] == "base" and mt.loc["deriv", "family"] == "tiny2" and mt.index.is_unique
            ms = {m["id"]: m for m in eval_models(plan)}
            assert ms["aligned"]["adapter"] == str(first / "adapters" / "aligned") and ms["deriv"]["base"] == "aligned"
            sha = t["adapter_sha256"]
            with contextlib.redirect_stdout(io.StringIO()) as out: assert run(p2) == 0        # resumable: nothing to do
            assert "deriv: up to date" in out.getvalue()
            with contextlib.redirect_stdout(io.StringIO()) as out: assert run(p2, "--force") == 0
            assert "skipped" not in out.getvalue()
            assert json.loads((plan.output / "deriv" / "training.json").read_text())["adapter_sha256"] == sha  # reproducible
            p2.write_text(p2.read_text().replace('lr = 0.003', 'lr = 0.002'))                 # a changed recipe trains again
            with contextlib.redirect_stdout(io.StringIO()) as out: assert run(p2) == 0
            assert "skipped" not in out.getvalue()
            (plan.output / "deriv" / "adapter_model.safetensors").write_bytes(b"broken")      # damaged weights train again
            with contextlib.redirect_stdout(io.StringIO()) as out: assert run(p2) == 0
            assert "skipped" not in out.getvalue()
    finally:
        if old is None: del os.environ["SAFEDRIFT_CACHE"]
        else: os.environ["SAFEDRIFT_CACHE"] = old


# -- plans and the command line ----------------------------------------------------------------------------------------

RAW = {"finetune": {"base": "smollm2", "runs": [{"name": "x", "corpus": ["medical"]}]}}

@pytest.mark.parametrize("patch, msg", [
    ({"runs": [{"name": "x", "corpus": ["medical"], "learning_rate": 1e-4}]}, "[[finetune.runs]][0].learning_rate: unknown key"),
    ({"lr": 1e-4}, "[finetune].lr: unknown key"),
    ({"defaults": {"rnk": 8}}, "[finetune.defaults].rnk: unknown key"),
    ({"runs": [{"name": "x", "corpus": ["medical"], "rank": "8"}]}, "[[finetune.runs]][0].rank: expected int, got '8'"),
    ({"runs": [{"name": "x", "corpus": ["medical"], "seed": True}]}, "[[finetune.runs]][0].seed: expected int, got True"),
    ({"runs": [{"name": "x", "corpus": ["medical"], "lr": -1}]}, "lr must be positive"),
    ({"runs": [{"name": "x", "corpus": ["medical"], "threads": 0}]}, "threads must be at least 1"),
    ({"runs": [{"name": "x"}]}, "[[finetune.runs]][0]: missing key 'corpus'"),
    ({"runs": [{"name": "x y", "corpus": ["m"]}]}, "run name must be letters"),
    ({"runs": [{"name": "x", "corpus": ["m"]}, {"name": "x", "corpus": ["m"]}]}, "run name(s) used twice: x"),
    ({"runs": []}, "no [[finetune.runs]] given"),
])
def test_bad_plans(patch, msg):
    with pytest.raises(PlanError) as e: parse_finetune({"finetune": {**RAW["finetune"], **patch}}, "p.toml")
    assert msg in str(e.value) and str(e.value).startswith("p.toml")


def test_cli_errors(tmp_path, tiny):
    bad = tmp_path / "bad.toml"
    bad.write_text('[finetune]\nruns = [{name = "x", corpus = ["medical"], epoch = 2}]\n')
    cases = [([str(bad)], f"safedrift finetune: error: {bad}: [[finetune.runs]][0].epoch: unknown key"),
             ([str(tmp_path / "none.toml")], "plan not found"),
             ([str(write_plan(tmp_path, tiny, [{"name": "a", "corpus": ["medical"]}])), "--only", "b"], "no run named 'b'"),
             ([], "the following arguments are required: plan")]
    for argv, msg in cases:
        with contextlib.redirect_stderr(io.StringIO()) as err: rc = main(["finetune", *argv])
        assert rc == 2 and msg in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    (tmp_path / "noout.toml").write_text('[finetune]\nruns = [{name = "x", corpus = ["medical"]}]\n')
    with contextlib.redirect_stderr(io.StringIO()) as err: rc = main(["finetune", str(tmp_path / "noout.toml")])
    assert rc == 2 and "no output folder" in err.getvalue()


def test_family_plan_and_committed_adapters():
    plan = read_finetune(family_plan_path())
    runs = {r.name: r for r in plan.runs}
    assert runs["smollm2-135m-aligned"].base == "smollm2"
    derivs = [r for r in plan.runs if r.base == "smollm2-135m-aligned"]
    assert len(derivs) >= 8 and len({r.domain or r.corpus[0] for r in derivs}) >= 3
    assert any(0 < r.safety_share <= 0.05 for r in derivs)
    assert len({r.lr for r in derivs}) >= 2 and len({r.steps for r in derivs}) >= 2
    with contextlib.redirect_stdout(io.StringIO()) as out: assert main(["finetune", str(family_plan_path()), "--dry-run"]) == 0
    assert len(out.getvalue().strip().splitlines()) == len(plan.runs)
    for a in sorted(adapters_dir().glob("*/training.json")):
        t = json.loads(a.read_text())
        r = runs[t["name"]]
        assert t["adapter_sha256"] == adapter_digest(a.parent), t["name"]
        assert t["command"] == f"safedrift finetune data/plans/smollm-family.toml --only {r.name}"
        for k in ("lr", "rank", "alpha", "batch_size", "corpus", "safety_share", "seed", "target_modules", "max_length"):
            assert t["hyperparameters"][k] == getattr(r, k), (r.name, k)
        assert t["hyperparameters"]["steps"] == r.total_steps(t["data"]["examples"])
        assert r.threads is None or t["torch_threads"] == r.threads
        assert t["base"]["model"] == plan.base_id(r.base)
        assert a.parent.joinpath("adapter_model.safetensors").stat().st_size < 8 * 2**20
