"""Build the docs site without Quarto: execute the notebooks, process them as nbdev does, and render them with MkDocs.

Notebooks are committed without outputs, so the docs execute them first: each notebook in `nbs/` is run (from
its own folder, so relative paths hold) and saved with its outputs to `_exec/`, a mirror of `nbs/`. Cells flagged
`slow` or `gpu`, or marked `eval: false`, are shown but not run. While a notebook runs, every ipywidgets view it
shows (an explorer, say) also carries a static HTML copy of what it shows, and each later cell that changes it
adds a copy of its new state: a page needs no widget JavaScript. nbdev's processors turn `_exec/` into `_proc/`
(show_doc cells, hidden and exported cells removed). Each processed notebook is then cleaned for a static page
(Quarto cell options such as `echo: false` and `output: asis` applied and stripped, widget views dropped for
their static copies, links into the published docs made relative, TeX made MathML) into `_mkdocs/`, with a
sidebar of chapters grouped by the notebooks' numbering, and MkDocs (Material theme, mkdocs-jupyter, the
settings in `mkdocs.yml`) writes the site, search included, to `_docs/`. No page loads anything from the
internet; the build fails when one would.

`--only NAME ...` builds a site of some notebooks (the home page always comes along), e.g. for a quick look.
With Quarto installed, `--quarto` publishes the site from the same executed notebooks (`nbdev_docs --path
_exec`), using `_quarto.yml` at the top of the repository.
"""
import argparse, fnmatch, html, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from configparser import ConfigParser
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

root = Path(__file__).resolve().parent.parent
SKIP = re.compile(r'^#\|\s*(eval:\s*false|slow|gpu)\s*$', re.I)
DIRECTIVE = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
WIDGET = 'application/vnd.jupyter.widget-view+json'
HOOK_TAG, HIDE_INPUT = 'safedrift-docs-hook', 'safedrift-hide-input'

# The sidebar: the notebooks' numbers say which layer a chapter documents (see nbs/explanations/layout.ipynb).
SECTIONS = [('Get started', r'index|tutorials/.*'), ('Explanations', r'explanations/.*'), ('Common', r'00.*'),
            ('Data: schema, statistics, cube', r'0[1-9].*'), ('Analysis', r'1\d.*'), ('Benchmarks', r'2\d.*'),
            ('Interop', r'3\d.*'), ('Engine & judges', r'4\d.*'), ('Runs', r'5\d.*'),
            ('Fine-tuning & interventions', r'6\d.*'), ('Views', r'7\d.*'), ('Command line & demo', r'9[0-8].*'),
            ('Old import paths', r'99.*')]

def notebooks(folder):
    return sorted(p for p in folder.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))

