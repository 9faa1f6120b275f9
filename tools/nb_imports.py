"""Find (and with --fix, mend) notebook cells that mix imports with other code.

nbdev's docs processing executes every cell that contains an import, to make `show_doc` work. A cell that
imports *and* uses a name defined in a cell nbdev does not execute then breaks the docs build. The rule here:
an unexported code cell either only imports, or does not import at all. `--fix` moves the top-level import
statements of offending cells into the notebook's first hidden import cell (creating one if needed).
"""
import ast, json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
DIREC = re.compile(r'^#\|\s*(\w+)')

def directives(src): return {m.group(1) for l in src.splitlines() if (m := DIREC.match(l.strip()))}

def offending(src):
    "Top-level import nodes of a cell that also holds other statements, or [] when the cell is fine."
    d = directives(src)
    if d & {'export', 'exports', 'exporti', 'default_exp'} or re.search(r'^#\|\s*eval:\s*false', src, re.M): return []
    try: tree = ast.parse('\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!'))))
    except SyntaxError: return []
    imps = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    others = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    return imps if imps and others else []

def src_of(c): return ''.join(c['source']) if isinstance(c['source'], list) else c['source']

def fix(path):
    nb = json.loads(path.read_text(encoding='utf-8'))
    cells = nb['cells']
    moved = []
    for c in cells:
        if c['cell_type'] != 'code': continue
        src = src_of(c); imps = offending(src)
        if not imps: continue
        lines = src.splitlines()
        drop = set()
        for n in imps:
            drop |= set(range(n.lineno - 1, n.end_lineno))
            moved.append('\n'.join(lines[n.lineno - 1:n.end_lineno]))
        c['source'] = '\n'.join(l for i, l in enumerate(lines) if i not in drop)
    if not moved: return 0
    target = next((c for c in cells if c['cell_type'] == 'code' and 'hide' in directives(src_of(c)) and not offending(src_of(c))
                   and ('import ' in src_of(c))), None)
    if target is None:
        after = next((i for i, c in enumerate(cells) if 'default_exp' in directives(src_of(c))), 0) + 1
        target = {'cell_type': 'code', 'execution_count': None, 'id': f'imports{len(cells)}', 'metadata': {}, 'outputs': [], 'source': '#| hide'}
        cells.insert(after, target)
    have = set(src_of(target).splitlines())
    target['source'] = src_of(target).rstrip('\n') + ''.join('\n' + m for m in dict.fromkeys(moved) if m not in have)
    import nbformat
    nbformat.write(nbformat.from_dict(nb), str(path))
    return len(moved)

def main():
    do_fix = '--fix' in sys.argv
    bad = []
    for p in sorted((root/'nbs').rglob('*.ipynb')):
        if '.ipynb_checkpoints' in p.parts: continue
        if do_fix and (n := fix(p)): print(f"moved {n} import(s) in {p.relative_to(root)}")
        nb = json.loads(p.read_text(encoding='utf-8'))
        for i, c in enumerate(nb['cells']):
            if c['cell_type'] == 'code' and offending(src_of(c)): bad.append(f"{p.relative_to(root)} cell {i}")
    if bad:
        print("cells that mix imports with other code (docs processing executes them; put imports in a cell of their own):\n  "
              + '\n  '.join(bad))
        sys.exit(1)
    print('ok: no cell mixes imports with other code')

if __name__ == '__main__': main()
