"""GPU throughput check of safedrift_wb's evaluation core (log-likelihood scoring with MFU; generation against transformers).

On a CUDA machine, in under five minutes and without downloading anything:

1. measures the bf16 matmul peak of the device (torch.matmul of large square matrices, best of several sizes);
2. builds a randomly initialised ~1.1B-parameter Llama (hidden 2048, 16 layers, GQA 32/8 heads, MLP 8192,
   vocabulary 32768) in bf16 directly on the GPU, with a small locally trained tokenizer padded to its vocabulary;
3. scores many 4-choice requests of realistic lengths (contexts 64-1024 tokens, choices 1-32 tokens) with
   `LM.loglikelihood` (batch size "auto") and reports requests/s, tokens/s, achieved TFLOP/s and MFU;
4. generates from 512 prompts (64 new tokens, greedy) with `LM.generate` and with transformers' `generate` on the
   same length-sorted batches of the same size, and prints both rates, their ratio and how many texts are identical
   (with --vllm, also the vLLM backend's).

FLOPs counted are those of the work the engine actually executes, excluding padding: 2 x (decoder parameters)
per processed token (each distinct context once, plus each choice's tokens but its last), causal attention
(4 x layers x hidden per query-key pair), and 2 x hidden x vocab for every position projected onto the
vocabulary. MFU = achieved FLOP/s / measured matmul peak. The run also prints the rate an evaluator without
context sharing would need for the same wall time ("lm-eval-equivalent": 2 x all parameters x (context +
continuation) tokens of every request), which is not an MFU.

    python bench/gpu_check.py                    # CUDA GPU
    python bench/gpu_check.py --device cpu --tiny  # exercises the same code on a tiny model on the CPU

Without CUDA (and without --device cpu) it prints a message and exits with status 0.
"""
from __future__ import annotations
import argparse
import os
import random
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def si(x, unit="FLOP/s"):
    "A rate with an SI prefix: 312.4 TFLOP/s, 5.1 GFLOP/s."
    for k, pre in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(x) >= k:
            return f"{x/k:.1f} {pre}{unit}"
    return f"{x:.0f} {unit}"


def sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, dtype, sizes, seconds=2.0):
    "Best measured FLOP/s of dense square matmuls."
    import torch
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        t0, it = time.perf_counter(), 0
        while True:
            for _ in range(10):
                a @ b
            it += 10
            sync(device)
            if time.perf_counter() - t0 > seconds / len(sizes):
                break
        best = max(best, 2 * n**3 * it / (time.perf_counter() - t0))
        del a, b
    return best


def build_model(tiny, device, dtype, seed=0):
    "A random Llama (about 1.1B parameters, or a tiny one) and a tokenizer covering its vocabulary."
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from safedrift_wb.tiny import make_tiny_tokenizer
    from safedrift_wb.engine import quiet_transformers
    tok = make_tiny_tokenizer(512)
    vocab = 2048 if tiny else 32768
    tok.add_tokens([f"<|reserved_{i}|>" for i in range(vocab - len(tok))])
    if tiny:
        cfg = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    else:
        cfg = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8)
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, tie_word_embeddings=False,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, initializer_range=0.02, **cfg)
    torch.manual_seed(seed)
    with quiet_transformers(), torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    return model, tok


def make_requests(tok, n_items, ctx_range, choice_range, seed=0):
    "4-choice requests with contexts of about ctx_range tokens and choices of about choice_range tokens."
    from safedrift_wb.tiny import TINY_CORPUS
    words = TINY_CORPUS.split()
    per_word = len(tok.encode(" ".join(words))) / len(words)  # tokens per word of this text
    rng = random.Random(seed)
    text = lambda n: " ".join(rng.choice(words) for _ in range(max(1, int(n / per_word))))
    reqs = []
    for i in range(n_items):
        ctx = f"{text(rng.randint(*ctx_range))}\nQuestion {i}:"
        reqs += [(ctx, " " + text(rng.randint(*choice_range))) for _ in range(4)]
    return reqs


