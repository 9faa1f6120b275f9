"""Sharded runs: a deterministic cost-balanced assignment, shards side by side in one run directory, their union
equal to the unsharded run unit for unit, `safedrift status`, and `safedrift plan-cost` (tiny local models)."""
import itertools, json, random
import pandas as pd, pytest

from safedrift_wb.cli import main
from safedrift_wb.runs import (evaluate, read_plan, run_lock, assign_shards, model_params, run_status, ModelSpec, plan_cost, throughput)
from conftest import plan_text, tiny_family, assert_same_run, assert_same_cubes

BENCHES = ['harmful-refusal', 'truthfulness-mc1', 'over-refusal']


@pytest.fixture(scope='module')
def family(tmp_path_factory, tiny_models):
    base = tiny_models.model('base', seed=0)
    d = tmp_path_factory.mktemp('shardfam')
    (d/'plan.toml').write_text(plan_text(tiny_family(base, tiny_models.adapter('lora', base, seed=1)), benchmarks=BENCHES, limit=4, max_new_tokens=6))
    return d, base


@pytest.fixture(scope='module')
def serial(family, tmp_path_factory):
    d, _ = family
    out = tmp_path_factory.mktemp('serial')/'run'
    evaluate(read_plan(d/'plan.toml'), out, progress=False)
    return out


def makespan(costs, shards):
    c = dict(zip(zip(costs.model, costs.benchmark), costs.cost))
    return max(sum(c[u] for u in s) for s in shards)


def test_assignment_is_a_partition_within_the_lpt_bound():
    "Every unit in exactly one shard; the slowest shard within Graham's 4/3 - 1/(3n) of the best possible (brute force)."
    rng = random.Random(0)
    for trial in range(40):
        n_models, n = rng.randint(2, 7), rng.randint(2, 3)
        costs = pd.DataFrame([dict(model=f'm{i}', benchmark=f'b{j}', cost=rng.randint(1, 50)) for i in range(n_models) for j in range(2)])
        shards = assign_shards(costs, n)
        units = sorted(u for s in shards for u in s)
        assert units == sorted(zip(costs.model, costs.benchmark))
        if n_models >= n:   # whole models: the bound holds over model totals
            assert all(not ({m for m, _ in a} & {m for m, _ in b}) for a, b in itertools.combinations(shards, 2))
            tot = costs.groupby('model', sort=False).cost.sum().tolist()
            best = min(max(sum(t for t, k in zip(tot, ks) if k == j) for j in range(n)) for ks in itertools.product(range(n), repeat=len(tot)))
            assert makespan(costs, shards) <= (4 / 3 - 1 / (3 * n)) * best + 1e-9, (trial, tot)
        assert assign_shards(costs, n) == shards                        # deterministic
    with pytest.raises(Exception, match='at most 4 shards'): assign_shards(costs.head(4), 5)


def test_model_size_from_config_matches_the_real_parameter_count(tiny_models):
    pytest.importorskip('torch')
    from transformers import AutoModelForCausalLM
    for kw in (dict(), dict(hidden=256, layers=4, model_vocab=16384)):
        d = tiny_models.model('base', seed=0, **kw)
        n, src = model_params(ModelSpec(id='t', path=str(d)))
        real = AutoModelForCausalLM.from_pretrained(d).num_parameters()
        assert src == 'config.json' and abs(n / real - 1) < 0.02, (n, real)


def test_union_of_shards_equals_the_unsharded_run(family, serial, tmp_path, capsys):
    d, _ = family
    for n in (2, 4):   # 2: one model each; 4 > 2 models: single units
        out = tmp_path/f'run{n}'
        for i in range(1, n + 1): assert main(['eval', str(d/'plan.toml'), '-o', str(out), '--shard', f'{i}/{n}', '--no-progress']) == 0
        assert_same_run(serial, out)
        st = run_status(out)
        assert set(st.state) == {'done'} and st.shard.nunique() == n and len(st) == 6
        man = [json.loads((out/'shards'/f'{i}-of-{n}'/'manifest.json').read_text()) for i in range(1, n + 1)]
        assert sorted((u['model'], u['benchmark']) for m in man for u in m['units']) == sorted(zip(st.model, st.benchmark))
        assert main(['cube', str(out), '-o', str(tmp_path/f'c{n}.nc'), '--n-boot', '200']) == 0
    assert main(['cube', str(serial), '-o', str(tmp_path/'c.nc'), '--n-boot', '200']) == 0
    assert_same_cubes(tmp_path/'c.nc', tmp_path/'c2.nc'); assert_same_cubes(tmp_path/'c.nc', tmp_path/'c4.nc')
    # a rerun of a shard is served from the store
    assert main(['eval', str(d/'plan.toml'), '-o', str(tmp_path/'run2'), '--shard', '1/2', '--no-progress']) == 0
    assert 'cached' in capsys.readouterr().out


