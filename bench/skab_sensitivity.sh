#!/usr/bin/env bash
# SKAB with the defaults, then with one setting moved at a time; prints a markdown table.
# Usage: bench/skab_sensitivity.sh ../shared/data/skab
set -euo pipefail
data=${1:?usage: bench/skab_sensitivity.sh SKAB_DATA_DIR}
py=${PYTHON:-.venv/bin/python}
echo "| change | F1 | FAR, % | MAR, % |"
echo "|---|---|---|---|"
for change in "" fpr=1e-3 fpr=1e-5 window_len=5 window_len=20 window_len=30 variance=0.7 \
    variance=0.9 smoothing_halflife=0 smoothing_halflife=10 adapt_depth=0 adapt_depth=50 \
    adapt_depth=200 rebaseline_drop=0 adapt_floor=0 resolve_after=1 resolve_after=20; do
  args=()
  [ -n "$change" ] && args=(--set "$change")
  row=$("$py" bench/skab.py --data "$data" "${args[@]}" | sed -n 3p | cut -d'|' -f3-5)
  echo "| ${change:-defaults} |$row|"
done
