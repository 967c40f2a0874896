#!/usr/bin/env bash
# The GPU check in one call (issue 12, item 4), for a machine with an NVIDIA GPU whose image has
# PyTorch with CUDA and onnxruntime, no TensorRT and no network. Run from the repository root:
#
#     OUT=/some/dir tools/gpu_check.sh        # default OUT: ./gpu_check_out
#
# Steps (README, "GPU check"), each logged to $OUT/<step>.log with its exit status and seconds in
# $OUT/summary.txt; a failing step is reported and the script goes on to the next one:
#   env         nvidia-smi -L, Python, torch and its CUDA, the GPU; which packages are missing
#   pytest_gpu  pytest -m gpu -q: the tests that need CUDA
#   fit_tvl1    train.py fit --device cuda (fp16, loader workers) on generated clips, flow
#               tvl1-torch on the GPU, cached in a temporary folder; tiny settings, timed
#   flow_bench  bench.py --flow-bench --device cuda: TV-L1 ms per pair by batch size
#   bench_1     bench.py --device cuda --backend torch --precision fp16 --flow tvl1-torch: one
#               stream end to end (fps, stage times, glass-to-label latency)
#   streams_N   the same with --streams N live 25-fps streams, for a few N
#   fit_cached  fit_tvl1 again: every clip's flow now comes from the cache
# Nothing is installed: a step whose packages the image lacks is skipped with a line saying so.
# Every step runs under `timeout`, and the script stops starting steps near DEADLINE_S, so the
# whole run ends within 9 minutes.

set -u

OUT="${OUT:-./gpu_check_out}"
PY="${PYTHON:-python3}"
DEADLINE_S="${DEADLINE_S:-520}"  # 9 minutes less the slack for a step killed at its limit
STREAMS="${STREAMS:-1 4 16}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
# The flow cache of the fit steps holds hundreds of MB: kept out of $OUT, which comes back whole.
FLOW_CACHE=$(mktemp -d -t gpu-check-flow-XXXXXX)
trap 'rm -rf "$FLOW_CACHE"' EXIT
: >"$SUMMARY"
export PYTHONUNBUFFERED=1 OPENCV_LOG_LEVEL=SILENT

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT_S COMMAND...: run COMMAND under timeout, at most LIMIT_S seconds and never
# past the deadline; its output goes to $OUT/NAME.log, and its last lines to the terminal.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE_S - SECONDS))
    if ((left < 15)); then
        note "== $name: SKIPPED (only ${left}s left of the ${DEADLINE_S}s budget)"
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "== $name (at most ${limit}s): $*"
    local started=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    tail -n 15 "$OUT/$name.log" | sed 's/^/   /'
    local why=""
    ((rc == 124 || rc == 137)) && why=" (timed out)"
    note "== $name: exit $rc$why after $((SECONDS - started)) s"
    return 0
}

# have MODULE...: true when the interpreter imports every one of them.
have() {
    local m
    for m in "$@"; do
        "$PY" -c "import $m" >/dev/null 2>&1 || return 1
    done
}

# needs STEP MODULE...: true, or a line saying which package the image lacks and false.
needs() {
    local name=$1 m
    shift
    for m in "$@"; do
        if ! have "$m"; then
            note "== $name: SKIPPED (the image has no Python package '$m'; nothing is installed here)"
            return 1
        fi
    done
}

env_report() {
    echo "date: $(date -u +%FT%TZ)"
    echo "repository: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | wc -l) changed files"
    if command -v nvidia-smi >/dev/null; then
        timeout 20 nvidia-smi -L
        timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    else
        echo "nvidia-smi: not found"
    fi
    "$PY" - <<'EOF'
import importlib, platform, sys
print("python", sys.version.split()[0], platform.machine())
try:
    import torch
except ImportError as exc:
    print("torch: missing", exc)
    sys.exit(1)
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.0f} GiB", f"sm_{p.major}{p.minor}")
for name in ("numpy", "cv2", "tqdm", "pytest", "pytest_timeout", "onnx", "onnxruntime", "triton", "openvino",
             "gradio", "playwright", "tensorrt"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '')}")
    except Exception as exc:  # an import can fail in many ways on a foreign image
        print(f"  {name}: missing ({type(exc).__name__})")
ok = torch.cuda.is_available()
sys.exit(0 if ok else 3)
EOF
}

echo "GPU check: outputs in $OUT, at most ${DEADLINE_S}s"
export -f env_report
export PY
step env 60 bash -c env_report
cat "$OUT/env.log"

if ! have torch cv2 numpy tqdm; then
    note "== the image lacks torch, cv2 (opencv-contrib-python-headless), numpy or tqdm: the project cannot run here; stopping"
    exit 1
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    note "== torch sees no CUDA device here: the CUDA steps below fail, each with its own error line"
fi

# pytest: pytest.ini passes --timeout (pytest-timeout); without the plugin, replace the options.
if needs pytest_gpu pytest; then
    extra=()
    have pytest_timeout || extra+=(-o "addopts=-ra")
    have gradio || extra+=(--ignore=tests/ui)
    step pytest_gpu 150 "$PY" -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors "${extra[@]}"
fi

FIT=(train.py fit --device cuda --no-real --flow tvl1-torch --tvl1-preset fast --input-size 112
     --clips-per-class 6 --head-clips-per-class 3 --val-clips-per-class 2 --frames 32
     --tower-epochs 2 --head-epochs 1 --batch 64 --workers 8 --flow-cache "$FLOW_CACHE")
step fit_tvl1 120 "$PY" "${FIT[@]}" --out "$OUT/gpu_fit_tvl1.pt"

step flow_bench 120 "$PY" bench.py --flow-bench --device cuda

# Random weights whose contract names tvl1-torch (speed does not depend on the weights).
BENCH=(bench.py --device cuda --backend torch --precision fp16 --flow tvl1-torch)
step bench_1 90 "$PY" "${BENCH[@]}" --frames 200 --live-frames 75
for n in $STREAMS; do
    step "streams_$n" 45 "$PY" "${BENCH[@]}" --streams "$n" --seconds 10 --warmup 3 --generated-clip
done

step fit_cached 90 "$PY" "${FIT[@]}" --out "$OUT/gpu_fit_tvl1_cached.pt"

echo
echo "== summary ($SECONDS s in all; logs in $OUT)"
cat "$SUMMARY"