def test_what_may_not_run_together(family, serial, tmp_path, capsys):
    d, _ = family
    plan = read_plan(d/'plan.toml')
    out = tmp_path/'run'
    (out/'shards'/'1-of-2').mkdir(parents=True)
    with run_lock(out/'shards'/'1-of-2'):                               # shard 1/2 is being evaluated elsewhere
        evaluate(plan, out, progress=False, shard=(2, 2))            # a sibling shard runs beside it
        st = run_status(out)
        assert dict(st.groupby('shard').state.apply(lambda s: s.eq('done').sum())) == {'2/2': 3}
        assert main(['eval', str(d/'plan.toml'), '-o', str(out), '--no-progress']) == 2       # the whole run: no
        assert 'shard 1/2 is being evaluated' in capsys.readouterr().err
        assert main(['eval', str(d/'plan.toml'), '-o', str(out), '--shard', '1/3', '--no-progress']) == 2   # another N: no
    with run_lock(out):
        assert main(['eval', str(d/'plan.toml'), '-o', str(out), '--shard', '1/2', '--no-progress']) == 2
        assert 'the whole run is being evaluated' in capsys.readouterr().err
    for bad, msg in (('3/2', 'between 1 and N'), ('x', 'expected I/N')):
        assert main(['eval', str(d/'plan.toml'), '-o', str(out), '--shard', bad]) == 2 and msg in capsys.readouterr().err
    assert main(['eval', str(d/'plan.toml'), '-o', str(out), '--shard', '1/2', '--workers', '2']) == 2
    assert 'not both' in capsys.readouterr().err


def test_slurm_without_sbatch_is_one_line_and_leaves_the_script(family, tmp_path, monkeypatch, capsys):
    d, _ = family
    monkeypatch.setenv('PATH', str(tmp_path))          # no sbatch here
    assert main(['slurm', str(d/'plan.toml'), '-o', str(tmp_path/'run'), '--array', '2', '--submit']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'sbatch not found' in err
    script = (tmp_path/'run'/'slurm-array-2.sbatch').read_text()
    assert '#SBATCH --array=1-2' in script and '#SBATCH --gpus-per-task=1' in script
    assert main(['slurm', str(d/'plan.toml'), '-o', str(tmp_path/'run'), '--array', '7']) == 2
    assert 'at most 6 shards' in capsys.readouterr().err


def test_status_shows_running_partial_and_failed(family, tmp_path, capsys):
    d, base = family
    plan = read_plan(d/'plan.toml')
    out = tmp_path/'run'
    assert main(['slurm', str(d/'plan.toml'), '-o', str(out), '--array', '2', '--gpus-per-task', '0']) == 0
    assert set(run_status(out).state) == {'todo'}
    evaluate(plan, out, progress=False, shard=(1, 2))
    shard2 = json.loads((out/'shards'/'2-of-2'/'shard.json').read_text())['units']
    (m, b), (m2, b2) = shard2[0], shard2[1]
    u = out/'units'/m/b; u.mkdir(parents=True); (u/'partial.jsonl').write_text('{}\n')
    (out/'shards'/'2-of-2'/'failures.json').write_text(json.dumps([dict(model=m2, benchmark=b2, status='failed', error='boom')]))
    st = run_status(out).set_index(['model', 'benchmark']).state
    assert st[(m, b)] == 'partial' and st[(m2, b2)] == 'failed'
    with run_lock(out/'shards'/'2-of-2'):
        st = run_status(out).set_index(['model', 'benchmark'])
        assert st.state[(m, b)] == 'running' and 'pid' in st.holder[(m, b)]
    assert main(['status', str(out)]) == 0
    text = capsys.readouterr().out
    assert '3 of 6 units done' in text and f'FAILED {m2} / {b2} (shard 2/2): boom' in text
    assert main(['status', str(tmp_path/'nothing')]) == 2


def test_plan_cost(family, capsys):
    d, _ = family
    plan = read_plan(d/'plan.toml')
    df, t = plan_cost(plan, 'cpu')
    assert t['units'] == 6 and t['new_tokens'] == 2 * 2 * 4 * 6        # 2 models x 2 generation benchmarks x 4 items x 6 tokens
    pre, gen, _ = throughput('cpu', df.params.iloc[0])
    expect = sum(df.prompt_tokens / pre + df.new_tokens / gen) + 2 * df.params.iloc[0] * 2 / 1e9
    assert abs(t['gpu_hours'] * 3600 - expect) < 1e-6
    assert main(['plan-cost', str(d/'plan.toml'), '--device', 'a100', '--throughput', '500', '--tasks', '2']) == 0
    out = capsys.readouterr().out
    assert 'wall time with 2 task(s)' in out and '--throughput' in out
    assert main(['plan-cost', str(d/'plan.toml'), '--device', 'tpu9']) == 2
    assert "unknown; choose from cpu" in capsys.readouterr().err