# ---------------------------------------------------------------- execution
# Runs first in every kernel (and is removed from the page): a widget's display also carries a static HTML copy of
# what it shows (images, HTML panels, control values), and after each later cell that changed what a shown widget
# displays, the cell's output gets a copy of the new state. Progress bars get no copy.
DOCS_HOOK = r'''
def _safedrift_docs_hook(max_states=8):
    import base64, hashlib, html, ipywidgets as W
    from IPython import get_ipython
    from IPython.display import HTML, display
    def is_progress(w):
        return isinstance(w, (W.FloatProgress, W.IntProgress)) or any(is_progress(c) for c in getattr(w, 'children', ()))
    def out_html(o):
        d = o.get('data', {})
        if 'image/png' in d: return f'<img src="data:image/png;base64,{d["image/png"]}" alt="">'
        if 'text/html' in d: return d['text/html']
        text = o.get('text') or d.get('text/plain', '')
        return f'<pre>{html.escape(text)}</pre>' if text else ''
    def snap(w):
        if isinstance(w, W.Image):
            if not w.value: return ''
            fmt = 'svg+xml' if w.format == 'svg' else w.format
            return f'<img src="data:image/{fmt};base64,{base64.b64encode(w.value).decode()}" alt="the figure of the view">'
        if isinstance(w, (W.HTML, W.HTMLMath)): return f'<div>{w.value}</div>'
        if isinstance(w, W.Label): return f'<span>{html.escape(str(w.value))}</span>'
        if isinstance(w, W.Output): return ''.join(out_html(o) for o in w.outputs)
        if isinstance(w, W.Button): return f'<span class="safedrift-control">[{html.escape(w.description)}]</span>'
        if isinstance(w, W.Box):
            kind = 'row' if isinstance(w, W.HBox) else 'column'
            return f'<div class="safedrift-{kind}">' + ''.join(snap(c) for c in w.children) + '</div>'
        if hasattr(w, 'value'):
            name = html.escape(getattr(w, 'description', '') or '')
            return f'<span class="safedrift-control"><b>{name}</b> {html.escape(str(w.value))}</span>'
        return ''
    def static(w): return f'<div class="safedrift-widget-static">{snap(w)}</div>'
    def key(w): return hashlib.sha1(snap(w).encode()).hexdigest()
    shown = {}                                  # id(widget) -> [widget, key of the last copy, copies left]
    original = W.Widget._repr_mimebundle_
    def bundle(self, **kwargs):
        data = original(self, **kwargs)
        if not data or 'text/html' in data or 'image/png' in data or is_progress(self): return data
        data = dict(data, **{'text/html': static(self)})
        shown[id(self)] = [self, key(self), max_states]
        return data
    def after_cell(result):
        for entry in list(shown.values()):
            w, last, left = entry
            k = key(w)
            if k != last and left > 0:
                display(HTML('<p class="safedrift-state-caption">The view shown above, after this cell:</p>' + static(w)))
                entry[1], entry[2] = k, left - 1
    W.Widget._repr_mimebundle_ = bundle
    get_ipython().events.register('post_run_cell', after_cell)
_safedrift_docs_hook()
del _safedrift_docs_hook
'''

def _load(src):
    "The notebook with its slow/gpu/eval-false cells tagged so nbclient shows but skips them, and the docs hook first."
    nb = nbformat.read(src, as_version=4)
    for c in nb.cells:
        if c.cell_type == 'code' and any(SKIP.match(l.strip()) for l in c.source.splitlines()[:8]):
            c.metadata.setdefault('tags', []).append('skip-execution')
    hook = nbformat.v4.new_code_cell(DOCS_HOOK, metadata={'tags': [HOOK_TAG]})
    hook.pop('id', None)
    nb.cells.insert(0, hook)
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
    nb.cells = [c for c in nb.cells if HOOK_TAG not in c.metadata.get('tags', [])]
    for c in nb.cells:
        tags = c.metadata.get('tags', [])
        if 'skip-execution' in tags: tags.remove('skip-execution')
        if not tags: c.metadata.pop('tags', None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)

def timed_execute(src, dest, timeout) -> float:
    "`execute`, returning the seconds it took (run in a worker process)."
    t = time.time(); execute(src, dest, timeout)
    return time.time() - t

def mirror(nbs, out):
    "A copy of `nbs` without its notebooks: the data files the notebooks read, and the Quarto config."
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(nbs, out, symlinks=False, ignore=shutil.ignore_patterns('*.ipynb', '.ipynb_checkpoints'))

def process(exe, proc):
    "nbdev's processors (show_doc, hidden and exported cells removed) on each executed notebook, into `proc`."
    import warnings
    warnings.filterwarnings('ignore', message='Found cells containing imports and other code')
    from execnb.nbio import read_nb, write_nb
    from nbdev.processors import FilterDefaults
    import nbdev.doclinks
    cwd, os.environ['IN_TEST'] = os.getcwd(), '1'
    os.chdir(root)
    try:
        nbdev.doclinks._build_modidx()
        if proc.exists(): shutil.rmtree(proc)
        for src in notebooks(exe):
            nb = read_nb(src)
            FilterDefaults()(nb)
            dest = proc/src.relative_to(exe)
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_nb(nb, dest)
    finally:
        os.chdir(cwd); os.environ.pop('IN_TEST', None)
    return proc

