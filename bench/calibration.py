"""Calibration of the workbench's statistics: simulations with planted truth, one table per area.

Each area is a module next to this script exposing `scenarios(fast=False) -> list of dict rows` with the keys
scenario, quantity, value, target, ok (ok is True or False for a row with a target, None for a row that only
informs). This driver runs them, prints one table per area and a last line with how many targets are met, and
exits with status 1 when a target is missed or an area cannot run.

    python bench/calibration.py [--fast] [--only cells|analyses|judges ...]
"""
import argparse, importlib, sys, time, traceback
from pathlib import Path

AREAS = {'cells': 'calib_cells',          # per-cell intervals and tests, FDR over a cube
         'analyses': 'calib_analyses',    # heterogeneity, predictiveness, drivers, contradiction flags
         'judges': 'calib_judges'}        # misclassification-adjusted drift
KEYS = ('scenario', 'quantity', 'value', 'target', 'ok')

def load_area(module:str):
    "Import an area's module from this folder; None when it does not exist."
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path: sys.path.insert(0, here)
    try: return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module: return None
        raise

def check_rows(rows, area:str) -> list:
    "The rows of one area, checked against the interface (a list of dicts with the five keys, ok True/False/None)."
    if not isinstance(rows, list): raise TypeError(f"{area}: scenarios() returned {type(rows).__name__}, not a list of dict rows")
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or any(k not in r for k in KEYS):
            raise TypeError(f"{area}: row {i} lacks {[k for k in KEYS if not isinstance(r, dict) or k not in r]}")
        if r['ok'] not in (True, False, None): raise TypeError(f"{area}: row {i} has ok={r['ok']!r}; use True, False or None")
    return rows

def _cell(v) -> str:
    if isinstance(v, float): return f'{v:.4g}'
    return '' if v is None else str(v)

def format_table(rows:list) -> str:
    "Rows as a plain-text table with a mark per row: ok, FAIL, or blank when the row has no target (and a note when rows have one)."
    extra = ['note'] if any(r.get('note') for r in rows) else []
    cols = list(KEYS[:-1]) + [''] + extra
    body = [[_cell(r[k]) for k in KEYS[:-1]] + [{True: 'ok', False: 'FAIL', None: ''}[r['ok']]] + [_cell(r.get(k)) for k in extra]
            for r in rows]
    w = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    line = lambda xs: '  '.join(x.ljust(w[i]) if i != 2 else x.rjust(w[i]) for i, x in enumerate(xs)).rstrip()
    return '\n'.join([line(cols), line(['-'*x for x in w])] + [line(b) for b in body])

def run(areas:dict, *, fast:bool=False, out=sys.stdout) -> tuple:
    "Run each area's scenarios (name -> module or None); print its table. Returns (targets met, targets, areas that failed to run)."
    met = total = 0
    broken = []
    for name, mod in areas.items():
        print(f"\n== {name} ==", file=out)
        if mod is None:
            print(f"not run: its module is missing (bench/{AREAS.get(name, name)}.py)", file=out); broken.append(name); continue
        t0 = time.perf_counter()
        try: rows = check_rows(mod.scenarios(fast=fast), name)
        except Exception:
            print(f"not run: {name} raised\n{traceback.format_exc()}", file=out); broken.append(name); continue
        print(format_table(rows), file=out)
        k = [r['ok'] for r in rows if r['ok'] is not None]
        met, total = met + sum(k), total + len(k)
        print(f"({sum(k)} of {len(k)} targets met, {time.perf_counter() - t0:.1f} s)", file=out)
    return met, total, broken

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--fast', action='store_true', help='fewer replicates, wider tolerances (the test suite runs this)')
    ap.add_argument('--only', nargs='+', choices=list(AREAS), help='run only these areas')
    a = ap.parse_args(argv)
    names = a.only or list(AREAS)
    met, total, broken = run({n: load_area(AREAS[n]) for n in names}, fast=a.fast)
    tail = f"; areas not run: {', '.join(broken)}" if broken else ''
    print(f"\n{met} of {total} targets met{' (fast)' if a.fast else ''}{tail}")
    return 0 if met == total and not broken else 1

if __name__ == '__main__': sys.exit(main())
