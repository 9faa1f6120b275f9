"""Open a notebook in a real JupyterLab in headless Chromium, run all its cells, and use a DriftExplorer there.

The check a reader's browser would make: JupyterLab starts on a free local port (token set, no browser of its own,
the notebook copied into a temporary folder), Chromium opens the notebook through
Playwright, runs every cell from the Run menu, waits for the kernel, saves, and then, in the output of the cell that
builds a `DriftExplorer`, selects another option of the `metric` dropdown and waits for the explorer's image to change.
It fails when a cell raised, when the image did not change, when the page logged a JavaScript error, or when a
dialog (such as "Select Kernel") opened.

The server is hermetic: its config, data, runtime, user-settings, workspaces and IPython folders all live in the
temporary folder (`JUPYTER_CONFIG_DIR`, `JUPYTER_DATA_DIR`, `JUPYTER_RUNTIME_DIR`, `--LabApp.user_settings_dir`,
`--LabApp.workspaces_dir`, `IPYTHONDIR`), so nothing in the user's `~/.jupyter`, `~/.local/share/jupyter` or
`~/.ipython` (a saved workspace that reopens a deleted file, a kernel of the same name, a config file) changes what
it does, and it writes nothing there. The notebook opens with its kernel preselected (its `kernelspec`, set to
`python3` when missing, is the server's only kernel and its default), and the cells run only once that kernel has
been idle, and the same, for a few seconds.

    python tools/browser_check.py [NOTEBOOK] [--timeout S] [--artifacts DIR] [--control NAME]

Needs the PyPI package `playwright` (its own browsers are never downloaded: the system's Chromium is used,
`/usr/bin/chromium` or `$CHROMIUM`). Screenshots of the page and of the explorer go to `test_artifacts/`.
"""
import argparse, contextlib, hashlib, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

root = Path(__file__).resolve().parent.parent
NOTEBOOK = root/'nbs'/'tutorials'/'safety_drift_45min.ipynb'
CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                  '--disable-sync', '--no-first-run', '--disable-dev-shm-usage']
# Console messages that are not errors of the page's code: the browser reporting a failed network request. JupyterLab
# asks the server for optional things that a bare server does not have (a favicon, translations, the extension
# manager's listing, saved workspaces), and Chromium logs each 404 as a console error. pageerror events (uncaught
# exceptions) are never ignored.
HARMLESS = [re.compile(p) for p in (r'^Failed to load resource: the server responded with a status of (404|403)',
                                    r'^Failed to load resource: net::ERR_')]

class CheckFailed(AssertionError): pass

def chromium_path():
    "The system's Chromium, or None."
    for p in (os.environ.get('CHROMIUM'), '/usr/bin/chromium', shutil.which('chromium'), shutil.which('chromium-browser')):
        if p and Path(p).is_file() and os.access(p, os.X_OK): return p
    return None

def unavailable():
    "Why the check cannot run here, or None when it can."
    try: import playwright.sync_api  # noqa: F401
    except ImportError: return 'the Python package playwright is not installed (pip install playwright; no browser download needed)'
    if chromium_path() is None: return 'Chromium is not installed (apt-get install chromium), or set CHROMIUM to its path'
    try: import jupyterlab  # noqa: F401
    except ImportError: return 'jupyterlab is not installed'
    return None

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

KERNEL = 'python3'
KERNELSPEC = {'name': KERNEL, 'display_name': 'Python 3 (ipykernel)', 'language': 'python'}
# variables that point Jupyter at folders of the user's (or another program's): never inherited by the server
FOREIGN_ENV = ('JUPYTER_PATH', 'JUPYTER_CONFIG_PATH', 'JUPYTER_PREFER_ENV_PATH', 'JUPYTER_PLATFORM_DIRS', 'JUPYTERLAB_DIR')

def jupyter_dirs(base:Path) -> dict:
    "The folders of a hermetic JupyterLab under `base`, made and filled with its settings and server config."
    d = {k: base/k for k in ('config', 'data', 'runtime', 'lab-settings', 'workspaces', 'ipython')}
    for p in d.values(): p.mkdir(parents=True, exist_ok=True)
    settings = {'apputils-extension/notification': {'fetchNews': 'false', 'checkForUpdates': False}}
    for name, value in settings.items():
        f = d['lab-settings']/'@jupyterlab'/f'{name}.jupyterlab-settings'
        f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(value))
    (d['config']/'jupyter_server_config.json').write_text(json.dumps({
        'MultiKernelManager': {'default_kernel_name': KERNEL},
        'KernelSpecManager': {'ensure_native_kernel': True, 'allowed_kernelspecs': [KERNEL]}}))
    return d

