"""The wheel and the light install: `pip install safedrift_wb` in a fresh virtual environment (no system site packages)
brings the cube, the analyses, the report and the command line on item tables, the embedded suite, the example data and
the adapters, and none of torch, transformers, ipywidgets or JupyterLab. Builds the wheel from a copy of the sources and
installs its light dependencies from the package index (about a minute with a warm pip cache)."""
import json, os, shutil, subprocess, sys, time, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ['torch', 'transformers', 'ipywidgets', 'jupyterlab', 'peft', 'accelerate', 'datasets', 'dask']
SOURCES = ['setup.py', 'settings.ini', 'pyproject.toml', 'MANIFEST.in', 'README.md', 'LICENSE', 'NOTICE', 'safedrift_wb', 'data']
EVAL_HINT = 'needs torch, which the light install leaves out: pip install "safedrift_wb[eval]"'


def _run(cmd, cwd, env=None, check=True, timeout=600):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode: raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def _size(p:Path) -> int: return sum(f.stat().st_size for f in p.rglob('*') if f.is_file() and not f.is_symlink())


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    "The wheel built by `pip wheel --no-deps` from a copy of the sources (the checkout stays untouched)."
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp/'src'; src.mkdir()
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in SOURCES:
        (shutil.copytree if (ROOT/name).is_dir() else shutil.copy2)(ROOT/name, src/name, **({'ignore': ignore} if (ROOT/name).is_dir() else {}))
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', tmp/'dist', '.'], cwd=src)
    whl, = (tmp/'dist').glob('safedrift_wb-*.whl')
    return whl


@pytest.fixture(scope='module')
def light(wheel, tmp_path_factory):
    "(python, environment, work folder, measurements) of a fresh venv holding the wheel and its light dependencies."
    tmp = tmp_path_factory.mktemp('light')
    venv = tmp/'venv'
    t0 = time.time()
    _run([sys.executable, '-m', 'venv', venv], cwd=tmp)
    py = venv/'bin'/'python'
    _run([py, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', wheel], cwd=tmp, timeout=900)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHON', 'VIRTUAL_ENV', 'SAFEDRIFT_'))}
    env.update(PATH=f"{venv/'bin'}:{env.get('PATH', '')}", MPLBACKEND='Agg', HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    pkgs = json.loads(_run([py, '-m', 'pip', 'list', '--format', 'json'], cwd=tmp, env=env).stdout)
    facts = {'install_s': round(time.time() - t0, 1), 'packages': len(pkgs), 'venv_mb': round(_size(venv)/2**20),
             'wheel_mb': round(wheel.stat().st_size/2**20, 1), 'installed': sorted(p['name'].lower() for p in pkgs)}
    out = ROOT/'test_artifacts'; out.mkdir(exist_ok=True)
    (out/'light_install.json').write_text(json.dumps(facts, indent=1))
    work = tmp/'work'; work.mkdir()
    return py, env, work, facts


def test_wheel_carries_the_suite_example_adapters_and_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = ROOT/'data'
    want = [f'safedrift_wb/data/{p.relative_to(data).as_posix()}' for p in
            [*data.glob('suite/*.jsonl'), *data.glob('example/*'), *data.glob('adapters/*/*'), *data.glob('plans/*.toml'),
             *data.glob('results/*.nc'), *data.glob('corpora/*.jsonl')] if '__pycache__' not in p.parts]
    assert len(want) > 40 and [n for n in want if n not in names] == []
    assert {'safedrift_wb/cli.py', 'safedrift_wb/cube.py', 'safedrift_wb/_modidx.py'} <= names
    info = {n.split('/', 1)[1] for n in names if '.dist-info/' in n}
    assert {'licenses/LICENSE', 'licenses/NOTICE', 'METADATA', 'entry_points.txt'} <= info
    assert 'Apache License' in zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('licenses/LICENSE'))).decode()
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]
    assert not [n for n in names if n.startswith('safedrift_wb/data/study/adapters/')]   # the study's adapters stay in the repository
    assert wheel.stat().st_size < 200 * 2**20
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
    assert 'Requires-Python: >=3.11' in meta
    reqs = [l.split(':', 1)[1].strip() for l in meta.splitlines() if l.startswith('Requires-Dist:')]
    base = [r for r in reqs if 'extra ==' not in r]
    assert base and not [r for r in base if r.split('>')[0].split('<')[0].split('=')[0].strip().lower() in HEAVY]
    extras = {l.split(':', 1)[1].strip() for l in meta.splitlines() if l.startswith('Provides-Extra:')}
    assert {'eval', 'lab', 'dist', 'dev', 'all', 'smollm'} <= extras
    assert any(r.startswith('torch') and "extra == \"eval\"" in r for r in reqs)


