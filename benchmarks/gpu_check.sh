#!/usr/bin/env bash
# The prepared GPU check (README "GPU check"): on a machine with CUDA, in a few minutes,
#   1. the tests that have a CUDA variant (pytest -m cuda: a killed / preempted job resumes to the same bytes),
#   2. one small CNN block trained twice gives identical bytes; killed mid-run and resumed, the same bytes again
#      (benchmarks/gpu_check.py),
#   3. the engine benchmark on CUDA (benchmarks/ensemble_training.py --device cuda) and its --compare of the
#      optimizer step and the layer norms against their per-tensor forms,
#   4. the cost calibration (benchmarks/calibrate_costs.py), where that benchmark exists,
# then a summary, one line per step; exit status 1 if any step failed.
#
#   benchmarks/gpu_check.sh           # DEVICE=cuda
#   benchmarks/gpu_check.sh --dry     # DEVICE=cpu, tiny sizes, tests only collected: keeps this script working in CI
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
DRY=""
if [[ ${1:-} == --dry ]]; then DRY="--dry"; DEVICE=cpu; fi
export PYTHONPATH="$PWD/workflow_scripts${PYTHONPATH:+:$PYTHONPATH}"
summary=()
failed=0

step() {  # step NAME COMMAND...: run it, record ok / FAILED and its wall time
    local name=$1 t0=$SECONDS
    shift
    echo "== $name: $*"
    if "$@"; then
        summary+=("$name: ok ($((SECONDS - t0)) s)")
    else
        summary+=("$name: FAILED ($((SECONDS - t0)) s)")
        failed=1
    fi
}

if [[ -n $DRY ]]; then
    step "cuda tests (collected)" "$PY" -m pytest -q -p no:cacheprovider -n 0 -m cuda --collect-only \
        tests/test_training_resume.py
    step "bytes twice, kill and resume" "$PY" benchmarks/gpu_check.py --device "$DEVICE" --dry
    step "engine benchmark" "$PY" benchmarks/ensemble_training.py --device "$DEVICE" --models lp_mlp2_bn \
        --members 2 --rounds 1 --seconds 0.2 --cores 2
    step "optimizer and norms, old vs new" "$PY" benchmarks/ensemble_training.py --device "$DEVICE" --compare \
        --models tiny_cnn --members 2 --rounds 1 --cores 1
else
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: use --dry'; \
print(torch.__version__, torch.cuda.get_device_name())" || exit 1
    step "cuda tests" "$PY" -m pytest -q -p no:cacheprovider -n 0 -m cuda tests/test_training_resume.py
    step "bytes twice, kill and resume" "$PY" benchmarks/gpu_check.py --device "$DEVICE"
    step "engine benchmark" "$PY" benchmarks/ensemble_training.py --device "$DEVICE" \
        --models uni_mlp256 tiny_cnn tiny_resnet --members 32 --rounds 1 --seconds 3
    step "optimizer and norms, old vs new" "$PY" benchmarks/ensemble_training.py --device "$DEVICE" --compare \
        --models uni_mlp256 tiny_cnn tiny_resnet --members 32 --rounds 3
    if [[ -f benchmarks/calibrate_costs.py ]]; then
        step "cost calibration" "$PY" benchmarks/calibrate_costs.py
    fi
fi

echo "== summary (device $DEVICE${DRY:+, dry})"
printf '%s\n' "${summary[@]}"
exit $failed
