#!/usr/bin/env bash
# The GPU runtime for a GPU host without network, prepared where the package index is reachable.
#
# Downloads onnxruntime-gpu and every wheel the runtime, the GPU tests and the exporter need
# on top of the host's own PyTorch, for one target Python and platform (default: CPython
# 3.12, manylinux_2_28 x86_64), into one folder (default wheels/gpu/, which git ignores).
# Not downloaded: torch and the NVIDIA CUDA/cuDNN wheels, which such hosts already have
# (scripts/gpu-check.sh finds and preloads them). Wheels over 60 MB are split into parts
# (`split -b 60m`, each under 64 MB) and the whole wheel removed; MANIFEST.sha256 lists the
# sha256 of every wheel (whole, as the index served it) and the parts it was split into.
#
#   bash scripts/gpu-wheels.sh                         # everything, into wheels/gpu/
#   bash scripts/gpu-wheels.sh --only onnxruntime-gpu  # just that wheel, no dependencies
#   bash scripts/gpu-wheels.sh --dry-run               # list what would be downloaded
#
# Settings (environment): GPU_WHEELS_DIR, GPU_PYTHON_VERSION (3.12), GPU_PLATFORM
# (manylinux_2_28_x86_64), ORT_GPU_VERSION (1.31.1), PYTHON (the pip to run: python3).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${GPU_WHEELS_DIR:-wheels/gpu}
py_version=${GPU_PYTHON_VERSION:-3.12}
platform=${GPU_PLATFORM:-manylinux_2_28_x86_64}
ort_version=${ORT_GPU_VERSION:-1.31.1}
PYTHON=${PYTHON:-python3}
part_size=60m
only=""
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only=$2; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "gpu-wheels.sh: unknown option $1 (use --only NAME, --dry-run)" >&2; exit 2 ;;
    esac
done
abi="cp${py_version/./}"
target=(--only-binary=:all: --python-version "$py_version" --implementation cp --abi "$abi" --platform "$platform")
# pip takes the platform tags literally: add the older manylinux tags a manylinux_2_28 host also runs.
if [[ $platform =~ ^manylinux_2_([0-9]+)_(.+)$ ]]; then
    for ((glibc = BASH_REMATCH[1] - 1; glibc >= 5; glibc--)); do
        target+=(--platform "manylinux_2_${glibc}_${BASH_REMATCH[2]}")
    done
    target+=(--platform "manylinux2014_${BASH_REMATCH[2]}" --platform "manylinux2010_${BASH_REMATCH[2]}")
    target+=(--platform "manylinux1_${BASH_REMATCH[2]}")
fi

# The runtime (the project's dependencies), the GPU tests, and the exporter without torch.
# pytorch-pretrained-biggan declares torch: it comes without dependencies, and its own
# (boto3, requests, tqdm) are listed here.
runtime=("onnxruntime-gpu==$ort_version")
while IFS= read -r requirement; do runtime+=("$requirement"); done < <(
    "$PYTHON" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for item in project["dependencies"]:
    print(item)
for item in project["optional-dependencies"]["export"]:
    if not item.startswith(("torch", "pytorch-pretrained-biggan")):
        print(item)
for item in project["optional-dependencies"]["test"]:
    if not item.startswith("ruff"):
        print(item)
EOF
)
runtime+=(setuptools wheel)  # to build the project's own wheel on the host, offline
no_deps=(pytorch-pretrained-biggan)

mkdir -p "$out"
if [ "$dry_run" = 1 ]; then
    echo "would download into $out for CPython $py_version $platform:"
    "$PYTHON" -m pip install --dry-run --quiet --ignore-installed --target "$(mktemp -d)" "${target[@]}" \
        --report - "${runtime[@]}" | "$PYTHON" -c '
import json, sys
for item in json.load(sys.stdin)["install"]:
    print("  " + item["metadata"]["name"], item["metadata"]["version"])'
    echo "  ${no_deps[*]} (no dependencies)"
    exit 0
fi
if [ -n "$only" ]; then
    spec=$only
    [ "$only" = onnxruntime-gpu ] && spec="onnxruntime-gpu==$ort_version"
    "$PYTHON" -m pip download --quiet --no-deps "${target[@]}" -d "$out" "$spec"
else
    "$PYTHON" -m pip download --quiet "${target[@]}" -d "$out" "${runtime[@]}"
    "$PYTHON" -m pip download --quiet --no-deps "${target[@]}" -d "$out" "${no_deps[@]}"
fi

# Split what is over the part size; write the manifest: "sha256  wheel  part part ...".
manifest="$out/MANIFEST.sha256"
: > "$manifest.partial"
limit=$((60 * 1024 * 1024))
for wheel in "$out"/*.whl; do
    name=$(basename "$wheel")
    sum=$(sha256sum "$wheel" | cut -d' ' -f1)
    if [ "$(stat -c %s "$wheel")" -gt "$limit" ]; then
        rm -f "$out/$name".part-*
        split -b "$part_size" -d -a 2 "$wheel" "$out/$name.part-"
        rm "$wheel"
        parts=$(cd "$out" && ls "$name".part-* | tr '\n' ' ')
        echo "$sum  $name  ${parts% }" >> "$manifest.partial"
    else
        echo "$sum  $name" >> "$manifest.partial"
    fi
done
# Wheels split in an earlier run: keep their lines.
if [ -f "$manifest" ]; then
    while read -r sum name parts; do
        [ -n "${parts:-}" ] && ! grep -q "  $name" "$manifest.partial" && echo "$sum  $name  $parts" >> "$manifest.partial"
    done < "$manifest"
fi
sort -k2 "$manifest.partial" > "$manifest" && rm "$manifest.partial"
echo "$(wc -l < "$manifest") wheels in $out ($(du -sh "$out" | cut -f1)); largest file $(ls -S "$out" | head -1)"