def test_light_install_leaves_the_heavy_packages_out(light):
    _, _, _, facts = light
    print(f"\nlight install: {facts['packages']} packages, venv {facts['venv_mb']} MB, wheel {facts['wheel_mb']} MB, "
          f"{facts['install_s']} s")
    assert [p for p in HEAVY if p in facts['installed']] == []
    assert {'numpy', 'scipy', 'xarray', 'matplotlib', 'jinja2', 'scikit-learn'} <= set(facts['installed'])


def test_light_install_runs_the_cli_on_an_item_table(light):
    py, env, work, _ = light
    import safedrift_wb
    r = _run(['safedrift', '--version'], cwd=work, env=env)
    assert r.stdout.strip() == f'safedrift {safedrift_wb.__version__}'
    # the example data comes from the installed package, not from a checkout
    ex = Path(_run([py, '-c', 'from safedrift_wb.example import example_dir; print(example_dir())'], cwd=work, env=env).stdout.strip())
    assert 'site-packages' in ex.parts and (ex/'items.parquet').is_file(), ex
    _run(['safedrift', 'cube', ex/'items.parquet', '-o', 'cube.nc', '--n-boot', '200'], cwd=work, env=env)
    summary = _run(['safedrift', 'summary', 'cube.nc'], cwd=work, env=env).stdout
    assert summary.strip()
    _run(['safedrift', 'report', 'cube.nc', '-o', 'report.html'], cwd=work, env=env)
    html = (work/'report.html').read_text(encoding='utf-8')
    assert html.lstrip().lower().startswith('<!doctype html') and len(html) > 10_000
    bench = _run(['safedrift', 'benchmarks'], cwd=work, env=env).stdout
    assert 'harmful-refusal' in bench   # the embedded suite, read from the package data


def test_light_install_analyses_load_without_heavy_packages(light):
    py, env, work, _ = light
    code = ("import sys, json, safedrift_wb.analysis as a, safedrift_wb.cli, safedrift_wb.views.report, safedrift_wb.interop\n"
            "from safedrift_wb.example import load_example\nfrom safedrift_wb.cube import build_cube\n"
            "items, models = load_example(); cube = build_cube(items, models, n_boot=100, seed=0)\n"
            "k = a.contradiction(cube)\n"
            f"print(json.dumps([len(k), sorted(p for p in {HEAVY!r} if p in sys.modules)]))")
    n, loaded = json.loads(_run([py, '-c', code], cwd=work, env=env).stdout.strip().splitlines()[-1])
    assert n > 0 and loaded == []


def test_commands_of_the_eval_extra_say_what_to_install(light):
    py, env, work, _ = light
    for cmd in (['eval', 'plan.toml', '-o', 'run'], ['demo'], ['finetune', 'plan.toml']):
        r = _run(['safedrift', *cmd], cwd=work, env=env, check=False)
        assert (r.returncode, r.stderr.strip()) == (2, f'safedrift {cmd[0]}: {EVAL_HINT}'), (cmd, r.stdout, r.stderr)
    r = _run([py, '-c', 'from safedrift_wb.runs import evaluate'], cwd=work, env=env, check=False)
    assert r.returncode == 1 and 'pip install "safedrift_wb[eval]"' in r.stderr.strip().splitlines()[-1]
