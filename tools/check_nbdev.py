"""Fail when `nbdev_clean`, `nbdev_export` or the README generator would change a tracked source file.

Runs the three tools in place (so a failing run leaves the fixed files behind, ready to commit) and
names every file they changed.
"""
import hashlib, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def snapshot():
    files = [*root.glob('nbs/**/*.ipynb'), *root.glob('safedrift_wb/**/*.py'), root/'README.md']
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if p.is_file() and '.ipynb_checkpoints' not in p.parts}

def run(*cmd):
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if r.returncode: sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")

before = snapshot()
run('nbdev_clean')
cleaned = snapshot()
run('nbdev_export')
exported = snapshot()
run(sys.executable, 'tools/make_readme.py')
after = snapshot()

def changed(a, b): return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
problems = [('nbdev_clean changed (commit the cleaned notebooks)', changed(before, cleaned)),
            ('nbdev_export changed (the library is not what the notebooks export)', changed(cleaned, exported)),
            ('README.md is not what nbs/index.ipynb generates (run `make readme`)', changed(exported, after))]
lint = subprocess.run([sys.executable, 'tools/nb_imports.py'], cwd=root, capture_output=True, text=True)
if lint.returncode: problems.append(('docs processing would fail', lint.stdout.strip().splitlines()[1:]))
bad = [(msg, files) for msg, files in problems if files]
for msg, files in bad: print(f"{msg}:\n  " + "\n  ".join(files))
if bad: sys.exit(1)
print(f"ok: {len(after)} notebooks and modules agree")
