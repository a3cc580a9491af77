#!/usr/bin/env bash
# The GPU check: one command on a host with an NVIDIA GPU and no network, under 8 minutes.
#
#   bash scripts/gpu-check.sh [--wheels DIR] [--models DIR] [--out DIR] [--skip-tests]
#
# 1. Joins the split wheels of --wheels (default wheels/gpu/, made by scripts/gpu-wheels.sh)
#    and checks every wheel's sha256 against its MANIFEST.sha256.
# 2. Builds this tree's wheel and installs it with onnxruntime-gpu, the runtime and the test
#    tools from that folder alone (pip --no-index --find-links) into a private --target
#    directory; nothing outside the results folder is changed.
# 3. Finds the CUDA and cuDNN libraries the host's NVIDIA wheels brought (nvidia/*/lib in its
#    site-packages, beside its PyTorch) and makes them visible where
#    onnxruntime.preload_dlls() looks, instead of installing its own.
# 4. Reports the machine and the install (the CPU part). Without an NVIDIA GPU, or where a
#    CUDA session does not start, it says so and exits 0 here.
# 5. Models: biggan-deep-{128,256,512}-fp16.onnx from --models where brought along, else
#    exported (fp16, seeded random weights) with the host's PyTorch, in parallel.
# 6. pytest -m gpu; ganterp-fast bench at 128/256/512 on cuda:0 (IO binding with the fp16
#    GEMM peak, then CUDA graphs); a 60-second render at 512 with --codec auto, the encoder
#    it chose shown; TensorRT last, where its libraries exist.
# Everything goes under --out (default: $OUT when set, else ./gpu-check-results/DATE):
# bench-MODE-RES.json / .md, pytest.log, render.log, install.log, env.txt and summary.md.
# Each step has its own time limit inside an overall budget (GPU_CHECK_BUDGET_S, 450 s).
set -uo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
repo=$PWD
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }  # paths given are the caller's
started=$SECONDS
budget=${GPU_CHECK_BUDGET_S:-450}
PYTHON=${PYTHON:-python3}
py=("$PYTHON" -P)  # -P: never import the tree's own ganterp_fast/ folder instead of the installed package
wheels=wheels/gpu
models_in=""
out=""
skip_tests=0
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) wheels=$(absolute "$2"); shift 2 ;;
        --models) models_in=$(absolute "$2"); shift 2 ;;
        --out) out=$(absolute "$2"); shift 2 ;;
        --skip-tests) skip_tests=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "gpu-check.sh: unknown option $1 (use --wheels DIR, --models DIR, --out DIR, --skip-tests)" >&2; exit 2 ;;
    esac
