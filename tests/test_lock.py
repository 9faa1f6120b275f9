"""One writer per run: the run lock, two concurrent evaluations of one run directory, and kill -9 during a
2-worker evaluation followed by a resume (tiny local models)."""
import json, os, random, shutil, signal, socket, subprocess, sys, threading, time
from pathlib import Path
import numpy as np, pandas as pd, pytest

from safedrift_wb.common.errors import UsageError
from safedrift_wb.runs import evaluate, read_plan
from safedrift_wb.runs.lock import LOCK_FILE, lock_holder, pid_alive, run_lock
from conftest import plan_text, tiny_family

BENCHES = ['harmful-refusal', 'truthfulness-mc1']     # one generation and one log-likelihood benchmark

# an evaluation in its own process: python ev.py PLAN RUN_DIR WORKERS wait|nowait; prints its status records
EVAL = '''
import json, sys
from safedrift_wb.runs import evaluate, read_plan
if __name__ == '__main__':
    plan, out, workers, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == 'wait'
    st = evaluate(read_plan(plan), out, workers=workers or None, progress=False, wait=wait)
    print('STATUS ' + json.dumps(st[['model', 'benchmark', 'status']].to_dict('records')), flush=True)
'''

# holds the run lock of argv[1] until killed
HOLD = ("import sys, time\nfrom safedrift_wb.runs.lock import run_lock\n"
        "with run_lock(sys.argv[1]): print('held', flush=True); time.sleep(600)")


@pytest.fixture(scope='module')
def family(tmp_path_factory, tiny_models):
    base = tiny_models.model('base', seed=0)
    return tmp_path_factory.mktemp('lockfam'), base, tiny_models.adapter('lora', base, seed=1)


def write_plan(d, base, lora, *, limit, name, max_new_tokens=6, benchmarks=BENCHES):
    (d/name).write_text(plan_text(tiny_family(base, lora), benchmarks=benchmarks, limit=limit, max_new_tokens=max_new_tokens))
    return d/name


def start_eval(script, plan, run, *, workers=0, wait=False, log=None):
    "An evaluation in a new process group (so that kill -9 can take it down with its workers)."
    out = open(log, 'w') if log else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, str(script), str(plan), str(run), str(workers), 'wait' if wait else 'nowait'],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=Path(script).parent)
    finally:
        if log: out.close()


def statuses(log:Path) -> list[dict]:
    lines = [l for l in log.read_text().splitlines() if l.startswith('STATUS ')]
    assert len(lines) == 1, log.read_text()[-3000:]
    return json.loads(lines[0].removeprefix('STATUS '))


def until(cond, timeout, what):
    t = time.time()
    while not cond():
        if time.time() - t > timeout: raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def children(pid:int) -> list[int]:
    "Process ids whose parent is `pid` (Linux /proc)."
    out = []
    for p in Path('/proc').iterdir():
        if not p.name.isdigit(): continue
        try: ppid = int((p/'stat').read_text().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError): continue
        if ppid == pid: out.append(int(p.name))
    return out


def units_of(d:Path) -> list:
    return sorted(str(p.parent.relative_to(d)) for p in d.glob('units/*/*/unit.json'))


def assert_same_results(run:Path, ref:Path):
    "Every unit of `ref` in `run`, each item once, the same values (log-likelihoods within 1e-5)."
    assert units_of(run) == units_of(ref) and units_of(ref)
    for u in units_of(ref):
        a, b = pd.read_parquet(run/u/'items.parquet'), pd.read_parquet(ref/u/'items.parquet')
        keys = [c for c in ('item', 'metric', 'judge') if c in b]
        assert not a.duplicated(keys).any(), f"{u}: duplicated item rows"
        a, b = (x.sort_values(keys).reset_index(drop=True) for x in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5, rtol=0)
        ta, tb = (pd.read_parquet(x/u/'transcript.parquet').sort_values('item').reset_index(drop=True) for x in (run, ref))
        assert not ta.item.duplicated().any() and list(ta.item) == list(tb.item), u
        cols = list(tb.columns)
        if 'loglikelihoods' in tb:
            lls = [np.concatenate([json.loads(v) for v in t.loglikelihoods]) for t in (ta, tb)]
            # float32 logits: a sum of a few hundred token log-probabilities (here down to -480) may move by a few
            # units in the 7th digit when a resumed run batches the requests differently
            np.testing.assert_allclose(lls[0], lls[1], atol=1e-5, rtol=1e-7)
            cols.remove('loglikelihoods')
        pd.testing.assert_frame_equal(ta[cols], tb[cols], check_exact=False, atol=1e-5, rtol=0)
        assert json.loads((run/u/'unit.json').read_text())['n_items'] == json.loads((ref/u/'unit.json').read_text())['n_items']


# ---- the lock on its own (no models) ----

