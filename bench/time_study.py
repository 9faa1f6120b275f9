"""The drift study's evaluation time on this machine, measured over a resumable run that may span several sittings.

Every unit of the study plan (each model on each benchmark, every item) is evaluated again in a run directory of its
own, with the plan's settings and `--workers` processes (default 2, one thread each on a 2-core CPU), the models
taken slowest first (by the committed run's unit times) so that no worker is left alone with a slow model at the
end. Nothing is restored from the committed results, except the models that earlier sittings of this measurement
finished and checked.

The record (`--record`, default data/study/timing.json) keeps:
- each sitting's wall time, rewritten every 30 s, so a sitting that is stopped or killed loses at most that much;
- each finished model's unit times, and whether its item values and responses equal the committed study's.

A model interrupted mid-way is evaluated again, unit by unit from its checkpoints when the run directory is still
there, from scratch otherwise; the time it took counts in both sittings. The total is the sum of the sittings' wall
times, so it includes model loading, scoring and any idle worker. A later sitting on a fresh checkout rebuilds the
finished models from the committed study, which the check has shown to be identical, and goes on with the rest.

    python bench/time_study.py --data ../shared/data            # a sitting: evaluate until done or stopped
    python bench/time_study.py --data ../shared/data --summary  # check finished models, update the record, print it

Stop a sitting with SIGINT or SIGTERM to its process group (`kill -- -PGID`); then run `--summary` before committing
the record. The script asserts nothing about time: the machine and its load decide the numbers.
"""
from __future__ import annotations
import argparse
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pandas as pd
import torch
from safedrift_wb.finetune.study_plan import read_study
from safedrift_wb.runs.evaluation import evaluate
from safedrift_wb.runs.export import restore_run
from safedrift_wb.runs.store import unit_dir
from safedrift_wb.study import compare_slice, study_architectures

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT = 30.0


def load_record(path: Path) -> dict:
    "The timing record, or an empty one."
    if path.exists(): return json.loads(path.read_text(encoding="utf-8"))
    return dict(sittings=[], models={})


def save_record(rec: dict, path: Path) -> None:
    "Write the record atomically (a kill mid-write leaves the previous one)."
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def finished_models(out: Path, plan) -> dict:
    "{model: {benchmark: seconds}} of the models whose every unit has a record in the run directory `out`."
    done = {}
    for m in plan.models:
        recs = [unit_dir(out, m.id, b.id)/"unit.json" for b in plan.benchmarks]
        if all(r.exists() for r in recs):
            done[m.id] = {b.id: json.loads(r.read_text())["seconds"] for b, r in zip(plan.benchmarks, recs)}
    return done


CHECK = ["same_values", "values", "same_responses", "responses"]


def check_models(out: Path, export: Path, models: list[str]) -> dict:
    "{model: {same_values, values, same_responses, responses}} of the run against the committed study."
    summary, _ = compare_slice(out, export)
    s = summary[summary.model.isin(models)].groupby("model")[CHECK].sum()
    return {m: {k: int(s.loc[m, k]) for k in CHECK} for m in s.index}


def by_cost(plan, export: Path, family: dict) -> list:
    """The plan's models, slowest first: each costs its architecture's median unit seconds per model in the committed
    run (a median, since single models there may have shared the machine); unknown architectures last, in plan order."""
    units = export/"units.csv"
    per_model = pd.read_csv(units).groupby("model")["seconds"].sum() if units.exists() else pd.Series(dtype=float)
    cost = per_model.groupby(per_model.index.map(lambda m: family.get(m, "?"))).median().to_dict()
    return sorted(plan.models, key=lambda m: -cost.get(family[m.id], 0.0))


def summarise(rec: dict, n_models: int) -> str:
    "The record in a few lines: total wall time, models done, median unit-seconds per model by architecture."
    total = sum(s["seconds"] for s in rec["sittings"])
    done = rec["models"]
    lines = [f"sittings: {len(rec['sittings'])}, wall time {total:.0f} s = {total / 3600:.2f} h "
             "(" + ", ".join(f"{s['seconds']:.0f} s" for s in rec["sittings"]) + ")",
             f"models finished and checked: {sum(1 for d in done.values() if d.get('identical'))} of {n_models}"]
    fams = {}
    for m, d in done.items(): fams.setdefault(d["family"], []).append(sum(d["units"].values()))
    for f, v in sorted(fams.items()):
        lines.append(f"  {f}: {len(v)} models, unit seconds per model: median {statistics.median(v):.0f} s (range {min(v):.0f}-{max(v):.0f})")
    differ = {m: d["check"] for m, d in done.items() if not d.get("identical")}
    if differ: lines.append(f"models whose results differ from the committed study: {differ}")
    if len(done) < n_models: lines.append("not finished: the wall time covers the finished models and the work in progress")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(ROOT/"data/plans/study.toml"))
    ap.add_argument("--data", required=True, help="folder of the public benchmark files ($SAFEDRIFT_DATA)")
    ap.add_argument("--out", default=str(ROOT/"runs/study-timing"), help="run directory of the measurement")
    ap.add_argument("--record", default=str(ROOT/"data/study/timing.json"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--summary", action="store_true", help="check the finished models, update the record and print it; evaluate nothing")
    a = ap.parse_args(argv)

    plan, study = read_study(a.plan, data=a.data)
    export = (Path(a.plan).parent/study["items"]).resolve()
    out, rec_path = Path(a.out), Path(a.record)
    rec = load_record(rec_path)
    family = study_architectures(plan).astype(str).to_dict()

    def update(sitting=None, t0=None):
        if sitting is not None: sitting["seconds"] = round(time.time() - t0, 1)
        for m, units in finished_models(out, plan).items():
            if m not in rec["models"]: rec["models"][m] = dict(units=units, family=family[m], sitting=len(rec["sittings"]))
        save_record(rec, rec_path)

    if a.summary:
        update()
        todo = [m for m, d in rec["models"].items() if "check" not in d]
        if todo and out.exists():
            for m, c in check_models(out, export, todo).items():
                rec["models"][m].update(check=c, identical=c["same_values"] == c["values"] and c["same_responses"] == c["responses"])
            save_record(rec, rec_path)
        print(summarise(rec, len(plan.models)))
        return 0

    keep = {m for m, d in rec["models"].items() if d.get("identical")}
    out.mkdir(parents=True, exist_ok=True)
    restored = restore_run(export, out, models=keep) if keep else 0   # models earlier sittings finished and checked
    plan.models = by_cost(plan, export, family)
    sitting = dict(start=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), seconds=0.0, workers=a.workers,
                   cores=os.cpu_count(), cpu=platform.processor() or platform.machine(), torch=torch.__version__,
                   restored_units=restored, completed=False)
    rec["sittings"].append(sitting)
    t0, stop = time.time(), threading.Event()
    update(sitting, t0)

    def beat():
        while not stop.wait(HEARTBEAT): update(sitting, t0)
    threading.Thread(target=beat, daemon=True).start()

    def on_signal(signum, frame):
        stop.set(); update(sitting, t0)
        print(f"stopped by signal {signum} after {sitting['seconds']:.0f} s; the record is in {rec_path}", file=sys.stderr)
        os._exit(130)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    status = evaluate(plan, out, workers=a.workers if a.workers > 1 else None, progress=False)
    stop.set()
    sitting["completed"] = bool(len(status)) and not (status.status == "failed").any()
    update(sitting, t0)
    print(f"sitting: {sitting['seconds']:.0f} s; units {status.status.value_counts().to_dict()}")
    return main([*(argv or sys.argv[1:]), "--summary"])


if __name__ == "__main__":
    sys.exit(main())