# ---------------------------------------------------------------- cleaning a processed notebook for a static page
def settings():
    cfg = ConfigParser(); cfg.read(root/'settings.ini')
    return cfg['DEFAULT']

def frontmatter(nb) -> dict:
    "The YAML front matter nbdev keeps in the first raw cell (title, description, output-file)."
    for c in nb.cells:
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            try: return yaml.safe_load(c.source.strip().strip('-')) or {}
            except yaml.YAMLError: return {}
    return {}

def page_name(rel:Path, nb) -> str:
    "The page's path in the site, as Quarto names it (`output-file`), e.g. `00a_errors.ipynb` -> `errors`."
    out = frontmatter(nb).get('output-file')
    return str(rel.with_name(Path(out).stem) if out else rel.with_suffix(''))

def directives(source:str):
    "Quarto/nbdev cell options (`#| key: value`) of a code cell, and its source without them."
    opts, keep = {}, []
    for line in source.splitlines():
        m = DIRECTIVE.match(line)
        if m: opts[m.group(1).lower()] = m.group(2).lower()
        else: keep.append(line)
    return opts, '\n'.join(keep).strip('\n')

_MATH = re.compile(r'(?<![\\$])\$\$(.+?)\$\$|(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])', re.S)
_CODE = re.compile(r'(```.*?```|`[^`\n]+`)', re.S)

def tex_to_mathml(md:str) -> str:
    "TeX between `$`/`$$` (outside code) as MathML, which browsers show without any script; unknown TeX stays as it is."
    from latex2mathml.converter import convert
    def one(m):
        tex, block = (m.group(1), True) if m.group(1) is not None else (m.group(2), False)
        try: return convert(tex.strip(), display='block' if block else 'inline')
        except Exception: return m.group(0)
    return ''.join(p if i % 2 else _MATH.sub(one, p) for i, p in enumerate(_CODE.split(md)))

class Links:
    """Rewrites links into the published docs (`doc_host` + `doc_baseurl`) to pages of this site, relative to a page;
    `pages` maps each page to the anchors of its show_doc headings (a link to a name without one goes to the page)."""
    def __init__(self, pages:dict):
        s = settings()
        self.prefix, self.pages = s.get('doc_host', '').rstrip('/') + '/' + s.get('doc_baseurl', '').strip('/') + '/', pages
    def __call__(self, md:str, page:str) -> str:
        up = '../' * page.count('/')
        def one(m):
            target, anchor = m.group(1), m.group(2) or ''
            name = target[:-5] if target.endswith('.html') else (target.rstrip('/') + '/index').lstrip('/')
            if name not in self.pages: return m.group(0)
            return f'({up}{name}.html{anchor if anchor[1:] in self.pages[name] else ""})'
        md = re.sub(r'\(' + re.escape(self.prefix) + r'([^)#\s]*)(#[^)\s]*)?\)', one, md)
        # pandoc attributes after a link, e.g. show_doc's `[source](url){target="_blank" style=...}`
        return re.sub(r'\[([^\]]+)\]\(([^)\s]+)\)\{[^}\n]*\}',
                      lambda m: f'<a class="safedrift-source" href="{html.escape(m.group(2))}">{m.group(1)}</a>', md)

