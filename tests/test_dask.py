"""`safedrift eval --scheduler` against a real Dask cluster: a `dask scheduler` and two `dask worker` processes
(one thread each, no nanny) on localhost, one worker killed mid-run; every unit is stored exactly once and the
cube equals a local run's (tiny local models)."""
import os, signal, socket, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pytest

from safedrift_wb.cli import main
from safedrift_wb.runs import evaluate, read_plan, load_run
from conftest import plan_text, tiny_family, assert_same_run, assert_same_cubes

BENCHES = ['harmful-refusal', 'truthfulness-mc2', 'bias-ambiguity']   # a generation unit first, then two slower log-likelihood units


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def log(msg): print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def until(cond, timeout, what, every=0.1):
    t = time.time()
    while not (got := cond()):
        if time.time() - t > timeout: raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
    return got


@pytest.fixture
def cluster(tmp_path):
    "A Dask scheduler and two single-threaded workers without nannies, each its own process; yields (address, {name: process})."
    pytest.importorskip('distributed')
    dask = Path(sys.executable).parent/'dask'
    if not dask.exists(): pytest.skip(f"the dask command is not installed beside {sys.executable}")
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', HF_HUB_OFFLINE='1')
    addr = f'tcp://127.0.0.1:{free_port()}'
    procs = {}
    def start(name, *args):
        procs[name] = subprocess.Popen([str(dask), *args], env=env, cwd=tmp_path, stdout=open(tmp_path/f'{name}.log', 'w'),
                                       stderr=subprocess.STDOUT, start_new_session=True)
    try:
        start('scheduler', 'scheduler', '--host', '127.0.0.1', '--port', addr.rsplit(':', 1)[1], '--no-dashboard')
        for w in ('w1', 'w2'):
            start(w, 'worker', addr, '--nthreads', '1', '--no-nanny', '--no-dashboard', '--name', w, '--local-directory', str(tmp_path/w))
        from dask.distributed import Client
        with Client(addr, timeout=60) as c: c.wait_for_workers(2, timeout=90)
        yield addr, procs
    finally:
        for p in procs.values():   # the processes this fixture started
            if p.poll() is None: p.kill()
            p.wait(10)


def test_worker_killed_mid_run_nothing_lost_or_duplicated(cluster, tiny_models, tmp_path):
    from dask.distributed import Client
    addr, procs = cluster
    base = tiny_models.model('base', seed=0, hidden=512, layers=6, model_vocab=16384)
    (tmp_path/'plan.toml').write_text(plan_text(tiny_family(base, tiny_models.adapter('lora', base, seed=1)), benchmarks=BENCHES, limit=40, max_new_tokens=8))
    plan, run = read_plan(tmp_path/'plan.toml'), tmp_path/'run'
    units = [(m.id, b.id) for m in plan.models for b in plan.benchmarks]
    stored = lambda: [u for u in units if (run/'units'/u[0]/u[1]/'unit.json').exists()]
    with ThreadPoolExecutor(1) as ex, Client(addr) as c:
        fut = ex.submit(evaluate, plan, run, scheduler=addr, progress=False)
        first = until(stored, 150, 'the first stored unit', every=0.05)[0]
        names = {a: w['name'] for a, w in c.scheduler_info()['workers'].items()}
        victim = next(names[a] for a, keys in c.processing().items() if f'eval-{first[0]}' in map(str, keys))
        procs[victim].send_signal(signal.SIGKILL)
        log(f"first unit stored ({first[0]}/{first[1]}): killed worker {victim} (pid {procs[victim].pid}), which was evaluating {first[0]}")
        before = {u: (run/'units'/u[0]/u[1]/'unit.json').stat().st_mtime_ns for u in stored()}
        assert len(before) < len(units)
        status = fut.result(timeout=180)
    log(f"evaluation ended: {status.groupby(['model', 'status']).size().to_dict()}")
    assert sorted(zip(status.model, status.benchmark)) == sorted(units)             # every unit reported exactly once
    assert set(status.status) <= {'done', 'cached'}
    cached = {(r.model, r.benchmark) for r in status[status.status == 'cached'].itertuples()}
    assert cached == {u for u in before if u[0] == first[0]}    # what the killed worker stored is reused by the one that took over
    assert all((run/'units'/u[0]/u[1]/'unit.json').stat().st_mtime_ns == t for u, t in before.items())   # not computed twice
    assert not list(run.glob('units/*/*/partial.jsonl'))
    items = load_run(run)[0]
    assert not items.duplicated(['model', 'benchmark', 'item', 'metric']).any()
    evaluate(plan, tmp_path/'local', progress=False)
    assert_same_run(tmp_path/'local', run)
    assert main(['cube', str(run), '-o', str(tmp_path/'dask.nc'), '--n-boot', '200']) == 0
    assert main(['cube', str(tmp_path/'local'), '-o', str(tmp_path/'local.nc'), '--n-boot', '200']) == 0
    assert_same_cubes(tmp_path/'local.nc', tmp_path/'dask.nc')
    log('nothing lost or duplicated; cube equals the local run\'s')
