"""The package's layout as numbers: module sizes, the import graph, cycles, private cross-module imports, imports
inside functions. `python tools/layout.py [PACKAGE_DIR]` prints them; `tests/test_structure.py` asserts on them."""
from __future__ import annotations
import ast, sys
from dataclasses import dataclass, field
from pathlib import Path

# Optional heavy dependencies: the only packages a module may import inside a function, each in one module only.
HEAVY = {'torch', 'transformers', 'peft', 'dask', 'distributed', 'playwright', 'safetensors', 'huggingface_hub',
         'accelerate', 'gguf', 'vllm', 'tokenizers', 'profanity_check'}

@dataclass
class Layout:
    root: Path
    sizes: dict = field(default_factory=dict)       # module -> lines
    edges: dict = field(default_factory=dict)       # module -> set of package modules it imports
    private: list = field(default_factory=list)     # (module, imported module, name)
    inner: list = field(default_factory=list)       # (module, imported name, line) for imports inside functions
    cycles: list = field(default_factory=list)      # strongly connected components of more than one module

def _modules(root:Path) -> dict:
    out = {}
    for p in sorted(root.rglob('*.py')):
        if p.name == '_modidx.py' or '__pycache__' in p.parts: continue
        parts = list(p.relative_to(root.parent).with_suffix('').parts)
        if parts[-1] == '__init__': parts = parts[:-1]
        out['.'.join(parts)] = p
    return out

def _targets(mod:str, path:Path, node) -> list:
    "(module, name) pairs an import statement names; relative imports resolved."
    if isinstance(node, ast.Import): return [(a.name, None) for a in node.names]
    base = node.module or ''
    if node.level:
        pkg = mod.split('.') if path.name == '__init__.py' else mod.split('.')[:-1]
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = '.'.join(pkg + ([node.module] if node.module else []))
    return [(base, a.name) for a in node.names]

def _sccs(edges:dict) -> list:
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(edges):
        if v not in index: visit(v)
    return out

def layout(root) -> Layout:
    "Measure the package at `root`."
    root = Path(root); pkg = root.name
    mods = _modules(root); L = Layout(root)
    for m, p in mods.items():
        text = p.read_text(encoding='utf-8'); tree = ast.parse(text)
        L.sizes[m] = len(text.splitlines()); L.edges[m] = set()
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)): continue
            for tgt, name in _targets(m, p, node):
                if id(node) not in top: L.inner.append((m, tgt, node.lineno))
                if tgt != pkg and not tgt.startswith(pkg + '.'): continue
                if name and f'{tgt}.{name}' in mods: dest = f'{tgt}.{name}'
                else:
                    dest = tgt
                    while dest and dest not in mods: dest = dest.rpartition('.')[0]
                    if name and name.startswith('_') and not name.startswith('__') and dest != m: L.private.append((m, dest, name))
                if dest and dest != m and not (name is None and dest == pkg): L.edges[m].add(dest)
    # a package's __init__ importing its own submodules is not a cycle with them
    graph = {m: {d for d in ds if not (d.startswith(m + '.'))} for m, ds in L.edges.items()}
    L.cycles = _sccs(graph)
    return L

def inner_statements(L:Layout) -> int:
    return len({(m, line) for m, _, line in L.inner})

def report(L:Layout) -> str:
    big = sorted(((s, m) for m, s in L.sizes.items()), reverse=True)
    lines = [f"modules: {len(L.sizes)}; over 600 lines: {sum(s > 600 for s in L.sizes.values())}; over 400: "
             f"{sum(s > 400 for s in L.sizes.values())}; largest: {big[0][0]} ({big[0][1]})",
             f"import cycles: {len(L.cycles)} {L.cycles}",
             f"private names imported across modules: {len(L.private)}",
             f"imports inside functions: {inner_statements(L)} statements"]
    lines += [f"  {s:5d}  {m}" for s, m in big]
    return '\n'.join(lines)

if __name__ == '__main__':
    print(report(layout(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent/'safedrift_wb')))