done
out=${out:-${OUT:-$repo/gpu-check-results/$(date -u +%Y%m%d-%H%M%S)}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
summary="$out/summary.md"
: > "$summary"

say() { echo "[gpu-check $((SECONDS - started))s] $*" | tee -a "$out/steps.log" >&2; }
note() { echo "$*" >> "$summary"; }
left() { echo $((budget - (SECONDS - started))); }
# step LIMIT_S LOG command...: runs with at most LIMIT_S seconds (less when the budget is short).
step() {
    local limit=$1 log=$2
    shift 2
    local remaining
    remaining=$(left)
    [ "$remaining" -lt "$limit" ] && limit=$remaining
    if [ "$limit" -le 5 ]; then
        say "out of time: skipped $*"
        note "- skipped (time budget spent): \`$*\`"
        return 124
    fi
    local began=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1 || rc=$?
    say "rc $rc after $((SECONDS - began)) s: $* (log: $(basename "$log"))"
    return $rc
}
fail() { say "$*"; note "**failed:** $*"; exit 1; }

note "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
note ""

# -- 1. wheels: join the parts, check every sha256 -------------------------------------------
manifest="$wheels/MANIFEST.sha256"
[ -f "$manifest" ] || fail "no $manifest: run scripts/gpu-wheels.sh where the index is reachable and bring $wheels here"
mkdir -p "$work/wheels"
while read -r sum name parts; do
    [ -z "$sum" ] && continue
    if [ -n "${parts:-}" ]; then
        (cd "$wheels" && cat $parts) > "$work/wheels/$name" || fail "cannot join the parts of $name"
    else
        ln -s "$(cd "$wheels" && pwd)/$name" "$work/wheels/$name" || fail "$name is missing from $wheels"
    fi
    echo "$sum  $work/wheels/$name" >> "$work/sums"
done < "$manifest"
sha256sum --quiet -c "$work/sums" > "$out/sha256.log" 2>&1 || fail "sha256 mismatch (see sha256.log): bring the wheels again"
say "$(wc -l < "$work/sums") wheels joined and checked"

# -- 2. install into a private directory, from the folder alone -------------------------------
target="$work/site"
install_log="$out/install.log"
step 120 "$install_log" "$PYTHON" -m pip wheel --no-deps --no-index --find-links "$work/wheels" -w "$work/dist" "$repo" \
    || fail "building the project's wheel failed (install.log)"
step 180 "$install_log" "$PYTHON" -m pip install --no-index --find-links "$work/wheels" --find-links "$work/dist" \
    --target "$target" ganterp-fast onnxruntime-gpu pytest psutil onnx onnxscript boto3 requests \
    || fail "installing from $wheels failed (install.log)"
step 60 "$install_log" "$PYTHON" -m pip install --no-index --find-links "$work/wheels" --no-deps \
    --target "$target" pytorch-pretrained-biggan || say "pytorch-pretrained-biggan not installed: no exports here"

# -- 3. the host's CUDA/cuDNN libraries --------------------------------------------------------
host_nvidia=$("$PYTHON" -c 'import nvidia, sys; print(next(iter(nvidia.__path__)))' 2>/dev/null || true)
if [ -n "$host_nvidia" ] && [ -d "$host_nvidia" ]; then
    ln -s "$host_nvidia" "$target/nvidia"  # onnxruntime.preload_dlls() looks in nvidia/ beside onnxruntime/
    libs=$(find "$host_nvidia" -mindepth 2 -maxdepth 3 -type d -name lib | sort | tr '\n' ':')
    export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:-}"
    say "CUDA/cuDNN libraries from $host_nvidia: $(ls "$host_nvidia" | tr '\n' ' ')"
else
    say "no NVIDIA CUDA wheels in the host's site-packages; the system's CUDA libraries are used if any"
fi
export PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}"
export GANTERP_CACHE_DIR="$work/cache"
gf=("${py[@]}" -m ganterp_fast)

# -- 4. the machine and the install (the CPU part) ---------------------------------------------
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(nproc) CPUs)"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>&1
    else
        echo "nvidia-smi: not found"
    fi
    "${py[@]}" - <<'EOF'
import sys
import onnxruntime as ort
import ganterp_fast
print("python", sys.version.split()[0], "| ganterp-fast", ganterp_fast.__version__, "from", ganterp_fast.__file__)
print("onnxruntime", ort.__version__, "from", ort.__file__)
print("providers", ort.get_available_providers())
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())
except ImportError:
    print("torch: not installed")
EOF
} > "$out/env.txt" 2>&1
cat "$out/env.txt" >&2
note '```'
cat "$out/env.txt" >> "$summary"
note '```'

gpu_probe=$("${py[@]}" - 2>&1 <<'EOF'
import logging
from ganterp_fast.engine.backends.providers import CUDA, preload_cuda_libraries
import onnxruntime as ort
from onnx import TensorProto, helper

logging.basicConfig(level=logging.INFO)
if CUDA not in ort.get_available_providers():
    raise SystemExit(f"no CUDA provider in this onnxruntime ({ort.get_available_providers()})")
preload_cuda_libraries(ort)
graph = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"])], "probe",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 9
session = ort.InferenceSession(model.SerializeToString(), providers=[CUDA, "CPUExecutionProvider"])
if CUDA not in session.get_providers():
    raise SystemExit("the CUDA provider did not start (no GPU, driver or CUDA/cuDNN libraries)")
print("CUDA session: ok")
EOF
)
probe_rc=$?
echo "$gpu_probe" > "$out/cuda-probe.log"
if ! command -v nvidia-smi > /dev/null || [ $probe_rc -ne 0 ]; then
    why=$(echo "$gpu_probe" | tail -1)
    command -v nvidia-smi > /dev/null || why="no nvidia-smi: no NVIDIA driver or GPU on this machine"
    say "no usable GPU here ($why): the CPU part is done, the GPU part is skipped"
    note ""
    note "No GPU on this machine ($why): install and environment checked, nothing GPU-side measured."
    exit 0
fi
say "CUDA session starts"