def doc_anchors(nb) -> set:
    "Anchors (lower-case names, as Quarto makes them) of the show_doc headings of a processed notebook."
    md = [o['data']['text/markdown'] for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
    return {re.sub(r'<[^>]+>|\\', '', a).strip().lower() for m in md for a in re.findall(r'^#{2,4} (\S+)\s*$', m, re.M)}

def anchors(md:str) -> str:
    "Quarto's anchors of show_doc headings (`#name`, lower case, as nbdev's links use them) before each heading."
    from markdown.extensions.toc import slugify
    def one(m):
        a = re.sub(r'<[^>]+>|\\', '', m.group(2)).strip().lower()
        return m.group(0) if slugify(a, '-') == a else f'<span id="{html.escape(a)}"></span>\n\n{m.group(0)}'
    return re.sub(r'^(#{2,4}) (\S+)\s*$', one, md, flags=re.M)

def clean_markdown(md:str, page:str, links) -> str:
    return tex_to_mathml(links(md, page))

def clean_output(o) -> dict|None:
    "The output without widget views, or None when nothing static is left of it (a widget's repr, a progress bar)."
    data = o.get('data')
    if data is None: return o
    had_widget = WIDGET in data
    data = {k: v for k, v in data.items() if k not in (WIDGET, 'application/vnd.jupyter.widget-state+json')}
    if had_widget and set(data) <= {'text/plain'}: return None
    o['data'] = data
    return o if data else None

def clean_notebook(nb, page:str, links):
    "A processed notebook as a static page: front matter as a heading, cell options applied and stripped, no widget views."
    nb.metadata.pop('widgets', None)
    cells, fm = [], frontmatter(nb)
    if fm.get('title'):
        cells.append(nbformat.v4.new_markdown_cell(f"# {fm['title']}" + (f"\n\n*{fm['description']}*" if fm.get('description') else '')))
    for c in nb.cells:
        if c.cell_type == 'raw': continue            # the front matter, handled above
        if c.cell_type == 'markdown':
            if re.fullmatch(r'\s*<!--.*?-->\s*', c.source, re.S): continue
            c.source = clean_markdown(c.source, page, links)
            cells.append(c); continue
        opts, c.source = directives(c.source)
        if opts.get('include') == 'false': continue
        if opts.get('output') == 'false': c.outputs = []
        outputs = [o for o in (clean_output(o) for o in c.get('outputs', [])) if o is not None]
        for o in outputs:
            if 'text/markdown' in o.get('data', {}): o['data']['text/markdown'] = clean_markdown(o['data']['text/markdown'], page, links)
        if opts.get('output') == 'asis':       # the output is markdown of the page (show_doc): a markdown cell
            md = [o['data']['text/markdown'] if 'text/markdown' in o.get('data', {}) else o.get('text', '') for o in outputs]
            c.outputs, outputs = [], []
            if opts.get('echo') != 'false' and c.source.strip(): cells.append(c)
            if any(s.strip() for s in md): cells.append(nbformat.v4.new_markdown_cell(anchors('\n\n'.join(md))))
            continue
        c.outputs = outputs
        if opts.get('echo') == 'false' or not c.source.strip():
            if not outputs: continue
            c.metadata.setdefault('tags', []).append(HIDE_INPUT)
        cells.append(c)
    nb.cells = cells
    for c in nb.cells: c.pop('id', None)
    nb.nbformat_minor = 4
    return nb

# ---------------------------------------------------------------- the site
def title_of(nb, fallback:str) -> str:
    t = frontmatter(nb).get('title')
    if not t:
        h = next((m.group(1) for c in nb.cells if c.cell_type == 'markdown' for m in [re.search(r'^# (.+)$', c.source, re.M)] if m), None)
        t = h or fallback
    return re.sub(r'`([^`]*)`', r'\1', str(t)).strip()

def sidebar(pages:list) -> list:
    "MkDocs `nav`: the pages (rel path in nbs, page name, title) grouped by SECTIONS in the notebooks' order."
    groups = {name: [] for name, _ in SECTIONS}
    for rel, name, title in pages:
        key = rel.with_suffix('').as_posix()
        sec = next((s for s, pat in SECTIONS if re.fullmatch(pat, key)), 'More')
        groups.setdefault(sec, []).append({('Home' if key == 'index' else title): f'{name}.ipynb'})
    return [{s: items} for s, items in groups.items() if items]

def prepare(proc:Path, docs:Path) -> list:
    "Cleaned pages of the processed notebooks in `docs`, with the sidebar and the site's stylesheet; returns the nav."
    if docs.exists(): shutil.rmtree(docs)
    docs.mkdir(parents=True)
    srcs = [(p, nbformat.read(p, as_version=4)) for p in notebooks(proc)]
    pages, names = [], set()
    for p, nb in srcs:
        rel = p.relative_to(proc)
        name = page_name(rel, nb)
        if name in names: name = rel.with_suffix('').as_posix()   # two notebooks naming the same output file
        names.add(name); pages.append((rel, name, title_of(nb, rel.stem)))
    links = Links({name: doc_anchors(nb) for (_, nb), (_, name, _) in zip(srcs, pages)})
    for (p, nb), (rel, name, _) in zip(srcs, pages):
        dest = docs/f'{name}.ipynb'
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(clean_notebook(nb, name, links), dest)
    shutil.copytree(root/'docs'/'assets', docs/'assets')
    nav = sidebar(pages)
    (docs/'_nav.json').write_text(json.dumps(nav, indent=1))
    return nav

_EXTERNAL = re.compile(r'<(script|link|img|iframe|source)\b[^>]*\b(src|href)\s*=\s*["\']?(https?:)?//', re.I)

def external_loads(site:Path) -> list:
    "(file, tag) of every script, stylesheet, font, image or frame a page of `site` would load from elsewhere."
    found = []
    for f in sorted(site.rglob('*.html')) + sorted(site.rglob('*.css')):
        text = f.read_text(encoding='utf-8', errors='replace')
        found += [(str(f.relative_to(site)), m.group(0)[:120]) for m in _EXTERNAL.finditer(text)]
        if f.suffix == '.css': found += [(str(f.relative_to(site)), u) for u in re.findall(r'url\(\s*["\']?(?:https?:)?//[^)]*\)', text)]
    return found

def broken_links(site:Path) -> list:
    "(page, link, why) of every link, stylesheet, script or image of a page of `site` that points at nothing in it."
    from urllib.parse import unquote, urldefrag, urlsplit
    ids = {}
    def ids_of(f:Path):
        if f not in ids: ids[f] = set(re.findall(r'\sid="([^"]+)"', f.read_text(encoding='utf-8', errors='replace')))
        return ids[f]
    bad = []
    for f in sorted(site.rglob('*.html')):
        if f.name == '404.html' and f.parent == site: continue       # served at any depth: links from the site's root
        text = f.read_text(encoding='utf-8', errors='replace')
        for ref in set(re.findall(r'<(?:a|link|script|img)\b[^>]*?\s(?:href|src)="([^"]*)"', text)):
            ref = html.unescape(ref)
            if not ref or re.match(r'^[a-zA-Z][\w+.-]*:|^//', ref): continue   # another site, mail, data: URL
            path, frag = urldefrag(ref)
            target = f if not path else (f.parent/unquote(urlsplit(path).path)).resolve()
            if target.is_dir(): target = target/'index.html'
            if not target.is_file(): bad.append((str(f.relative_to(site)), ref, 'missing')); continue
            if frag and target.suffix == '.html' and unquote(frag) not in ids_of(target):
                bad.append((str(f.relative_to(site)), ref, 'no such anchor'))
    return bad

def build_site(proc:Path, docs:Path, site:Path, quiet:bool=True):
    "Clean the processed notebooks into `docs` and build the MkDocs site (config `mkdocs.yml`) into `site`."
    import logging
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    nav = prepare(proc, docs)
    if quiet:
        for n in ('mkdocs', 'mkdocs.plugins', 'mkdocs.mkdocs-jupyter', 'mkdocs.plugins.mkdocs_jupyter'): logging.getLogger(n).setLevel(logging.WARNING)
    cfg = load_config(str(root/'mkdocs.yml'), docs_dir=str(docs), site_dir=str(site), nav=nav)
    cfg.plugins.on_startup(command='build', dirty=False)
    try: build(cfg)
    finally: cfg.plugins.on_shutdown()
    bad = external_loads(site)
    if bad: sys.exit('pages would load from the internet:\n' + '\n'.join(f'{f}: {t}' for f, t in bad[:20]))
    return nav

def wanted(src:Path, nbs:Path, only) -> bool:
    if not only: return True
    rel = src.relative_to(nbs).with_suffix('').as_posix()
    return rel == 'index' or any(fnmatch.fnmatch(rel, o) or fnmatch.fnmatch(rel, o + '*') for o in only)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quarto', action='store_true', help='publish with nbdev_docs (needs Quarto) instead of MkDocs')
    ap.add_argument('--only', nargs='+', metavar='NAME', help='only these notebooks (paths in nbs/ without .ipynb; * allowed; a prefix such as 03 works), and index')
    ap.add_argument('--work', type=Path, default=root, help='folder for _exec/, _proc/ and _mkdocs/ (default: the repository)')
    ap.add_argument('--out', type=Path, default=root/'_docs', help='folder of the site (default: _docs)')
    ap.add_argument('--workers', type=int, default=int(os.environ.get('SAFEDRIFT_DOCS_WORKERS', min(2, os.cpu_count() or 1))),
                    help='notebooks executed at once (default: 2, or 1 on one core)')
    ap.add_argument('--timeout', type=int, default=int(os.environ.get('SAFEDRIFT_DOCS_TIMEOUT', '900')), help='seconds per cell')
    a = ap.parse_args(argv)
    nbs, work = root/'nbs', a.work.resolve()
    exe, proc, docs, out = work/'_exec', work/'_proc', work/'_mkdocs', a.out.resolve()
    os.environ.pop('MPLBACKEND', None)   # kernels must use the inline backend so figures land in the pages
    mirror(nbs, exe)
    failed, t0 = [], time.time()
    todo = [src for src in notebooks(nbs) if wanted(src, nbs, a.only)]
    # each notebook runs in its own kernel: a few at once keep the cores busy while kernels start
    with ProcessPoolExecutor(max_workers=max(1, a.workers)) as pool:
        futs = {pool.submit(timed_execute, src, exe/src.relative_to(nbs), a.timeout): src for src in todo}
        for fut in as_completed(futs):
            src = futs[fut]
            try: took = fut.result()
            except CellExecutionError as e:
                failed.append(src); print(f"FAILED {src.relative_to(root)}:\n{str(e)[-3000:]}", flush=True); continue
            print(f"executed {src.relative_to(root)} ({took:.1f} s)", flush=True)
    if failed: sys.exit(f"{len(failed)} notebook(s) failed to execute")
    if a.quarto:
        if not shutil.which('quarto'): sys.exit('Quarto is not installed (https://quarto.org); without it, run this script without --quarto')
        sys.exit(subprocess.call(['nbdev_docs', '--path', str(exe)], cwd=root))
    t1 = time.time()
    process(exe, proc)
    t2 = time.time()
    nav = build_site(proc, docs, out)
    n = sum(len(list(s.values())[0]) for s in nav)
    if not (out/'index.html').exists(): sys.exit(f'{out}/index.html missing')
    bad = broken_links(out)
    if a.only:    # a partial site: links to the pages it lacks are expected
        bad = [b for b in bad if not (b[2] == 'missing' and urlsplit(b[1]).path.endswith('.html'))]
    if bad: sys.exit(f'{len(bad)} broken link(s) in the site:\n' + '\n'.join(f'{p}: {l} ({w})' for p, l, w in bad[:30]))
    print(f"docs site: {n} pages in {out} (executed in {t1 - t0:.0f} s, processed in {t2 - t1:.0f} s, "
          f"built in {time.time() - t2:.0f} s); open {out/'index.html'} or serve it: python -m http.server -d {out}")

if __name__ == '__main__': main()