def executed_flops(pairs, max_length, n_dec, layers, hidden, vocab):
    "FLOPs of the work the engine does for these (context, continuation) token lists (no padding)."
    contexts, firsts, f = {}, set(), 0.0
    for ctx, cont in pairs:
        keep = max_length + 1 - len(cont)
        ctx = tuple(ctx[-keep:])
        contexts[ctx] = len(ctx)
        if cont:
            firsts.add((ctx, cont[0]))
        k = max(len(cont) - 1, 0)
        L = len(ctx)
        f += 2 * n_dec * k + 4 * layers * hidden * (k * L + k * (k + 1) / 2) + 2 * hidden * vocab * k
    for L in contexts.values():
        f += 2 * n_dec * L + 4 * layers * hidden * L * (L + 1) / 2
    f += 2 * hidden * vocab * len(firsts)
    processed = sum(contexts.values()) + sum(max(len(c) - 1, 0) for _, c in pairs)
    return f, processed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model and workload (to exercise the script)")
    ap.add_argument("--items", type=int, default=None, help="4-choice items (default 2500, tiny 24)")
    ap.add_argument("--ctx", type=int, nargs=2, default=None, help="context length range in tokens")
    ap.add_argument("--choice", type=int, nargs=2, default=(1, 32), help="choice length range in tokens")
    ap.add_argument("--batch-size", default="auto")
    ap.add_argument("--no-generate", action="store_true", help="skip the generation measurement")
    ap.add_argument("--vllm", action="store_true", help="also generate with the vLLM backend (needs vllm installed)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    import torch
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine, nothing to measure "
              "(run `python bench/gpu_check.py --device cpu --tiny` to exercise the script)")
        return 0
    from safedrift_wb.engine import LM, encode_pairs, pick_dtype
    device = torch.device(args.device)
    dtype = pick_dtype("auto", device)
    items = args.items or (24 if args.tiny else 2500)
    ctx_range = tuple(args.ctx or ((32, 128) if args.tiny else (64, 1024)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, dtype {str(dtype).removeprefix('torch.')}, torch {torch.__version__}")

    peak = matmul_peak(device, dtype, (256, 512) if device.type == "cpu" else (4096, 8192, 16384))
    print(f"matmul peak (measured): {si(peak)}")

    t0 = time.perf_counter()
    model, tok = build_model(args.tiny, device, dtype)
    sync(device)
    cfg = model.config
    n_all = sum(p.numel() for p in model.parameters())
    n_dec = sum(p.numel() for p in model.model.layers.parameters())
    print(f"model: random Llama, {n_all/1e6:.1f}M parameters ({n_dec/1e6:.1f}M in decoder layers), hidden "
          f"{cfg.hidden_size}, {cfg.num_hidden_layers} layers, vocab {cfg.vocab_size}; built in {time.perf_counter()-t0:.1f} s")

    bs = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    lm = LM(model, tok, batch_size=bs, max_length=2048)
    reqs = make_requests(tok, items, ctx_range, tuple(args.choice))
    t0 = time.perf_counter()
    pairs = encode_pairs(tok, reqs, prefix_token_id=lm.prefix_token_id)
    t_tok = time.perf_counter() - t0
    flops, processed = executed_flops(pairs, lm.max_length, n_dec, cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size)
    naive_tokens = sum(len(c) + len(x) for c, x in pairs)
    print(f"workload: {len(reqs)} requests ({items} items x 4), {naive_tokens/len(reqs):.0f} tokens per request on "
          f"average, {processed} tokens processed after context sharing; tokenization {t_tok:.2f} s")

    lm.loglikelihood(reqs[:256])  # warm-up (kernels, and the batch size search on a GPU)
    lm.stats.update(forward_calls=0, context_rows=0, continuation_rows=0)
    sync(device)
    t0 = time.perf_counter()
    res = lm.loglikelihood(reqs)
    sync(device)
    dt = time.perf_counter() - t0
    assert len(res) == len(reqs) and all(r == r for r, _ in res), "missing or NaN log-likelihoods"
    achieved = flops / dt
    model_only = flops / max(dt - t_tok, 1e-9)
    print(f"loglikelihood: {dt:.2f} s, {len(reqs)/dt:.0f} requests/s, {processed/dt:.0f} processed tokens/s "
          f"({lm.stats['forward_calls']} forward passes, limits rows/tokens {lm._limits.get('loglikelihood')}, "
          f"{lm.stats['oom_retries']} OOM retries)")
    print(f"achieved: {si(achieved)} executed (linear + attention + projection), "
          f"MFU {100*achieved/peak:.1f}% of measured peak")
    print(f"  without tokenization time ({t_tok:.2f} s): {si(model_only)}, MFU {100*model_only/peak:.1f}%")
    print(f"  lm-eval-equivalent rate (2 x {n_all/1e6:.1f}M parameters x {naive_tokens} tokens, no sharing): "
          f"{si(2*n_all*naive_tokens/dt)}")
    print(f"target MFU >= 40%: {'met' if achieved >= 0.4 * peak else 'NOT met'}"
          + (" (tiny CPU run: not meaningful)" if args.tiny or device.type == "cpu" else ""))

    if not args.no_generate:
        prompts = [f"Question {i}: " + " ".join(random.Random(i).choice(["safety", "model", "drift", "answer"]) for _ in range(40))
                   for i in range(32 if args.tiny else 512)]
        n_new = 16 if args.tiny else 64
        lm.eos_ids = set()  # fixed length, so the token count is known
        lm.generate(prompts[:4], max_new_tokens=4)
        sync(device)
        t0 = time.perf_counter()
        out = lm.generate(prompts, max_new_tokens=n_new)
        sync(device)
        dt = time.perf_counter() - t0
        assert len(out) == len(prompts)
        rows = lm.batch_rows("generate")
        print(f"generate: {len(prompts)} prompts x {n_new} tokens in {dt:.2f} s, {len(prompts)*n_new/dt:.0f} new tokens/s "
              f"(batch limits {lm._limits.get('generate')})")
        # transformers' generate on the same prompts, in the engine's length-sorted batches of the same size
        order = sorted(range(len(prompts)), key=lambda i: (-len(tok(prompts[i])["input_ids"]), i))
        tok.padding_side = "left"
        ref = [None] * len(prompts)
        sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for k in range(0, len(order), rows):
                idx = order[k:k + rows]
                x = tok([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
                y = model.generate(**x, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=tok.pad_token_id)
                for i, row in zip(idx, y[:, x["input_ids"].shape[1]:]): ref[i] = tok.decode(row, skip_special_tokens=True)
        sync(device)
        dt_hf = time.perf_counter() - t0
        same = sum(a == b for a, b in zip(out, ref))
        print(f"transformers generate, same batches ({rows} rows): {dt_hf:.2f} s, {len(prompts)*n_new/dt_hf:.0f} new tokens/s; "
              f"engine / generate speed ratio {dt_hf/dt:.2f}x; identical texts {same}/{len(prompts)}")
        if args.vllm:
            import tempfile
            from safedrift_wb.engine.vllm_backend import VLLMModel
            with tempfile.TemporaryDirectory() as d:
                model.save_pretrained(d); tok.save_pretrained(d)
                vm = VLLMModel(d, dtype=str(dtype).removeprefix("torch."), gpu_memory_utilization=0.5)
                vm.generate(prompts[:4], max_new_tokens=4)
                t0 = time.perf_counter(); vout = vm.generate(prompts, max_new_tokens=n_new); dt_v = time.perf_counter() - t0
            print(f"vLLM {vm.info['vllm_version']}: {dt_v:.2f} s, {len(prompts)*n_new/dt_v:.0f} new tokens/s; "
                  f"engine / vLLM time ratio {dt/dt_v:.2f}; identical texts {sum(a == b for a, b in zip(out, vout))}/{len(prompts)}")
    print(f"total time {time.perf_counter()-t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
