"""Check the docs without Quarto: process the notebooks as nbdev does, execute them, write HTML.

`nbdev_docs` (which needs Quarto) remains the way to publish the site. This renders every processed
notebook in `_proc/` to `_docs/*.html` with nbconvert, executing it so that figures appear, and
fails on the first error. Cells flagged `slow` or `gpu`, or marked `eval: false`, are not executed.
"""
import os, re, sys, time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import ExecutePreprocessor, CellExecutionError

root = Path(__file__).resolve().parent.parent
SKIP = re.compile(r'^#\|\s*(eval:\s*false|slow|gpu|notest)\b', re.I)

def process():
    os.chdir(root)
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    from nbdev.serve import proc_nbs
    import nbdev.doclinks
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    nbdev_sidebar.__wrapped__()
    return proc_nbs(force=True, n_workers=0)

def render(nb_path, proc, out, timeout):
    nb = nbformat.read(nb_path, as_version=4)
    for c in nb.cells:
        if c.cell_type == 'code' and any(SKIP.match(l.strip()) for l in c.source.splitlines()[:8]):
            c.source = '# (not executed in the docs check: flagged slow, gpu or eval: false)\n' + '\n'.join('# ' + l for l in c.source.splitlines())
    ExecutePreprocessor(timeout=timeout, kernel_name='python3').preprocess(nb, {'metadata': {'path': str(nb_path.parent)}})
    html, _ = HTMLExporter().from_notebook_node(nb)
    dest = out/nb_path.relative_to(proc).with_suffix('.html')
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(html, encoding='utf-8')
    return dest

def main():
    timeout = int(os.environ.get('SAFEDRIFT_DOCS_TIMEOUT', '600'))
    proc = Path(process())
    out = root/'_docs'
    nbs = sorted(p for p in proc.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
    if not nbs: sys.exit('no processed notebooks found in _proc/')
    failed = []
    for p in nbs:
        t = time.time()
        try: dest = render(p, proc, out, timeout)
        except CellExecutionError as e:
            failed.append(p); print(f"FAILED {p.relative_to(proc)}:\n{str(e)[-3000:]}"); continue
        print(f"ok {p.relative_to(proc)} -> {dest.relative_to(root)} ({time.time()-t:.1f} s)")
    if failed: sys.exit(f"{len(failed)} notebook(s) failed to render")
    if not (out/'index.html').exists(): sys.exit('_docs/index.html missing')
    print(f"docs rendered: {len(nbs)} pages in {out.relative_to(root)}/")

if __name__ == '__main__': main()