def hermetic_env(env:dict, d:dict) -> dict:
    "`env` with every Jupyter folder pointing into the folders `d` of `jupyter_dirs`."
    env = {k: v for k, v in env.items() if k not in FOREIGN_ENV}
    return dict(env, JUPYTER_CONFIG_DIR=str(d['config']), JUPYTER_DATA_DIR=str(d['data']), JUPYTER_RUNTIME_DIR=str(d['runtime']),
                JUPYTERLAB_SETTINGS_DIR=str(d['lab-settings']), JUPYTERLAB_WORKSPACES_DIR=str(d['workspaces']),
                IPYTHONDIR=str(d['ipython']))

@contextlib.contextmanager
def jupyterlab(folder:Path, env:dict, log:Path, timeout:float=60):
    "A hermetic JupyterLab server on a free port serving `folder`; yields its base URL and token; always stopped after."
    port, token = free_port(), hashlib.sha256(os.urandom(16)).hexdigest()[:32]
    d = jupyter_dirs(folder.parent/'jupyter')
    env = hermetic_env(env, d)
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}', '--port-retries=0',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={folder}', '--ServerApp.open_browser=False',
           '--LabApp.news_url=', '--LabApp.extension_manager=readonly', '--ServerApp.terminals_enabled=False',
           f"--LabApp.user_settings_dir={d['lab-settings']}", f"--LabApp.workspaces_dir={d['workspaces']}",
           f'--MappingKernelManager.default_kernel_name={KERNEL}']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')   # containers and CI often run as root
    out = open(log, 'w')
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        t = time.time()
        while True:
            if proc.poll() is not None: raise CheckFailed(f"JupyterLab exited with status {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2) as r:
                    if r.status == 200: break
            except OSError: pass
            if time.time() - t > timeout: raise CheckFailed(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token
    finally:
        try:   # a clean shutdown stops the kernels too
            req = urllib.request.Request(f'{url}/api/shutdown', method='POST', headers={'Authorization': f'token {token}'})
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=15)
        except Exception: pass
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        out.close()

IMAGE_DIGEST = """async (img) => {
  const r = await fetch(img.src); const b = await r.arrayBuffer();
  const h = await crypto.subtle.digest('SHA-256', b);
  return {src: img.src, bytes: b.byteLength, width: img.naturalWidth, height: img.naturalHeight,
          sha256: [...new Uint8Array(h)].map(x => x.toString(16).padStart(2, '0')).join('')};
}"""

def no_dialog(page, artifacts:Path):
    "Fail when JupyterLab shows a dialog (\"Select Kernel\", a file that cannot be restored, ...): nobody is there to answer it."
    dialogs = page.locator('.jp-Dialog')
    if dialogs.count():
        text = ' '.join((dialogs.first.inner_text() or '').split())[:300]
        page.screenshot(path=str(Path(artifacts)/'browser_dialog.png'))
        raise CheckFailed(f"JupyterLab opened a dialog: {text!r}")

def server_kernel(url, token, name) -> tuple:
    "(kernel id, execution state) of the server's one session of notebook `name`, or (None, None)."
    try:
        with urllib.request.urlopen(f'{url}/api/sessions?token={token}', timeout=5) as r: sessions = json.load(r)
    except OSError: return None, None
    ks = [x['kernel'] for x in sessions if str(x.get('path', '')).endswith(name) and x.get('kernel')]
    return (ks[0]['id'], ks[0].get('execution_state')) if len(ks) == 1 else (None, None)

def wait_for_kernel(page, url, token, name, deadline, artifacts, steady:float=3.0) -> str:
    "Wait, with no dialog in the way, until the notebook's kernel has been the same one and idle for `steady` seconds."
    last, since = None, None
    while True:
        no_dialog(page, artifacts)
        kid, state = server_kernel(url, token, name)
        if kid and state == 'idle' and _kernel_idle(page) == 'idle':
            if kid != last: last, since = kid, time.time()
            elif time.time() - since >= steady: return kid
        else: last = None
        if time.time() > deadline: raise CheckFailed(f'the kernel did not start and settle (session kernel {kid}, {state})')
        page.wait_for_timeout(250)

def _cell_states(page):
    "Input prompts of all code cells: '[ ]:', '[*]:', '[3]:' ..."
    return page.eval_on_selector_all('.jp-Notebook .jp-CodeCell .jp-InputPrompt', 'els => els.map(e => e.textContent.trim())')

def _kernel_idle(page):
    return page.evaluate("""() => { const e = document.querySelector('.jp-Notebook-ExecutionIndicator');
                                     return e ? e.getAttribute('data-status') : null; }""")

def run_notebook_in_browser(notebook:Path=NOTEBOOK, *, timeout:float=180, artifacts:Path=root/'test_artifacts',
                            explorer:str='DriftExplorer(', control:str='metric', log=print) -> dict:
    "Run `notebook` in JupyterLab in headless Chromium and change the explorer's control; returns what was measured."
    from playwright.sync_api import sync_playwright, TimeoutError as PlaywrightTimeout
    why = unavailable()
    if why: raise RuntimeError(why)
    t0 = time.time()
    deadline = t0 + timeout
    left = lambda: max(1.0, deadline - time.time())
    artifacts = Path(artifacts); artifacts.mkdir(parents=True, exist_ok=True)
    res = {'notebook': str(notebook), 'js_errors': [], 'console_ignored': []}
    with tempfile.TemporaryDirectory(prefix='safedrift-browser-') as tmp:
        folder = Path(tmp)/'nbs'; folder.mkdir()
        nb_path = folder/notebook.name
        nb = json.loads(Path(notebook).read_text(encoding='utf-8'))
        if (nb.setdefault('metadata', {}).get('kernelspec') or {}).get('name') != KERNEL:
            nb['metadata']['kernelspec'] = dict(KERNELSPEC)   # a kernel preselected: JupyterLab does not ask for one
        nb_path.write_text(json.dumps(nb), encoding='utf-8')
        env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', HF_DATASETS_OFFLINE='1', PYTHONHASHSEED='0')
        env.pop('MPLBACKEND', None)   # the kernel uses its inline backend, as a reader's would
        server_log = artifacts/'browser_jupyterlab.log'
        with jupyterlab(folder, env, server_log) as (url, token), sync_playwright() as pw:
            res['server_s'] = round(time.time() - t0, 1)
            with urllib.request.urlopen(f'{url}/api/kernelspecs?token={token}', timeout=10) as r: specs = json.load(r)
            res['kernelspecs'], res['kernel_argv'] = sorted(specs['kernelspecs']), specs['kernelspecs'].get(KERNEL, {}).get('spec', {}).get('argv')
            if specs.get('default') != KERNEL or res['kernelspecs'] != [KERNEL]:
                raise CheckFailed(f"the server offers kernels {res['kernelspecs']} (default {specs.get('default')!r}); expected only {KERNEL!r}")
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True)
            try:
                page = browser.new_page(viewport={'width': 1500, 'height': 1700})
                def on_console(m):
                    if m.type != 'error': return
                    (res['console_ignored'] if any(p.search(m.text) for p in HARMLESS) else res['js_errors']).append(f"console: {m.text}")
                page.on('console', on_console)
                page.on('pageerror', lambda e: res['js_errors'].append(f"pageerror: {e}"))
                page.goto(f'{url}/lab/tree/{nb_path.name}?token={token}', timeout=left()*1000)
                page.wait_for_selector('.jp-Notebook .jp-CodeCell', timeout=left()*1000)
                kid = wait_for_kernel(page, url, token, nb_path.name, deadline, artifacts)
                res['open_s'] = round(time.time() - t0, 1)
                log(f"notebook open, kernel idle after {res['open_s']} s")
                t_run = time.time()
                for attempt in range(3):   # Run > Run All Cells, with the notebook focused; retried when nothing starts
                    page.locator('.jp-Notebook .jp-Cell').first.click()
                    page.locator('.lm-MenuBar-itemLabel', has_text=re.compile(r'^Run$')).click()
                    page.locator('.lm-Menu-itemLabel', has_text=re.compile(r'^Run All Cells$')).click()
                    started = False
                    for _ in range(40):
                        page.wait_for_timeout(250)
                        if any(s != '[ ]:' for s in _cell_states(page)): started = True; break
                    if started: break
                    page.keyboard.press('Escape')
                else: raise CheckFailed('Run > Run All Cells did not start the cells')
                idle_since = None
                while True:   # done when nothing is queued or running and the kernel stays idle
                    states = _cell_states(page)
                    busy = any('*' in s for s in states)
                    if not busy and _kernel_idle(page) == 'idle':
                        idle_since = idle_since or time.time()
                        if time.time() - idle_since > 2: break
                    else: idle_since = None
                    if time.time() > deadline:
                        page.screenshot(path=str(artifacts/'browser_timeout.png'))
                        raise CheckFailed(f"running the notebook took more than {timeout:.0f} s (states: {states})")
                    page.wait_for_timeout(500)
                now = server_kernel(url, token, nb_path.name)[0]
                if now != kid: raise CheckFailed(f"the notebook's kernel changed while its cells ran ({kid} -> {now})")
                res['run_all_s'] = round(time.time() - t_run, 1)
                log(f"all cells ran in {res['run_all_s']} s")
                page.keyboard.press('Control+s')
                page.wait_for_timeout(1500)
                no_dialog(page, artifacts)
                saved = json.loads(nb_path.read_text())
                res['kernel'] = saved.get('metadata', {}).get('kernelspec', {}).get('name')
                if res['kernel'] != KERNEL: raise CheckFailed(f"the notebook was saved with kernel {res['kernel']!r}, not {KERNEL!r}")
                code = [c for c in saved['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).strip()]
                errors = [o for c in code for o in c.get('outputs', []) if o.get('output_type') == 'error']
                if errors: raise CheckFailed(f"a cell raised {errors[0]['ename']}: {errors[0]['evalue']}")
                not_run = [''.join(c['source'])[:80] for c in code if c.get('execution_count') is None]
                if not_run: raise CheckFailed(f"{len(not_run)} cell(s) did not run, first: {not_run[0]!r}")
                res['cells_run'] = len(code)
                # the explorer: the first code cell whose source builds it and whose output shows its widget
                cells = page.locator('.jp-Notebook .jp-CodeCell').filter(has_text=explorer).filter(has=page.locator('.widget-image'))
                if cells.count() == 0: raise CheckFailed(f"no cell with {explorer!r} shows an explorer widget")
                cell = cells.first
                cell.scroll_into_view_if_needed()
                img = cell.locator('img.widget-image').first
                img.wait_for(state='visible', timeout=left()*1000)
                page.wait_for_function('img => img.complete && img.naturalWidth > 0', arg=img.element_handle(), timeout=left()*1000)
                before = img.evaluate(IMAGE_DIGEST)
                select = cell.locator('.widget-dropdown').filter(has=page.locator('label', has_text=re.compile(f'^{re.escape(control)}$'))).locator('select')
                if select.count() == 0: raise CheckFailed(f"the explorer has no {control!r} dropdown")
                options = select.first.evaluate('s => [...s.options].map(o => o.textContent)')
                current = select.first.evaluate('s => s.options[s.selectedIndex].textContent')
                t = time.time()
                for choice in [o for o in options if o != current][:4]:   # an option that shows a different view
                    select.first.select_option(label=choice)
                    try:
                        page.wait_for_function('([img, src]) => img.src !== src && img.complete && img.naturalWidth > 0',
                                               arg=[img.element_handle(), before['src']], timeout=min(30.0, left())*1000)
                        break
                    except PlaywrightTimeout:
                        log(f"{control} = {choice!r} left the image as it was; trying another option")
                else: raise CheckFailed(f"the explorer's image did not change for any {control} in {options}")
                after = img.evaluate(IMAGE_DIGEST)
                res['redraw_s'] = round(time.time() - t, 2)
                res.update(control=control, before=current, after=choice, image_before=before, image_after=after)
                log(f"{control}: {current!r} -> {choice!r}; image {before['width']}x{before['height']} -> "
                    f"{after['width']}x{after['height']} in {res['redraw_s']} s")
                page.wait_for_timeout(500)
                cell.screenshot(path=str(artifacts/'browser_drift_explorer.png'))
                page.screenshot(path=str(artifacts/'browser_walkthrough.png'))
                res['screenshots'] = [str(artifacts/'browser_walkthrough.png'), str(artifacts/'browser_drift_explorer.png')]
                if before['sha256'] == after['sha256']: raise CheckFailed(f"the explorer's image did not change after {control} -> {choice!r}")
            finally:
                browser.close()
    res['total_s'] = round(time.time() - t0, 1)
    res['kernels_started'] = server_log.read_text(errors='replace').count('Kernel started:') if server_log.exists() else None
    if res['js_errors']: raise CheckFailed('JavaScript errors in the page:\n  ' + '\n  '.join(res['js_errors'][:10]))
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('notebook', nargs='?', default=str(NOTEBOOK))
    ap.add_argument('--timeout', type=float, default=float(os.environ.get('SAFEDRIFT_BROWSER_TIMEOUT', 180)))
    ap.add_argument('--artifacts', default=str(root/'test_artifacts'))
    ap.add_argument('--control', default='metric', help="the DriftExplorer dropdown to change (metric, category, domain, ...)")
    a = ap.parse_args()
    why = unavailable()
    if why: sys.exit(f"cannot run the browser check: {why}")
    try: res = run_notebook_in_browser(Path(a.notebook).resolve(), timeout=a.timeout, artifacts=Path(a.artifacts), control=a.control)
    except CheckFailed as e: sys.exit(f"FAILED: {e}")
    print(json.dumps({k: v for k, v in res.items() if k not in ('image_before', 'image_after')}, indent=1))

if __name__ == '__main__': main()
