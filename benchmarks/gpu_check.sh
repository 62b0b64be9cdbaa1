#!/usr/bin/env bash
# The CUDA path of confirm (issue 16 item 3), run once on a machine with a GPU, unattended, in under 8 minutes:
#   1. a Function whose forward needs CUDA: `inconclusive: needs a CUDA device` with --device cpu, a verdict
#      from torch with --device cuda;
#   2. the fixtures confirmed with --device cuda: verdict counts, the first inconclusive reasons, elapsed time.
# If CUDA cannot initialize under the default --confirm-memory (4096 MB), it says so and retries at 8192 MB
# (measured to work on an H200). Usage: benchmarks/gpu_check.sh [python]  (default: python3 on PATH)
set -u
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
JOBS=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi -L
timeout 60 "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'

lint() {  # lint <seconds> <args...>: confirm as JSON into $work/out.json, stderr into $work/err.txt
    local seconds=$1
    shift
    timeout --kill-after=10 "$seconds" "$PYTHON" -m autograd_lint --confirm --no-cache --python "$PYTHON" \
        -j "$JOBS" --output-format json "$@" >"$work/out.json" 2>"$work/err.txt"
    echo "exit $? after $SECONDS s"
    cat "$work/err.txt"
}

verdicts() {  # counts of verdicts in $work/out.json, then the first inconclusive reasons
    "$PYTHON" - "$work/out.json" <<'PY'
import collections, json, sys
try:
    entries = [e for e in json.load(open(sys.argv[1])) if "confirm" in e]
except ValueError:
    sys.exit("no JSON output")
counts = collections.Counter(e["confirm"]["verdict"] for e in entries)
print("verdicts:", dict(counts), "of", len(entries))
for e in [e for e in entries if e["confirm"]["verdict"] != "confirmed"][:10]:
    print(f'  {e["path"]}:{e["line"]} {e["code"]} {e["confirm"]["verdict"]}: {e["confirm"]["evidence"][:300]}')
PY
}

memory=4096
echo "== preflight with --device cuda (--confirm-memory $memory)"
SECONDS=0
lint 90 --device cuda --confirm-memory "$memory" --select AGL002 fixtures/motivating/case_c_arity.py
if grep -q "cannot run with --device cuda" "$work/err.txt"; then
    memory=8192
    echo "== CUDA cannot initialize at 4096 MB: retrying with --confirm-memory $memory"
    SECONDS=0
    lint 90 --device cuda --confirm-memory "$memory" --select AGL002 fixtures/motivating/case_c_arity.py
fi
verdicts

echo "== a forward that calls .cuda(): --device cpu, then --device cuda"
cat >"$work/on_gpu.py" <<'PY'
from torch.autograd import Function


class ScaleOnGpu(Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.cuda() * scale

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.scale
PY
for device in cpu cuda; do
    SECONDS=0
    lint 90 --device "$device" --confirm-memory "$memory" "$work/on_gpu.py"
    verdicts
done

echo "== the fixtures with --device cuda (--confirm-memory $memory, -j $JOBS)"
SECONDS=0
lint 240 --device cuda --confirm-memory "$memory" fixtures/
verdicts
