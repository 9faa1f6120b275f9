#!/usr/bin/env bash
# Every check CI runs, in order; stops at the first failure. Run through `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg PYTHONHASHSEED=0
step() { printf '\n== %s\n' "$*"; }
t0=$SECONDS

step "notebooks clean, library and README as the notebooks make them"
python tools/check_nbdev.py

step "notebook tests (nbdev_test; cells flagged slow or gpu are skipped)"
nbdev_test --n_workers 2 --timing

step "pytest tests/"
set +e
python -m pytest -q -p no:cacheprovider tests
rc=$?
set -e
if [ "$rc" -ne 0 ]; then echo "pytest failed (exit $rc)"; exit "$rc"; fi

step "docs render (processed notebooks executed and converted to HTML, without Quarto)"
python tools/render_docs.py

echo
echo "all checks passed in $((SECONDS - t0)) s"
