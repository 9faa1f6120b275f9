"""Compare safedrift_wb's evaluation core with lm-evaluation-harness's HF backend and with transformers' generate.

One run, on the CPU in float32, on a model built locally (nothing is downloaded):

1. log-likelihoods of a 4-choice task whose contexts are longer than its choices, scored by lm-eval's `HFLM`
   (run in its own virtual environment through a subprocess) and by `safedrift_wb.engine.LM` at the same batch
   size: per-choice log-likelihoods must agree within 1e-4 and is_greedy flags must match; throughputs are
   printed with their ratio;
2. batched greedy generation: `LM.generate` against `model.generate` at the same batch size, same prompts,
   same length-sorted batches; the texts must agree.

    python bench/bench_engine.py [--lm-eval-python /tmp/lmeval-venv/bin/python] [--batch-size 16]

lm-eval is optional: without it (or when its interpreter fails) the script says so and reports this engine's
numbers only. The lm-eval side re-runs this same file with `--worker`, so it needs no safedrift_wb install.
"""
from __future__ import annotations
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = ("safety drift model language fine tuned base refusal harmful request answer question benchmark item "
         "score paired evaluation tokenizer weights adapter precision template medical code support customer "
         "the a of and to in is that it for on with as was by be this are from at or have an they which").split()


def make_task(n_items: int, ctx_words: tuple[int, int], choice_words: tuple[int, int], seed: int = 0):
    "A synthetic 4-choice task: (context, [4 choices]) with contexts much longer than choices."
    rng = random.Random(seed)
    items = []
    for i in range(n_items):
        shots = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*ctx_words)))
        ctx = f"{shots}\nQuestion {i}: which {rng.choice(WORDS)} is {rng.choice(WORDS)}?\nAnswer:"
        choices = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*choice_words))) for _ in range(4)]
        if i % 2:  # half the items end the context with a space, which lm-eval moves onto the choice
            ctx += " "
        else:
            choices = [" " + c for c in choices]
        items.append((ctx, choices))
    return items


def make_prompts(n: int, seed: int = 1):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) for _ in range(n)]


# ---------------------------------------------------------------------------------------------------------
def worker(args):
    "Runs inside lm-eval's environment: score the requests with HFLM and write results + timing as JSON."
    import torch
    torch.set_num_threads(args.threads)
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    job = json.loads(Path(args.worker).read_text())
    lm = HFLM(pretrained=job["model"], batch_size=job["batch_size"], device="cpu", dtype="float32")

    def inst(reqs):
        return [Instance(request_type="loglikelihood", doc={}, arguments=tuple(r), idx=i) for i, r in enumerate(reqs)]

    lm.loglikelihood(inst(job["requests"][:8]), disable_tqdm=True)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    res = lm.loglikelihood(inst(job["requests"]), disable_tqdm=True)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    import lm_eval
    Path(job["out"]).write_text(json.dumps({"seconds": dt, "cpu": cpu, "results": [[float(a), bool(b)] for a, b in res],
                                            "version": getattr(lm_eval, "__version__", "?")}))