# -- 5. the models -------------------------------------------------------------------------------
models="$work/models"  # 100-200 MB each: not kept with the results
mkdir -p "$models"
pids=()
for res in 128 256 512; do
    file="$models/biggan-deep-$res-fp16.onnx"
    if [ -n "$models_in" ] && [ -f "$models_in/biggan-deep-$res-fp16.onnx" ]; then
        ln -s "$(cd "$models_in" && pwd)/biggan-deep-$res-fp16.onnx" "$file"
        continue
    fi
    threads=$(( $(nproc) / 3 > 0 ? $(nproc) / 3 : 1 ))
    OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
        step 300 "$out/export-$res.log" "${gf[@]}" export "biggan-deep-$res" --weights random --precision fp16 -o "$file" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
ready=()
for res in 128 256 512; do
    [ -e "$models/biggan-deep-$res-fp16.onnx" ] && ready+=("$models/biggan-deep-$res-fp16.onnx")
done
[ ${#ready[@]} -gt 0 ] || fail "no model: none brought along (--models) and the exports failed (export-*.log)"
say "models: ${ready[*]}"

# -- 6. tests, bench, render -------------------------------------------------------------------
if [ "$skip_tests" = 0 ]; then
    step 120 "$out/pytest.log" "${py[@]}" -m pytest -m gpu -q -p no:cacheprovider \
        tests/test_generator.py tests/test_providers.py tests/test_bench.py
    note ""
    note "pytest -m gpu: $(tail -1 "$out/pytest.log")"
fi

# One bench run per model and mode, so a step that runs out of time costs only its own figures.
bench() {  # bench MODE FLAGS...: every ready model into bench-MODE-RES.{json,md}
    local mode=$1 model res name rc
    shift
    note ""
    note "## bench: $mode"
    for model in "${ready[@]}"; do
        res=${model##*biggan-deep-}
        name="$mode-${res%%-*}"
        step "${GPU_CHECK_BENCH_LIMIT_S:-100}" "$out/bench-$name.log" "${gf[@]}" bench "$model" --device cuda:0 \
            --batch-sizes 1,4,16,64 --seconds "${GPU_CHECK_SECONDS:-1.5}" --json "$out/bench-$name.json" -y "$@"
        rc=$?
        sed -n '/^ganterp-fast bench/,$p' "$out/bench-$name.log" > "$out/bench-$name.md"
        note ""
        [ $rc -ne 0 ] && note "(rc $rc, see bench-$name.log)"
        cat "$out/bench-$name.md" >> "$summary"
    done
}
bench io-binding
bench cuda-graph --cuda-graph

if [ -e "$models/biggan-deep-512-fp16.onnx" ]; then
    "${py[@]}" -c "from ganterp_fast.engine.audio.example import write_example; write_example('$work/song.wav', seconds=60)"
    "${py[@]}" -c "from ganterp_fast.engine.video.encode import probe_h264_encoders as p, choose_h264_encoder as c
print('H.264 encoders that open here:', ', '.join(p()), '| --codec auto takes:', c('auto'))" > "$out/render.log" 2>&1
    step 150 "$out/render.log" "${gf[@]}" render "$work/song.wav" -o "$out/render-512.mp4" \
        --model "$models/biggan-deep-512-fp16.onnx" --device cuda:0 --codec auto -y -v
    note ""
    note "## render: 60 s of music at 512, --codec auto"
    note ""
    note '```'
    grep -v '^$' "$out/render.log" | grep -v 'render:.*frame/s' | tail -8 >> "$summary"
    note '```'
    rm -f "$out/render-512.mp4"  # 60 s of abstract 512 px frames: the figures are what matter
fi

# TensorRT last: its engine builds take minutes. Its libraries: on the loader's path, or
# NVIDIA's tensorrt wheels beside the CUDA ones.
trt=$({ ldconfig -p 2>/dev/null | grep -o '/[^ ]*libnvinfer\.so\.[0-9]*$'
    [ -n "$host_nvidia" ] && find "$(dirname "$host_nvidia")" -maxdepth 2 -name 'libnvinfer.so.*'; } 2>/dev/null | head -1)
if [ -n "$trt" ]; then
    export LD_LIBRARY_PATH="$(dirname "$trt"):${LD_LIBRARY_PATH:-}"
    GPU_CHECK_BENCH_LIMIT_S=150 bench tensorrt --tensorrt --no-peak
else
    say "TensorRT libraries not found: the TensorRT run is skipped"
    note ""
    note "TensorRT: its libraries (libnvinfer) are not on this host; not measured."
fi
say "done in $((SECONDS - started)) s: $summary"
cat "$summary"
