"""MkDocs hooks of the docs site (see `mkdocs.yml` and `tools/render_docs.py`).

- the sidebar comes from `_nav.json`, which `tools/render_docs.py` writes beside the pages from the notebook list;
- notebook pages (mkdocs-jupyter, i.e. nbconvert) carry a MathJax and a Mermaid loader from a CDN: removed (the
  pages' TeX is MathML already and there are no Mermaid diagrams), so no page loads anything from the internet;
- nbconvert inlines half a megabyte of the same CSS in every notebook page: moved to shared stylesheets;
- nbconvert names headings differently from MkDocs (and leaves headings made of code out of the table of contents):
  each heading gets the id MkDocs would give it (`markdown`'s slugify), and the table of contents beside the page
  is made from the page's headings;
- the copy of each cell's code kept for the copy button, the copy button and the headings' pilcrow links are left
  out of the search index (`data-search-exclude`).
"""
import hashlib, html, json, re
from pathlib import Path
from markdown.extensions.toc import slugify, unique
from mkdocs.structure.toc import get_toc

def on_config(config):
    nav = Path(config['docs_dir'])/'_nav.json'
    if not config['nav'] and nav.exists(): config['nav'] = json.loads(nav.read_text())
    return config

_MATHJAX = re.compile(r'<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->', re.S)
_MERMAID = re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>', re.S)
_HEADING = re.compile(r'<h([1-6]) id="([^"]*)">(.*?)</h\1>', re.S)

def _text(s): return ' '.join(html.unescape(re.sub(r'<[^>]+>', '', s)).replace('\u00b6', '').split())

_STYLE = re.compile(r'<style[^>]*>(.*?)</style>', re.S)
_shared = {}                                # file name -> CSS shared by notebook pages

def _share_styles(content, page):
    up = '../' * page.file.dest_uri.count('/')
    def one(m):
        css = m.group(1)
        if len(css) < 2000: return m.group(0)
        name = f'assets/notebook/{hashlib.sha1(css.encode()).hexdigest()[:12]}.css'
        _shared[name] = css
        return f'<link rel="stylesheet" href="{up}{name}">'
    return _STYLE.sub(one, content)

def on_page_content(content, page, config, files):
    if not page.file.src_uri.endswith('.ipynb'): return content
    content = _share_styles(_MERMAID.sub('', _MATHJAX.sub('', content)), page)
    used, tokens, stack = set(), [], []
    def one(m):
        level, inner = int(m.group(1)), m.group(3)
        text = _text(inner)
        new = unique(slugify(text, '-') or 'section', used)
        inner = re.sub(r'(<a class="anchor-link" href=")#[^"]*"', rf'\1#{new}"', inner)
        if level <= config['mdx_configs'].get('toc', {}).get('toc_depth', 3):
            tok = {'level': level, 'id': new, 'name': html.escape(text), 'children': []}
            while stack and stack[-1]['level'] >= level: stack.pop()
            (stack[-1]['children'] if stack else tokens).append(tok); stack.append(tok)
        return f'<h{level} id="{new}">{inner}</h{level}>'
    content = _HEADING.sub(one, content)
    page.toc = get_toc(tokens)
    content = re.sub(r'<(div|a) class="(clipboard-copy-txt|zeroclipboard-container|anchor-link)"', r'<\1 data-search-exclude class="\2"', content)
    return content

def on_post_build(config):
    for name, css in _shared.items():
        f = Path(config['site_dir'])/name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(css, encoding='utf-8')
    _shared.clear()