def run_lm_eval(python: str, model_dir: Path, requests, batch_size: int, threads: int, tmp: Path):
    "Results and seconds from lm-eval's HF backend, or (None, reason)."
    if not Path(python).exists():
        return None, f"lm-eval interpreter not found: {python}"
    job = tmp / "job.json"
    out = tmp / "lmeval_out.json"
    job.write_text(json.dumps({"model": str(model_dir), "batch_size": batch_size, "requests": requests, "out": str(out)}))
    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS=str(threads))
    p = subprocess.run([python, __file__, "--worker", str(job), "--threads", str(threads)],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0 or not out.exists():
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return None, "lm-eval run failed: " + " | ".join(tail)
    return json.loads(out.read_text()), None


# ---------------------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm-eval-python", default="/tmp/lmeval-venv/bin/python", help="python of a venv with lm-eval[hf]")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--items", type=int, default=48, help="4-choice items (requests = 4 x items)")
    ap.add_argument("--ctx-words", type=int, nargs=2, default=(60, 120), help="range of context length in words")
    ap.add_argument("--choice-words", type=int, nargs=2, default=(1, 4), help="range of choice length in words")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--model-vocab", type=int, default=16384, help="output vocabulary of the bench model")
    ap.add_argument("--gen-prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--stop", default="<|reserved_12", help="stop string of the second generation run")
    ap.add_argument("--repeats", type=int, default=3, help="timed generation runs (best kept)")
    ap.add_argument("--init-std", type=float, default=0.05, help="spread of the random weights")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads on both sides")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    import torch
    torch.set_num_threads(args.threads)
    from safedrift_wb.engine import load_model, encode_pairs, quiet_transformers
    from safedrift_wb.tiny import make_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    model_dir = make_tiny_model(tmp / "model", hidden=args.hidden, layers=args.layers, heads=8,
                                intermediate=4 * args.hidden, model_vocab=args.model_vocab, max_position=2048,
                                init_std=args.init_std)
    items = make_task(args.items, tuple(args.ctx_words), tuple(args.choice_words))
    requests = [(c, x) for c, xs in items for x in xs]
    lm = load_model(model_dir, dtype="float32", device="cpu", batch_size=args.batch_size)
    pairs = encode_pairs(lm.tokenizer, requests, prefix_token_id=lm.prefix_token_id)
    ctx_tok = sum(len(c) for c, _ in pairs) / len(pairs)
    cont_tok = sum(len(x) for _, x in pairs) / len(pairs)
    n_params = sum(p.numel() for p in lm.model.parameters())
    print(f"model: Llama, {n_params/1e6:.1f}M parameters (hidden {args.hidden}, {args.layers} layers, "
          f"vocab {args.model_vocab}), float32, CPU, {args.threads} thread(s)")
    print(f"task: {args.items} items x 4 choices = {len(requests)} requests; mean context {ctx_tok:.0f} tokens, "
          f"mean choice {cont_tok:.1f} tokens; batch size {args.batch_size}")

    lm.loglikelihood(requests[:8])  # warm-up
    lm.stats["forward_calls"] = 0
    t0, c0 = time.perf_counter(), time.process_time()
    ours = lm.loglikelihood(requests)
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    print(f"safedrift_wb engine : {t_ours:7.2f} s wall, {c_ours:7.2f} s CPU, {len(requests)/c_ours:8.1f} requests per CPU second "
          f"({lm.stats['forward_calls']} forward passes)")

    ref, why = run_lm_eval(args.lm_eval_python, model_dir, requests, args.batch_size, args.threads, tmp)
    if ref is None:
        print(f"lm-evaluation-harness: not compared ({why})")
    else:
        t_ref, c_ref = ref["seconds"], ref["cpu"]
        diffs = [abs(a[0] - b[0]) for a, b in zip(ours, ref["results"])]
        greedy_same = sum(a[1] == b[1] for a, b in zip(ours, ref["results"]))
        print(f"lm-eval {ref['version']} HFLM : {t_ref:7.2f} s wall, {c_ref:7.2f} s CPU, {len(requests)/c_ref:8.1f} requests per CPU second")
        print(f"throughput ratio (engine / lm-eval): {c_ref/c_ours:.2f}x in CPU time, {t_ref/t_ours:.2f}x in wall time")
        print(f"max |log-likelihood difference|: {max(diffs):.2e} over {len(diffs)} choices; "
              f"is_greedy agrees on {greedy_same}/{len(diffs)}")
        assert len(ref["results"]) == len(ours)
        assert max(diffs) < 1e-4, f"log-likelihoods differ from lm-eval by {max(diffs):.2e}"
        assert greedy_same == len(diffs), "is_greedy differs from lm-eval"
        ours_acc = sum(max(range(4), key=lambda k: ours[4*i+k][0]) == max(range(4), key=lambda k: ref["results"][4*i+k][0])
                       for i in range(args.items))
        print(f"argmax choice agrees on {ours_acc}/{args.items} items")

    # ---- generation ---------------------------------------------------------------------------------------
    prompts = make_prompts(args.gen_prompts)
    bs, n_new = args.batch_size, args.max_new_tokens
    tok, model = lm.tokenizer, lm.model
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: (-len(tok.encode(prompts[i])), i))  # the engine's batches

    def hf_generate(stop):
        out = [None] * len(prompts)
        old_side, tok.padding_side = tok.padding_side, "left"
        with quiet_transformers(), torch.inference_mode():
            for s in range(0, len(order), bs):
                idx = order[s:s+bs]
                x = tok([prompts[i] for i in idx], return_tensors="pt", padding=True)
                kw = dict(stop_strings=stop, tokenizer=tok) if stop else {}
                y = model.generate(**x, max_new_tokens=n_new, do_sample=False, pad_token_id=pad, **kw)
                for i, row in zip(idx, y[:, x["input_ids"].shape[1]:]):
                    text = tok.decode(row, skip_special_tokens=True)
                    for st in stop or []:
                        text = text.split(st)[0]
                    out[i] = text
        tok.padding_side = old_side
        return out

    lm.generate(prompts[:2], max_new_tokens=4)  # warm-up
    hf_generate(None)
    for label, stop in (("no stop strings", None), (f"stop={args.stop!r}", [args.stop])):
        t_ours, t_hf = [], []
        for _ in range(args.repeats):  # alternate the two and keep the best CPU time of each (shared machine)
            c0 = time.process_time()
            ours_g = lm.generate(prompts, max_new_tokens=n_new, stop=stop)
            t_ours.append(time.process_time() - c0)
            c0 = time.process_time()
            hf_g = hf_generate(stop)
            t_hf.append(time.process_time() - c0)
        same = sum(a == b for a, b in zip(ours_g, hf_g))
        mean_len = sum(len(tok.encode(t)) for t in ours_g) / len(ours_g)
        print(f"generation, {label} ({len(prompts)} prompts, <= {n_new} new tokens, mean {mean_len:.1f}, batch {bs}): "
              f"engine {min(t_ours):.2f} s, transformers generate {min(t_hf):.2f} s (CPU), ratio {min(t_hf)/min(t_ours):.2f}x; "
              f"identical texts {same}/{len(prompts)}")
        assert same == len(prompts), "greedy generations differ from transformers' generate"
    return 0


if __name__ == "__main__":
    sys.exit(main())
