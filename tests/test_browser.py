"""The walkthrough in a real browser: JupyterLab + headless Chromium (Playwright), run all cells, use an explorer.

Skipped, with the reason, when the Python package `playwright` or a system Chromium is missing (`.ci/run` installs
Chromium with apt; Playwright's own browser downloads are never used). Each check is bounded by
`SAFEDRIFT_BROWSER_TIMEOUT` seconds (default 180); the JupyterLab server is always shut down. Screenshots and the
server's log are kept in `test_artifacts/`.

The check is hermetic: it runs twice in a row under a home folder that another program has left a JupyterLab
workspace in (reopening a file that is gone), a broken kernel of the same name and a server config, and passes
without reading or writing any of them.
"""
import hashlib, importlib.util, json, os
from pathlib import Path
import pytest

root = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location('browser_check', root/'tools'/'browser_check.py')
bc = importlib.util.module_from_spec(spec); spec.loader.exec_module(bc)

why = bc.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"browser test skipped: {why}")


def plant_foreign_jupyter(home:Path) -> dict:
    "What another program leaves in a home folder: a workspace reopening a deleted notebook, a broken python3 kernel, a config."
    missing = 'gone/deleted-notebook.ipynb'
    ws = {'data': {'layout-restorer:data': {'main': {'dock': {'type': 'tab-area', 'currentIndex': 0, 'widgets': [f'notebook:{missing}']},
                                                     'current': f'notebook:{missing}'},
                                            'down': {'size': 0, 'widgets': []}, 'left': {'collapsed': True, 'visible': True, 'widgets': []},
                                            'right': {'collapsed': True, 'visible': True, 'widgets': []}, 'relativeSizes': [0, 1, 0]},
                   f'notebook:{missing}': {'data': {'path': missing, 'factory': 'Notebook'}}},
          'metadata': {'id': 'default', 'last_modified': '2026-01-01T00:00:00+00:00', 'created': '2026-01-01T00:00:00+00:00'}}
    files = {}
    for wid in ('default', 'lab'):
        digest = hashlib.sha256(wid.encode()).hexdigest()[:4]
        files[f'.jupyter/lab/workspaces/{wid}-{digest}.jupyterlab-workspace'] = json.dumps(dict(ws, metadata=dict(ws['metadata'], id=wid)))
    files['.jupyter/jupyter_server_config.json'] = json.dumps({'ServerApp': {'base_url': '/foreign/'},
                                                              'MultiKernelManager': {'default_kernel_name': 'foreign'}})
    files['.jupyter/lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings'] = json.dumps({'autoStartDefaultKernel': False})
    for name in ('python3', 'foreign'):
        files[f'.local/share/jupyter/kernels/{name}/kernel.json'] = json.dumps(
            {'argv': ['/nonexistent/python', '-m', 'ipykernel_launcher', '-f', '{connection_file}'], 'display_name': name, 'language': 'python'})
    for rel, text in files.items():
        (home/rel).parent.mkdir(parents=True, exist_ok=True); (home/rel).write_text(text)
    return files


def snapshot(home:Path) -> dict:
    return {str(p.relative_to(home)): p.read_bytes() for top in ('.jupyter', '.local/share/jupyter', '.ipython')
            for p in (home/top).rglob('*') if p.is_file()}


def test_walkthrough_runs_twice_in_browser_despite_a_foreign_jupyter_home(tmp_path, monkeypatch):
    nb = bc.NOTEBOOK
    if not nb.exists(): pytest.fail(f"walkthrough notebook missing: {nb}")
    home = tmp_path/'home'
    planted = plant_foreign_jupyter(home)
    before = snapshot(home)
    monkeypatch.setenv('HOME', str(home))
    for v in ('JUPYTER_CONFIG_DIR', 'JUPYTER_DATA_DIR', 'JUPYTER_RUNTIME_DIR', 'JUPYTERLAB_SETTINGS_DIR', 'JUPYTERLAB_WORKSPACES_DIR',
              'IPYTHONDIR', 'JUPYTER_PATH', 'JUPYTER_CONFIG_PATH', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'XDG_RUNTIME_DIR'):
        monkeypatch.delenv(v, raising=False)
    timeout = float(os.environ.get('SAFEDRIFT_BROWSER_TIMEOUT', 180))
    for attempt in range(2):          # twice in a row: the first run leaves nothing that trips the second
        res = bc.run_notebook_in_browser(nb, timeout=timeout, artifacts=root/'test_artifacts', log=lambda *a: None)
        print(attempt, {k: v for k, v in res.items() if k.endswith('_s') or k == 'kernels_started'})
        assert res['kernelspecs'] == ['python3'] and res['kernel'] == 'python3'
        assert res['kernel_argv'] and res['kernel_argv'][0] != '/nonexistent/python', res['kernel_argv']
        assert res['cells_run'] > 5
        before_img, after_img = res['image_before'], res['image_after']
        assert before_img['sha256'] != after_img['sha256'], "the DriftExplorer's figure did not change"
        assert min(before_img['width'], after_img['width'], before_img['height'], after_img['height']) > 50, (before_img, after_img)
        assert res['js_errors'] == []
        for p in res['screenshots']: assert Path(p).stat().st_size > 10_000, p
    assert snapshot(home) == before and len(before) == len(planted)      # the foreign Jupyter folders were not touched
