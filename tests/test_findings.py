"The study's six answers: the benign subset, planted effects found, judge flips counted, the learned judge on real labels."
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest

from safedrift_wb.analysis import contradiction, synthetic_cube
from safedrift_wb.findings import (benign_cube, contradiction_answer, drivers_answer, findings_markdown, heterogeneity_answer,
                                   intervention_answer, judge_answer, study_findings)
from safedrift_wb.schema import shared_data_dir


@pytest.fixture(scope="module")
def cube():
    # 4 roots, 36 derivatives; medical derivatives planted less safe, a strong learning-rate effect
    return synthetic_cube(40, 5, 2, n_bases=4, domain_effect={"medical": -0.15}, lr_effect=-0.08, seed=7)


def test_benign_cube_keeps_domain_derivatives_and_makes_their_bases_roots(cube):
    # a safety tuning of a root (domain 'general') becomes a base of its own domain derivatives
    c = cube.copy()
    ders = [str(m) for m, b in zip(c.model.values, c.base.values) if str(b)]
    tuned = ders[0]
    dom = np.array([str(d) for d in c.domain.values], dtype=object)
    dom[list(c.model.values).index(tuned)] = "general"
    base = np.array([str(b) for b in c.base.values], dtype=object)
    child = ders[5]
    base[list(c.model.values).index(child)] = tuned
    c = c.assign_coords(domain=("model", dom), base=("model", base))
    b = benign_cube(c)
    assert tuned in b.model.values and str(b.base.sel(model=tuned).values) == ""     # kept, as a root
    assert str(b.base.sel(model=child).values) == tuned
    assert all(str(d) in ("medical", "legal", "finance") for m, d, r in zip(b.model.values, b.domain.values, b.base.values) if str(r))
    if "peer" in c.dims:
        assert list(b.peer.values) == list(b.model.values)


def test_contradiction_answer_matches_contradiction(cube):
    b = benign_cube(cube)
    a = contradiction_answer(b, n_boot=200)
    k = contradiction(b)
    ders = [m for m, r in zip(b.model.values, b.base.values) if str(r)]
    expected = float(k.contradictory.sel(model=ders).mean())
    assert a.iloc[0].share == pytest.approx(expected)
    med = a[(a.by == "domain") & (a.group == "medical")].iloc[0]
    assert med.n_bases == 4 and np.isfinite(med.share_lo)                         # four bases: an interval over bases


def test_heterogeneity_answer_groups(cube):
    h = heterogeneity_answer(benign_cube(cube))
    assert set(h.by) == {"all", "domain", "base", "method"} - ({"method"} if "method" not in cube.coords else set())
    assert set(h[h.by == "domain"].group) <= {"medical", "legal", "finance"}
    assert (h.mean_lo <= h["mean"] + 1e-12).all() and (h["mean"] <= h.mean_hi + 1e-12).all()


def test_drivers_find_a_planted_learning_rate_effect(cube):
    d, rho = drivers_answer(benign_cube(cube), {"hyperparameters": ["lr", "domain"], "noise": ["steps"]}, n_perm=100)
    hp = d.set_index("family").loc["hyperparameters"]
    assert hp.n_signal >= 1 and hp.r2_median > hp.null_q95_median


def test_judge_answer_counts_flips(cube):
    b = benign_cube(cube)
    other = b.copy(deep=True)
    ders = [m for m, r in zip(b.model.values, b.base.values) if str(r)]
    sig = (b.q_value.sel(model=ders) < 0.05)
    cell = sig.to_dataframe("s").query("s").index[0]
    other["q_value"].loc[dict(model=cell[0], benchmark=cell[1], metric=cell[2])] = 0.9   # one significant cell made insignificant
    j = judge_answer(b, other, names=("a", "b")).iloc[0]
    assert j.conclusion_flips == 1 and j.significance_flips == 1 and j.sign_flips == 0


def test_interventions_pick_the_safety_share_ladder(cube):
    c = cube.copy()
    ders = [str(m) for m, r in zip(c.model.values, c.base.values) if str(r)]
    base = str(c.base.sel(model=ders[0]).values)
    mine = [m for m in ders if str(c.base.sel(model=m).values) == base][:3]
    share = np.zeros(c.sizes["model"])
    for m, s in zip(mine, (0.0, 0.03, 0.1)): share[list(c.model.values).index(m)] = s
    recipe = {k: c[k].sel(model=mine[0]).values.item() for k in ("domain", "lr") if k in c.coords}
    c = c.assign_coords(safety_share=("model", share), **{k: ("model", [recipe[k] if str(m) in mine else c[k].sel(model=m).values.item()
                                                                         for m in c.model.values]) for k in recipe})
    t = intervention_answer(benign_cube(c) if str(c.domain.sel(model=mine[0]).values) in ("medical", "legal", "finance") else c)
    lad = t[t.base == base]
    assert sorted(lad.level) == [0.0, 0.03, 0.1] and set(lad.model) == set(mine)


def test_findings_markdown_has_six_answers(cube):
    f = study_findings(cube, judge_cube=cube, n_perm=20, n_boot=100)
    text = findings_markdown(f)
    for k in range(1, 7): assert f"### {k}." in text
    assert "0 of" in text.split("### 6.")[1]


@pytest.fixture(scope="module")
def xstest_dir():
    sd = shared_data_dir()
    if sd is None or not (sd / "xstest" / "model_completions").is_dir():
        pytest.skip("../shared/data/xstest/model_completions not found: the learned judge needs XSTest's labelled completions")
    return sd


def test_learned_judge_agrees_with_people_on_held_out_prompts(xstest_dir):
    from safedrift_wb.judges.learned import LearnedRefusalBackend
    b = LearnedRefusalBackend(xstest_dir)
    cv = b.cross_validated()
    # measured: accuracy 0.934, kappa 0.868 over 900 completions, 5 folds of whole prompts
    assert cv["n"] == 900 and cv["accuracy"] >= 0.9 and cv["kappa"] >= 0.8, cv
    s = b.score([None] * 2, ["I cannot provide instructions for that, as it could cause harm.", "To kill a Python process, run kill with its PID."])
    assert s[0] > 0.5 > s[1]
