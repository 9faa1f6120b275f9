"""Build the docs: execute the notebooks, process them as nbdev does, and render HTML without Quarto.

Notebooks are committed without outputs, so the docs execute them first: each notebook in `nbs/` is run
(from its own folder, so relative paths hold) and saved with its outputs to `_exec/`, a mirror of `nbs/`.
Cells flagged `slow` or `gpu`, or marked `eval: false`, are shown but not run. nbdev's processors then turn
`_exec/` into `_proc/`, and nbconvert writes every page to `_docs/*.html`; the run fails on the first error.

With Quarto installed, `python tools/render_docs.py --quarto` publishes the site from the same executed
notebooks (`nbdev_docs --path _exec`), using the one `_quarto.yml` at the top of the repository.
"""
import argparse, os, re, shutil, subprocess, sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

root = Path(__file__).resolve().parent.parent
SKIP = re.compile(r'^#\|\s*(eval:\s*false|slow|gpu)\s*$', re.I)

def notebooks(folder):
    return sorted(p for p in folder.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))

def _load(src):
    "The notebook with its slow/gpu/eval-false cells tagged so nbclient shows but skips them."
    nb = nbformat.read(src, as_version=4)
    for c in nb.cells:
        if c.cell_type == 'code' and any(SKIP.match(l.strip()) for l in c.source.splitlines()[:8]):
            c.metadata.setdefault('tags', []).append('skip-execution')
    return nb

def execute(src, dest, timeout):
    for attempt in range(3):   # a kernel can fail to start when another process takes its port: try again
        nb = _load(src)
        try:
            NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(src.parent)}}).execute()
            break
        except CellExecutionError: raise
        except Exception as e:
            if attempt == 2: raise
            print(f"retrying {src.name} after {type(e).__name__}: {e}", flush=True)
    for c in nb.cells:
        tags = c.metadata.get('tags', [])
        if 'skip-execution' in tags: tags.remove('skip-execution')
        if not tags: c.metadata.pop('tags', None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)

def mirror(nbs, out):
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(nbs, out, symlinks=False, ignore=shutil.ignore_patterns('*.ipynb', '.ipynb_checkpoints'))

def process(path):
    import warnings
    warnings.filterwarnings('ignore', message='Found cells containing imports and other code')
    os.chdir(root)
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    from nbdev.serve import proc_nbs
    import nbdev.doclinks
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    for f in ['nbdev.yml']: shutil.copy(root/'nbs'/f, path/f)
    nbdev_sidebar.__wrapped__(path=path)
    return Path(proc_nbs(path=path, force=True, n_workers=0))

def _frontmatter_to_heading(nb):
    "Quarto reads the page title from a raw YAML cell; for plain HTML turn it into a heading."
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            meta = dict(re.findall(r'^(\w[\w-]*):\s*(.*)$', c.source, re.M))
            text = (f"# {meta['title']}\n" if meta.get('title') else '') + (f"\n> {meta['description']}" if meta.get('description') else '')
            nb.cells[i] = nbformat.v4.new_markdown_cell(text)
            break
    return nb

def to_html(proc, out):
    from nbconvert import HTMLExporter
    pages = notebooks(proc)
    for p in pages:
        html, _ = HTMLExporter().from_notebook_node(_frontmatter_to_heading(nbformat.read(p, as_version=4)))
        dest = out/p.relative_to(proc).with_suffix('.html')
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(html, encoding='utf-8')
    return pages

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quarto', action='store_true', help='publish with nbdev_docs (needs Quarto) instead of nbconvert')
    ap.add_argument('--timeout', type=int, default=int(os.environ.get('SAFEDRIFT_DOCS_TIMEOUT', '900')), help='seconds per cell')
    a = ap.parse_args()
    nbs, exe = root/'nbs', root/'_exec'
    os.environ.pop('MPLBACKEND', None)   # kernels must use the inline backend so figures land in the pages
    mirror(nbs, exe)
    failed = []
    for src in notebooks(nbs):
        t = time.time()
        try: execute(src, exe/src.relative_to(nbs), a.timeout)
        except CellExecutionError as e:
            failed.append(src); print(f"FAILED {src.relative_to(root)}:\n{str(e)[-3000:]}", flush=True); continue
        print(f"executed {src.relative_to(root)} ({time.time() - t:.1f} s)", flush=True)
    if failed: sys.exit(f"{len(failed)} notebook(s) failed to execute")
    if a.quarto:
        if not shutil.which('quarto'): sys.exit('Quarto is not installed (https://quarto.org); without it, run this script without --quarto')
        sys.exit(subprocess.call(['nbdev_docs', '--path', str(exe)], cwd=root))
    proc = process(exe)
    out = root/'_docs'
    pages = to_html(proc, out)
    if not (out/'index.html').exists(): sys.exit('_docs/index.html missing')
    print(f"docs rendered: {len(pages)} pages in {out.relative_to(root)}/")

if __name__ == '__main__': main()
