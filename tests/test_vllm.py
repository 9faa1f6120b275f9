"The vLLM backend behind the model protocol: plans name it, keys keep it apart, a CPU says what is missing; parity on a GPU."
import contextlib, io, importlib.util, os
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from safedrift_wb.cli import main
from safedrift_wb.runs import PlanError, model_identity, parse_plan
from conftest import plan_text, tiny_family

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def _plan(base, lora, backend=None):
    raw_models = [{k: str(v) for k, v in m.items()} for m in tiny_family(base, lora)]
    if backend: raw_models = [dict(m, backend=backend) for m in raw_models]
    return raw_models


@pytest.fixture(scope="module")
def fam(tiny_models):
    base = tiny_models.model("base", seed=0)
    return base, tiny_models.adapter("lora", base, seed=1)


def test_plans_name_the_backend_and_keys_keep_it_apart(fam):
    base, lora = fam
    hf = parse_plan({"models": _plan(base, lora), "benchmarks": {"suite": "none", "ids": ["harmful-refusal"]}})
    vl = parse_plan({"models": _plan(base, lora, "vllm"), "benchmarks": {"suite": "none", "ids": ["harmful-refusal"]}})
    assert {m.backend for m in hf.models} == {"hf"} and {m.backend for m in vl.models} == {"vllm"}
    a, b = model_identity(hf.models[0]), model_identity(vl.models[0])
    assert "backend" not in a and b["backend"] == "vllm" and {k: v for k, v in b.items() if k != "backend"} == a
    with pytest.raises(PlanError, match="unknown backend 'tgi'"):
        parse_plan({"models": _plan(base, lora, "tgi"), "benchmarks": {"suite": "none", "ids": ["harmful-refusal"]}})


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here: the missing-package message cannot be shown")
def test_without_vllm_the_unit_fails_with_the_install_hint(fam, tmp_path):
    base, lora = fam
    (tmp_path / "plan.toml").write_text(plan_text(tiny_family(base, lora), benchmarks=["harmful-refusal"], limit=2, max_new_tokens=2))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(["eval", str(tmp_path / "plan.toml"), "-o", str(tmp_path / "run"), "--backend", "vllm", "--no-progress", "--workers", "1"])
    assert rc == 2 and "pip install vllm" in err.getvalue(), err.getvalue()


@pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed (it needs a CUDA GPU): the parity check runs on GPU machines")
def test_vllm_matches_the_engine_on_smollm2():
    import torch
    if not torch.cuda.is_available(): pytest.skip("no CUDA GPU: vLLM cannot run here")
    from safedrift_wb.engine import load_model
    from safedrift_wb.engine.smollm import smollm2_path
    from safedrift_wb.engine.vllm_backend import VLLMModel
    path = smollm2_path()
    ref = load_model(path, dtype="float32", device="cuda")
    vm = VLLMModel(path, dtype="float32", gpu_memory_utilization=0.3)
    prompts = [ref.format_chat(p) for p in ("How do I bake bread?", "What is the capital of France?", "Write a haiku about rain.",
                                             "How can I kill a Python process?")]
    a, b = ref.generate(prompts, max_new_tokens=24), vm.generate(prompts, max_new_tokens=24)
    assert sum(x == y for x, y in zip(a, b)) >= 3, (a, b)       # greedy answers agree (kernels may break a near-tie)
    reqs = [("The capital of France is", " Paris"), ("2 + 2 =", " 4"), ("Question: is the sky blue?\nAnswer:", " yes")]
    for (l1, g1), (l2, g2) in zip(ref.loglikelihood(reqs), vm.loglikelihood(reqs)):
        assert abs(l1 - l2) < 1e-2 and g1 == g2
