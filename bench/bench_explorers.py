"""Time control changes of every explorer on a 100 model x 50 benchmark x 8 metric cube (target: redraw under 0.2 s).

    python bench/bench_explorers.py [--models 100] [--benchmarks 50] [--metrics 8] [--bases 4] [--rounds 3]

A control change redraws the explorer's figure in place and re-encodes it as PNG; both are timed, as the
wall-clock time of setting the control's `.value` (the same path as a click in JupyterLab, minus the browser),
and as the CPU time the process spent on it (on a machine shared with other work, wall-clock time includes
waiting for a core; CPU time is what the redraw costs). Prints, per explorer and per control, the medians and
the slowest redraw. Not a test: timings depend on the machine, so nothing here fails; compare the numbers with
the target.
"""
import argparse, os, statistics, time, warnings
os.environ.setdefault('MPLBACKEND', 'Agg')
import numpy as np
import pandas as pd
from safedrift_wb.analysis import synthetic_cube
from safedrift_wb.explorers import (ALL, DriftExplorer, ContradictionExplorer, ModelExplorer, PredictivenessExplorer,
                                    TRANSCRIPT_COLUMNS)

def changes(ex, name, values, rounds):
    "Set a control to each value in turn, `rounds` times; (wall, cpu) seconds of each change."
    ts = []
    for _ in range(rounds):
        for v in values:
            t0, c0 = time.perf_counter(), time.process_time()
            ex.controls[name].value = v
            ts.append((time.perf_counter() - t0, time.process_time() - c0))
    return ts

def line(label, ts):
    wall, cpu = [w for w, _ in ts], [c for _, c in ts]
    return (f"   {label:<12} {len(ts):3d} changes   median wall {statistics.median(wall):.3f} s, cpu {statistics.median(cpu):.3f} s"
            f"   max wall {max(wall):.3f} s, cpu {max(cpu):.3f} s")

def report(title, ex, plan, rounds):
    print(f"-- {title}: first draw {ex.draw_times[0]:.3f} s, figure {ex.figure.get_size_inches().round(1).tolist()} in "
          f"at {ex.dpi} dpi")
    everything = []
    for name, values in plan:
        ts = changes(ex, name, values, rounds)
        everything += ts
        print(line(name, ts))
    print(line('all', everything))
    return everything

def transcripts_for(cube, n_items=40, seed=0):
    "Made-up transcripts of every model on one benchmark: refusal judged 0/1."
    rng = np.random.default_rng(seed)
    models, bench = [str(m) for m in cube.model.values], str(cube.benchmark.values[0])
    rows = [(m, bench, f'i{i:03d}', f'prompt {i}', f'response of {m} to {i}', float(rng.random() < 0.6))
            for m in models for i in range(n_items)]
    return pd.DataFrame(rows, columns=TRANSCRIPT_COLUMNS + ['refusal_rate'])

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', type=int, default=100)
    ap.add_argument('--benchmarks', type=int, default=50)
    ap.add_argument('--metrics', type=int, default=8)
    ap.add_argument('--bases', type=int, default=4)
    ap.add_argument('--rounds', type=int, default=3)
    a = ap.parse_args(argv)
    warnings.simplefilter('ignore', RuntimeWarning)
    t0 = time.perf_counter()
    cube = synthetic_cube(a.models, a.benchmarks, a.metrics, n_bases=a.bases, domain_effect={'medical': -0.05},
                          tau=0.05, seed=0)
    print(f"cube {dict(cube.sizes)} built in {time.perf_counter() - t0:.2f} s "
          f"({int(np.isfinite(cube.safety_drift).sum())} derivative cells, {int((cube.q_value < 0.05).sum())} significant)")
    ders = [str(m) for m, b in zip(cube.model.values, cube.base.values) if str(b)]
    cells = [f'{b}/{k}' for b in cube.benchmark.values[:4] for k in cube.metric.values[:2]]
    metrics = [str(k) for k in cube.metric.values]
    alls = []

    t0 = time.perf_counter(); ex = DriftExplorer(cube); t_init = time.perf_counter() - t0
    print(f"DriftExplorer built in {t_init:.2f} s")
    alls += report('DriftExplorer', ex, [
        ('metric', [metrics[0], metrics[3], ALL]), ('domain', ['medical', 'legal', ALL]),
        ('sort', ['regressions', 'contradiction', 'lineage']), ('alpha', [0.01, 0.1, 0.05]),
        ('model', ders[5:8]), ('cell', cells[:3])], a.rounds)

    t0 = time.perf_counter(); cx = ContradictionExplorer(cube); t_init = time.perf_counter() - t0
    print(f"ContradictionExplorer built in {t_init:.2f} s")
    alls += report('ContradictionExplorer', cx, [('cell_x', cells[:3]), ('cell_y', cells[3:6]), ('alpha', [0.01, 0.1, 0.05])],
                   a.rounds)

    t0 = time.perf_counter(); mx = ModelExplorer(cube, transcripts=transcripts_for(cube)); t_init = time.perf_counter() - t0
    print(f"ModelExplorer built in {t_init:.2f} s")
    alls += report('ModelExplorer', mx, [('model', ders[1:4]), ('alpha', [0.01, 0.1, 0.05]), ('direction', ['less safe', 'safer', 'both'])],
                   a.rounds)

    t0 = time.perf_counter(); px = PredictivenessExplorer(cube); t_init = time.perf_counter() - t0
    print(f"PredictivenessExplorer built in {t_init:.2f} s")
    alls += report('PredictivenessExplorer', px, [('cell', cells[:3]), ('color_by', ['domain', 'method', 'family']),
                                                  ('show_flips', [False, True])], a.rounds)
    wall, cpu = [w for w, _ in alls], [c for _, c in alls]
    print(f"== median redraw over all {len(alls)} control changes: wall {statistics.median(wall):.3f} s, "
          f"cpu {statistics.median(cpu):.3f} s (max wall {max(wall):.3f} s, cpu {max(cpu):.3f} s; target 0.2 s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

if __name__ == '__main__':
    main()
