"""The package's layout: arrows run downward (no import cycles), no private name is used outside its module, no
module is over 600 lines, imports sit at the top of modules except the heavy optional packages, and the light
layers (the cube and the analyses) load without torch, transformers or ipywidgets."""
import json, subprocess, sys
from collections import defaultdict
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))
from layout import HEAVY, layout  # noqa: E402

L = layout(ROOT/'safedrift_wb')

def test_no_import_cycles():
    assert L.cycles == [], f"import cycles: {L.cycles}"

def test_no_private_names_across_modules():
    assert L.private == [], "private names imported from another module (make them public where they are owned): " + \
        ', '.join(f"{m} imports {n} from {src}" for m, src, n in L.private)

def test_modules_at_most_600_lines():
    big = {m: n for m, n in L.sizes.items() if n > 600}
    assert not big, f"modules over 600 lines: {big}"

def test_imports_at_top_except_heavy_optional_ones():
    bad = [(m, t, line) for m, t, line in L.inner if t.split('.')[0] not in HEAVY]
    assert not bad, "imports inside functions (move them to the top of the module): " + \
        ', '.join(f"{m}:{line} {t}" for m, t, line in bad)

def test_each_heavy_package_imported_lazily_in_one_module():
    where = defaultdict(set)
    for m, t, _ in L.inner: where[t.split('.')[0]].add(m)
    many = {p: sorted(ms) for p, ms in where.items() if len(ms) > 1}
    assert not many, f"heavy packages imported lazily in more than one module: {many}"

# the light layers, and the packages that offer their heavy names lazily (reading a run directory needs no torch)
LIGHT = ['safedrift_wb.common.io', 'safedrift_wb.schema', 'safedrift_wb.stats', 'safedrift_wb.cube', 'safedrift_wb.example',
         'safedrift_wb.benchmarks', 'safedrift_wb.analysis', 'safedrift_wb.interop', 'safedrift_wb.judges',
         'safedrift_wb.runs', 'safedrift_wb.finetune', 'safedrift_wb.interventions', 'safedrift_wb.views.report',
         'safedrift_wb.cli', 'safedrift_wb.common.paths', 'safedrift_wb.common.lazy']

@pytest.mark.parametrize('mod', LIGHT)
def test_light_layers_do_not_load_heavy_packages(mod):
    code = (f"import sys, json, {mod}; "
            "print(json.dumps(sorted(p for p in ('torch', 'transformers', 'ipywidgets', 'jupyterlab', 'peft', 'dask') if p in sys.modules)))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], f"import {mod} loads {out.stdout.strip()}"

def test_the_measure_sees_a_planted_cycle_and_private_import(tmp_path):
    pkg = tmp_path/'pkg'; pkg.mkdir()
    (pkg/'__init__.py').write_text('')
    (pkg/'a.py').write_text('from .b import _hidden\n')
    (pkg/'b.py').write_text('from . import a\ndef f():\n    import json\n')
    got = layout(pkg)
    assert got.cycles == [['pkg.a', 'pkg.b']]
    assert got.private == [('pkg.a', 'pkg.b', '_hidden')]
    assert [t for _, t, _ in got.inner] == ['json']


# the modules of the first, flat layout: each still imports, with the names users imported from it
OLD_PATHS = {'analysis': ['contradiction', 'heterogeneity', 'synthetic_cube'], 'benchmarks': ['get_benchmark', 'default_suite'],
             'cli': ['main', 'read_table', 'read_models', 'ArgumentParser', 'parse', 'format_summary'],
             'cube': ['build_cube', 'bh_qvalues', 'newcombe_interval'], 'demo': ['cli_demo'], 'engine': ['load_model', 'LM', 'cache_dir'],
             'example': ['load_example'], 'explorers': ['DriftExplorer', 'flipped_items'], 'exports': ['drift_card', 'to_tidy'],
             'finetune': ['finetune', 'read_finetune'], 'importers': ['read_lm_eval', 'read_inspect'],
             'interventions': ['interpolate', 'sweep', 'plot_safety_utility'], 'judges': ['RefusalJudge', 'ToxicityJudge'],
             'loaders': ['xstest', 'bbq'], 'plots': ['plot_drift_heatmap', 'drift_table'], 'report': ['write_report'],
             'runs': ['evaluate', 'load_run', 'PlanError', 'read_toml'], 'schema': ['SchemaError', 'validate_items'],
             'smollm': ['smollm2_path'], 'tiny': ['make_tiny_model']}

@pytest.mark.parametrize('mod', sorted(OLD_PATHS))
def test_old_import_paths_still_work(mod):
    import importlib
    m = importlib.import_module(f'safedrift_wb.{mod}')
    assert [n for n in OLD_PATHS[mod] if not hasattr(m, n)] == []
