#!/usr/bin/env bash
# Everything a lent GPU should run, as one command (about 10 minutes on one H100/H200):
#
#   bash benchmarks/cuda_all.sh [--dry-run] [OUT_DIR]
#
# 1. tests:  pytest's `cuda` tests (tests/test_cuda.py), less the SDPA probe test, which step 2
#            repeats with its table;
# 2. sdpa:   benchmarks/sdpa_probe.py, the SDPA kernel of each non-local block the models use,
#            with the no-Nq×Nk checks;
# 3. blocks: benchmarks/cuda_blocks.py, reference vs fast vs the common port;
# 4. models: benchmarks/cuda_models.py, the NL-I3D-50 training step, then the ResNet-50
#            overheads, eager and compiled.
# OUT_DIR (default cuda_results/<UTC time>) gets every table (NAME_cuda.md), each step's log in
# logs/, pytest's junit.xml and summary.md (steps, then all tables). Exit status 1 if any step
# fails or runs out of time: the run stops at BUDGET_S seconds (default 570), each step getting
# at most its cap and what the earlier ones left; a step cut short keeps the rows it wrote.
# --dry-run: the same steps on the CPU with tiny shapes (the `cuda` tests skip), tables named
# NAME_dryrun.md and marked as such; CI runs it (tests/test_cuda.py). PYTHON picks the
# interpreter (default .venv/bin/python, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=()
OUT=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=(--dry-run) ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {print substr($0, 3)}' "$0"; exit 0 ;;
    -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    *) OUT="$arg" ;;
  esac
done
OUT="${OUT:-cuda_results/$(date -u +%Y%m%dT%H%M%SZ)}"
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
fi
BUDGET_S="${BUDGET_S:-570}"
if [ ${#DRY[@]} -eq 0 ] && ! "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "$PYTHON sees no CUDA device: run this on a GPU machine, or pass --dry-run" >&2
  exit 1
fi
mkdir -p "$OUT/logs"
[ ${#DRY[@]} -eq 0 ] && nvidia-smi > "$OUT/logs/nvidia-smi.txt" 2>&1

SUMMARY="$OUT/summary.md"
{
  echo "# benchmarks/cuda_all.sh ${DRY[*]}"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
} > "$SUMMARY"

failed=0
step() {  # step NAME CAP_SECONDS COMMAND...: run COMMAND into logs/NAME.log within the budget
  local name=$1 cap=$2
  shift 2
  local left=$((BUDGET_S - SECONDS)) start=$SECONDS status rc
  local limit=$((cap < left ? cap : left))
  if [ "$limit" -le 0 ]; then
    status="not run: out of time"
    rc=1
  else
    timeout --signal=INT --kill-after=30 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
    rc=$?
    case $rc in
      0) status=ok ;;
      124 | 137) status="FAIL: stopped after $limit s" ;;
      *) status="FAIL: exit $rc" ;;
    esac
  fi
  [ "$rc" -ne 0 ] && failed=1
  echo "| $name | $status | $((SECONDS - start)) |" >> "$SUMMARY"
  echo "$name: $status ($((SECONDS - start)) s; log: $OUT/logs/$name.log)"
}

step tests 180 "$PYTHON" -m pytest tests/test_cuda.py -m cuda -k "not sdpa" -q \
  -p no:cacheprovider --junitxml="$OUT/junit.xml"
step sdpa 120 "$PYTHON" benchmarks/sdpa_probe.py --out "$OUT" "${DRY[@]}"
step blocks 150 "$PYTHON" benchmarks/cuda_blocks.py --out "$OUT" "${DRY[@]}"
step models 300 "$PYTHON" benchmarks/cuda_models.py --out "$OUT" "${DRY[@]}"

for table in "$OUT"/*_cuda.md "$OUT"/*_dryrun.md; do
  [ -f "$table" ] && printf '\n## %s\n\n%s\n' "$(basename "$table")" "$(cat "$table")" >> "$SUMMARY"
done
echo "summary: $SUMMARY"
exit "$failed"
