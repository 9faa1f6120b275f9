"""The walkthrough in a real browser: JupyterLab + headless Chromium (Playwright), run all cells, use an explorer.

Skipped, with the reason, when the Python package `playwright` or a system Chromium is missing (`.ci/run` installs
Chromium with apt; Playwright's own browser downloads are never used). The whole check is bounded by
`SAFEDRIFT_BROWSER_TIMEOUT` seconds (default 180); the JupyterLab server is always shut down. Screenshots and the
server's log are kept in `test_artifacts/`.
"""
import importlib.util, os
from pathlib import Path
import pytest

root = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location('browser_check', root/'tools'/'browser_check.py')
bc = importlib.util.module_from_spec(spec); spec.loader.exec_module(bc)

why = bc.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"browser test skipped: {why}")

def test_walkthrough_runs_and_explorer_redraws_in_browser():
    nb = bc.NOTEBOOK
    if not nb.exists(): pytest.fail(f"walkthrough notebook missing: {nb}")
    timeout = float(os.environ.get('SAFEDRIFT_BROWSER_TIMEOUT', 180))
    res = bc.run_notebook_in_browser(nb, timeout=timeout, artifacts=root/'test_artifacts', log=lambda *a: None)
    print({k: v for k, v in res.items() if k.endswith('_s')})
    assert res['cells_run'] > 5
    before, after = res['image_before'], res['image_after']
    assert before['sha256'] != after['sha256'], "the DriftExplorer's figure did not change"
    assert min(before['width'], after['width'], before['height'], after['height']) > 50, (before, after)
    assert res['js_errors'] == []
    for p in res['screenshots']: assert Path(p).stat().st_size > 10_000, p