def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    with run_lock(tmp_path) as rec:
        assert (rec['pid'], rec['host']) == (os.getpid(), socket.gethostname()) and rec['started']
        assert lock_holder(tmp_path)['pid'] == os.getpid()
        t = time.time()
        with pytest.raises(UsageError) as e:
            with run_lock(tmp_path): pass
        assert time.time() - t < 2
        msg = str(e.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in msg and '\n' not in msg and str(tmp_path) in msg
    assert lock_holder(tmp_path) is None
    rec = json.loads((tmp_path/LOCK_FILE).read_text())
    assert rec['pid'] == os.getpid() and 'released' in rec and 'took_over' not in rec
    with run_lock(tmp_path) as again: assert 'took_over' not in again     # a released lock is not "taken over"


def test_a_writer_can_wait_for_the_holder(tmp_path):
    held, release = threading.Event(), threading.Event()
    def hold():
        with run_lock(tmp_path): held.set(); release.wait(10)
    th = threading.Thread(target=hold); th.start(); held.wait(10)
    try:
        with pytest.raises(UsageError, match=r'after waiting 0\.3 s'):
            with run_lock(tmp_path, wait=0.3): pass
        lines = []
        threading.Timer(0.5, release.set).start()
        t = time.time()
        with run_lock(tmp_path, wait=True, log=lines.append) as rec:
            assert rec['pid'] == os.getpid() and time.time() - t >= 0.4
        assert len(lines) == 1 and lines[0].startswith(f'waiting for run directory {tmp_path}: held by pid {os.getpid()}')
    finally:
        release.set(); th.join()
    for bad in (-1, float('nan'), float('inf')):
        with pytest.raises(UsageError, match='wait must be'):
            with run_lock(tmp_path, wait=bad): pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    p = subprocess.Popen([sys.executable, '-c', HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == 'held'
        assert lock_holder(tmp_path)['pid'] == p.pid
        with pytest.raises(UsageError, match=f'pid {p.pid} on host'):
            with run_lock(tmp_path): pass
    finally:
        p.send_signal(signal.SIGKILL); p.wait(); p.stdout.close()
    assert not pid_alive(p.pid) and lock_holder(tmp_path) is None        # the kernel released it with the process
    assert json.loads((tmp_path/LOCK_FILE).read_text())['pid'] == p.pid   # only its record is left
    with run_lock(tmp_path) as rec:
        assert rec['pid'] == os.getpid() and rec['took_over']['pid'] == p.pid
        assert json.loads((tmp_path/LOCK_FILE).read_text())['took_over']['pid'] == p.pid


def test_a_stale_record_or_a_damaged_lock_file_does_not_block(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    (tmp_path/LOCK_FILE).write_text(json.dumps(dict(pid=dead.pid, host=socket.gethostname(), started='2020-01-01T00:00:00Z')))
    assert lock_holder(tmp_path) is None
    with run_lock(tmp_path) as rec: assert rec['took_over']['pid'] == dead.pid
    (tmp_path/LOCK_FILE).write_bytes(b'\xff\x00 not json')
    with run_lock(tmp_path) as rec: assert rec['pid'] == os.getpid() and 'took_over' not in rec
    (tmp_path/LOCK_FILE).unlink(); (tmp_path/LOCK_FILE).mkdir()                   # not a file: one clear line
    with pytest.raises(UsageError, match='cannot lock run directory'):
        with run_lock(tmp_path): pass


# ---- evaluations ----

def test_a_second_safedrift_eval_exits_2_with_one_line(family, tmp_path):
    d, base, lora = family
    plan = write_plan(d, base, lora, limit=2, name='plan_cli_lock.toml')
    run = tmp_path/'run'; run.mkdir()
    exe = shutil.which('safedrift', path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, '-c', 'import sys; from safedrift_wb.cli import main; sys.exit(main(sys.argv[1:]))']
    with run_lock(run):
        r = subprocess.run(cmd + ['eval', str(plan), '-o', str(run), '--no-progress'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in err[0] and 'being written by another evaluation' in err[0]
    assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]                     # nothing else was written


def test_two_concurrent_evaluations_compute_each_unit_once(family, tmp_path):
    d, base, lora = family
    plan = write_plan(d, base, lora, limit=4, name='plan_two_writers.toml')
    run, script = tmp_path/'run', tmp_path/'ev.py'
    run.mkdir(); script.write_text(EVAL)
    logs = [tmp_path/f'writer{i}.log' for i in range(2)]
    with run_lock(run):     # both start while the run is held: they certainly overlap, and both wait
        procs = [start_eval(script, plan, run, wait=True, log=log) for log in logs]
        try: until(lambda: all('waiting for run directory' in log.read_text() for log in logs), 240, 'both writers to wait')
        except AssertionError:
            for p in procs: os.killpg(p.pid, signal.SIGKILL); p.wait()
            raise
    for p in procs: assert p.wait(timeout=600) == 0
    done = {}
    for log in logs:
        for r in statuses(log): done.setdefault((r['model'], r['benchmark']), []).append(r['status'])
    assert len(done) == 4 and all(sorted(s) == ['cached', 'done'] for s in done.values()), done   # each unit computed once
    evaluate(read_plan(plan), tmp_path/'ref', progress=False)
    assert_same_results(run, tmp_path/'ref')
    assert lock_holder(run) is None


def checkpoints(run:Path) -> int:
    "A measure of progress: checkpointed items plus 1000 per finished unit."
    n = 1000 * len(list(run.glob('units/*/*/unit.json')))
    for p in run.glob('units/*/*/partial.jsonl'):
        try: n += p.read_bytes().count(b'\n')
        except OSError: pass
    return n


@pytest.mark.parametrize('kills', [5, pytest.param(20, marks=pytest.mark.skipif(
    not os.environ.get('SAFEDRIFT_SLOW'), reason='the 20-kill version runs with SAFEDRIFT_SLOW=1 (about 3 minutes)'))])
def test_kill_9_during_a_two_worker_evaluation_then_resume(family, tmp_path, kills):
    """kill -9 at random moments (the whole process group, or the evaluating process alone, whose workers must then
    exit by themselves), then resume: no unit lost, none duplicated, results equal to an uninterrupted run."""
    d, base, lora = family
    benches = BENCHES + ['over-refusal']      # all their items: a few seconds of work between start-ups of ~10 s
    plan = write_plan(d, base, lora, limit=60, name=f'plan_kill{kills}.toml', max_new_tokens=24, benchmarks=benches)
    script = tmp_path/'ev.py'; script.write_text(EVAL)
    evaluate(read_plan(plan), tmp_path/'ref', progress=False)
    rng = random.Random(kills)
    n, epoch, log, total = 0, 0, tmp_path/'eval.log', 2 * len(benches)
    stats = dict(mid_work=0, any_time=0, group=0, parent_only=0, units_left=0, epochs=1)   # units_left: kills with work left
    run, holder_killed = tmp_path/'run0', None
    p = None
    try:
        while n < kills:
            if len(units_of(run)) == total:     # the last kill came after the last unit: complete; go on in a fresh directory
                assert_same_results(run, tmp_path/'ref')
                epoch += 1; stats['epochs'] += 1; run, holder_killed = tmp_path/f'run{epoch}', None
            c0, p = checkpoints(run), start_eval(script, plan, run, workers=2, log=log)
            t0, at = time.time(), None
            mid_work = rng.random() < 0.75          # right after a checkpoint, or at any moment (start-up included)
            if not mid_work: at = t0 + rng.uniform(0.3, 12.0)
            while p.poll() is None:
                if at is None and checkpoints(run) > c0: at = time.time() + rng.uniform(0, 0.3)
                if at is not None and time.time() >= at: break
                assert time.time() - t0 < 300, log.read_text()[-3000:]
                time.sleep(0.02)
            if p.poll() is not None:                # it finished before its kill: check it, go on in a fresh directory
                assert p.returncode == 0, log.read_text()[-3000:]
                assert_same_results(run, tmp_path/'ref')
                epoch += 1; stats['epochs'] += 1; run, holder_killed = tmp_path/f'run{epoch}', None
                continue
            kids, left = children(p.pid), len(units_of(run)) < total
            group = rng.random() < 0.5
            if group: os.killpg(p.pid, signal.SIGKILL)
            else: os.kill(p.pid, signal.SIGKILL)
            p.wait(); n += 1
            stats['mid_work' if mid_work else 'any_time'] += 1; stats['group' if group else 'parent_only'] += 1; stats['units_left'] += left
            until(lambda: not any(pid_alive(k) for k in kids), 30, f"the workers {kids} of killed process {p.pid} to exit")
            assert lock_holder(run) is None                              # the kernel released the lock with the process
            rec = json.loads((run/LOCK_FILE).read_text() or '{}') if (run/LOCK_FILE).exists() else {}
            if rec.get('pid') == p.pid and 'released' not in rec: holder_killed = p.pid    # killed while holding it
    finally:                                # a failed assertion leaves no evaluation running
        if p is not None and p.poll() is None: os.killpg(p.pid, signal.SIGKILL); p.wait()
    p = start_eval(script, plan, run, workers=2, log=log)           # resume, uninterrupted
    assert p.wait(timeout=600) == 0, log.read_text()[-3000:]
    st = statuses(log)
    assert {r['status'] for r in st} <= {'done', 'cached'} and len(st) == 2 * len(benches), st
    assert_same_results(run, tmp_path/'ref')
    rec = json.loads((run/LOCK_FILE).read_text())
    assert 'released' in rec and (holder_killed is None or rec['took_over']['pid'] == holder_killed)
    print(stats)
