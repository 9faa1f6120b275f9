"""`safedrift slurm` against a real Slurm: munged, slurmctld and slurmd for one localhost node (2 CPUs), a 2-task
job array on tiny models, one task cancelled mid-run and submitted again, and the cube equal to a local run's.
Skipped, with the reason, only where the Slurm and MUNGE daemons are not installed or cannot be started as root."""
import json, os, shutil, socket, subprocess, time
from pathlib import Path
import pytest

from safedrift_wb.cli import main
from safedrift_wb.runs import evaluate, read_plan, run_status
from safedrift_wb.runs.slurm import submit
from conftest import plan_text, tiny_family, assert_same_run, assert_same_cubes

BENCHES = ['harmful-refusal', 'truthfulness-mc2', 'bias-ambiguity']   # a generation unit first, then two slower log-likelihood units
DAEMONS = ('munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'sinfo')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def log(msg): print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def until(cond, timeout, what, every=0.2):
    t = time.time()
    while not (got := cond()):
        if time.time() - t > timeout: raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
    return got


CONF = """ClusterName=sdtest{port}
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort={port}
SlurmdPort={dport}
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.socket
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    "A one-node Slurm cluster on localhost with its own MUNGE daemon, ports and state; yields the environment to reach it."
    missing = [x for x in DAEMONS if shutil.which(x) is None and not Path('/usr/sbin', x).exists()]
    if missing: pytest.skip(f"Slurm/MUNGE not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0: pytest.skip('slurmd must run as root to start jobs; run the tests as root (as CI does)')
    d = tmp_path_factory.mktemp('slurm')
    for sub in ('state', 'spool', 'munge'): (d/sub).mkdir()
    (d/'munge').chmod(0o755)
    (d/'munge.key').write_bytes(os.urandom(1024)); (d/'munge.key').chmod(0o400)
    port = free_port(); dport = free_port()
    (d/'slurm.conf').write_text(CONF.format(d=d, port=port, dport=dport))
    env = dict(os.environ, SLURM_CONF=str(d/'slurm.conf'))
    sbin = lambda x: shutil.which(x) or f'/usr/sbin/{x}'
    pids = [d/'munge'/'munged.pid', d/'slurmctld.pid', d/'slurmd.pid']
    try:
        subprocess.run([sbin('munged'), '--force', f'--socket={d}/munge/munge.socket', f'--key-file={d}/munge.key',
                        f'--log-file={d}/munge/munged.log', f'--pid-file={pids[0]}', f'--seed-file={d}/munge/seed'], check=True, env=env)
        subprocess.run([sbin('slurmctld'), '-f', str(d/'slurm.conf')], check=True, env=env)
        subprocess.run([sbin('slurmd'), '-f', str(d/'slurm.conf'), '-N', 'localhost'], check=True, env=env)
        until(lambda: 'idle' in subprocess.run(['sinfo', '-h', '-o', '%t'], capture_output=True, text=True, env=env).stdout, 60, 'the node to be idle')
        log(f"slurm up: {subprocess.run(['sinfo'], capture_output=True, text=True, env=env).stdout.splitlines()[-1]}")
        yield env
    finally:
        subprocess.run(['scancel', '--full', '-u', 'root'], env=env, capture_output=True)
        time.sleep(1)
        for p in reversed(pids):   # only the daemons this fixture started, by their pid files
            try: os.kill(int(p.read_text().strip()), 15)
            except (OSError, ValueError): pass


def squeue(env, job) -> list[str]:
    r = subprocess.run(['squeue', '-h', '-j', str(job), '-o', '%i %t'], capture_output=True, text=True, env=env)
    return r.stdout.split('\n') if r.stdout.strip() else []


def test_job_array_cancelled_task_resubmitted_cube_equals_local(slurm, tiny_models, tmp_path, monkeypatch, capsys):
    base = tiny_models.model('base', seed=0, hidden=512, layers=6, model_vocab=16384)
    lora = tiny_models.adapter('lora', base, seed=1)
    (tmp_path/'plan.toml').write_text(plan_text(tiny_family(base, lora), benchmarks=BENCHES, limit=40, max_new_tokens=8))
    run = tmp_path/'run'
    for k, v in slurm.items(): monkeypatch.setenv(k, v)
    assert main(['slurm', str(tmp_path/'plan.toml'), '-o', str(run), '--array', '2', '--gpus-per-task', '0', '--time', '00:10:00', '--submit']) == 0
    out = capsys.readouterr().out
    with capsys.disabled(): log('safedrift slurm --submit:\n' + out.strip())
    job = (run/'slurm-jobs.txt').read_text().split()[0]
    shard2 = [tuple(u) for u in json.loads((run/'shards'/'2-of-2'/'shard.json').read_text())['units']]
    done2 = lambda: [u for u in shard2 if (run/'units'/u[0]/u[1]/'unit.json').exists()]
    first = until(done2, 150, "shard 2's first unit", every=0.05)
    subprocess.run(['scancel', f'{job}_2'], check=True, env=slurm)
    with capsys.disabled(): log(f"first unit of shard 2 stored ({first[0][0]}/{first[0][1]}): scancel {job}_2")
    until(lambda: not any(l.startswith(f'{job}_2 ') for l in squeue(slurm, job)), 60, 'task 2 to end')
    st = run_status(run)
    s2 = st[st.shard == '2/2']
    with capsys.disabled(): log(f"after the cancel, shard 2/2: {s2.state.value_counts().to_dict()}")
    assert (s2.state != 'done').any(), 'shard 2 finished before it was cancelled: nothing was resumed'
    assert not (s2.state == 'running').any()                               # its lock went with its process
    before = {u: (run/'units'/u[0]/u[1]/'unit.json').stat().st_mtime_ns for u in done2()}
    job2 = submit(run/'slurm-array-2.sbatch', extra=['--array=2'])
    with capsys.disabled(): log(f"resubmitted shard 2 as job {job2}")
    until(lambda: not squeue(slurm, job) and not squeue(slurm, job2), 150, 'the array to finish')
    st = run_status(run)
    with capsys.disabled(): log(f"all tasks ended: {st.groupby('shard').state.value_counts().to_dict()}")
    assert set(st.state) == {'done'} and len(st) == 6
    assert all((run/'units'/u[0]/u[1]/'unit.json').stat().st_mtime_ns == t for u, t in before.items())   # reused, not recomputed
    log2 = (run/'logs'/'shard-2-of-2.log').read_text()
    assert 'CANCELLED' in log2 and log2.count('shard 2/2: job') == 2 and 'shard 2/2: exit 0' in log2, log2
    assert 'shard 1/2: exit 0' in (run/'logs'/'shard-1-of-2.log').read_text()
    evaluate(read_plan(tmp_path/'plan.toml'), tmp_path/'local', progress=False)
    assert_same_run(tmp_path/'local', run)
    assert main(['cube', str(run), '-o', str(tmp_path/'slurm.nc'), '--n-boot', '200']) == 0
    assert main(['cube', str(tmp_path/'local'), '-o', str(tmp_path/'local.nc'), '--n-boot', '200']) == 0
    assert_same_cubes(tmp_path/'local.nc', tmp_path/'slurm.nc')
    with capsys.disabled(): log('cube of the Slurm run equals the local run\'s')
