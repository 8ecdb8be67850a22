#!/usr/bin/env bash
# Runs the GPU check on a machine with an NVIDIA GPU, its driver and the CUDA 13 libraries, and no
# Rust toolchain. Made by scripts/gpu-bundle.sh, run from the bundle:
#
#   bash gpu-bundle/gpu-check.sh [gpu_check arguments, e.g. --steps 10 multiscale]
#
# Reports CPU-vs-GPU agreement of log p(x) per model (≤ 1e-4 relative), seconds per training
# step (batch 128) and the host time to queue it, images/s, bpd and sampling time per 64 images,
# GPU memory, the peak GPU memory seen by nvidia-smi, and the probe of gpu_check (launch cost,
# elementwise ops, convolution vs its matrix product, allocation cache off/on). Then, if a
# python3 with torch and a GPU is found (or PYTHON=...), the same figures for the tutorial's
# PyTorch models (reference/bench_torch.py --device cuda) and a table of both.
# Exit status: gpu_check's (0 = all agree and ran). Results: $OUT (or the bundle folder):
# gpu-check.jsonl, torch-gpu.jsonl, side-by-side.md.
# The kernels are built for compute capability 9.0 (H100/H200; CUDA_COMPUTE_CAP in gpu-bundle.sh).
# Library folders beyond the usual places: CUDA_LIB_DIRS=dir1:dir2.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LIMIT_S=${GPU_CHECK_TIMEOUT:-300}          # ours; PyTorch gets TORCH_TIMEOUT (150 s)
RESULTS=${OUT:-$HERE}

# 1. Recreate the include paths baked into the binary (see gpu-bundle.sh), if they are not there.
{ read -r include_dir; read -r out_dir; } < "$HERE/nvrtc-include-paths.txt"
if [ ! -f "$include_dir/cuda_fp16.h" ]; then
  mkdir -p "$include_dir" && tar -xzf "$HERE/cuda-include.tar.gz" -C "$include_dir" \
    || { echo "gpu-check: cannot create $include_dir (NVRTC needs the CUDA headers there)" >&2; exit 2; }
fi
if ! ls "$out_dir"/*.cuh >/dev/null 2>&1; then
  mkdir -p "$out_dir" && tar -xzf "$HERE/dfdx-cuh.tar.gz" -C "$out_dir" \
    || { echo "gpu-check: cannot create $out_dir (NVRTC needs dfdx's headers there)" >&2; exit 2; }
fi

# 2. The CUDA libraries: the driver's libcuda, and libcublas/libcublasLt/libnvrtc of CUDA 13
#    (a CUDA toolkit, or the nvidia-* wheels of a PyTorch install).
IFS=: read -r -a dirs <<< "${CUDA_LIB_DIRS:-}"
dirs+=(/usr/local/nvidia/lib64 /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu)
for py in python3 /opt/*/bin/python3 /usr/local/bin/python3; do
  command -v "$py" >/dev/null 2>&1 || continue
  site=$("$py" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null) || continue
  while read -r s; do
    for d in "$s"/nvidia/cu13/lib "$s"/nvidia/*/lib; do [ -d "$d" ] && dirs+=("$d"); done
  done <<< "$site"
done
LD_LIBRARY_PATH=$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
missing=$(ldd "$HERE/gpu_check" | grep "not found")
if [ -n "$missing" ]; then
  echo "gpu-check: libraries not found (set CUDA_LIB_DIRS=dir1:dir2 to their folders):" >&2
  echo "$missing" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true

# 3. Run, polling nvidia-smi for the peak memory in use.
peak_file=$(mktemp)
rm -f "$RESULTS/gpu-check.jsonl" "$RESULTS/torch-gpu.jsonl" "$RESULTS/side-by-side.md"
( peak=0
  while sleep 0.2; do
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
    [ -n "$used" ] && [ "$used" -gt "$peak" ] 2>/dev/null && peak=$used && echo "$peak" > "$peak_file"
  done ) &
poller=$!
start=$(date +%s)
timeout "$LIMIT_S" "$HERE/gpu_check" --device cuda --json "$RESULTS/gpu-check.jsonl" --probe "$@"
rc=$?
kill "$poller" 2>/dev/null
peak=$(cat "$peak_file" 2>/dev/null)
echo "peak GPU memory in use (nvidia-smi, whole GPU): ${peak:-?} MiB"
echo "gpu-check: exit $rc after $(( $(date +%s) - start )) s"

# 4. PyTorch on the same GPU: the same models, batch and number of steps as above.
models=() ; torch_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    simple|vardeq|multiscale) models+=("$1") ;;
    --steps|--batch) torch_args+=("$1" "$2"); shift ;;
  esac
  shift
done
[ ${#models[@]} -gt 0 ] || models=(simple vardeq multiscale)
torch_py=""
for py in ${PYTHON:-} python3 /opt/*/bin/python3 /usr/local/bin/python3; do
  command -v "$py" >/dev/null 2>&1 || continue
  if "$py" -c 'import torch, numpy; assert torch.cuda.is_available()' >/dev/null 2>&1; then torch_py=$py; break; fi
done
if [ -z "$torch_py" ]; then
  echo "gpu-check: no python3 with torch, numpy and a GPU found (set PYTHON=...): no PyTorch comparison"
else
  echo "PyTorch side: $("$torch_py" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())')"
  models_csv=$(IFS=,; echo "${models[*]}")
  timeout "${TORCH_TIMEOUT:-150}" "$torch_py" -B "$HERE/reference/bench_torch.py" --device cuda \
      --models "$models_csv" --repeats 3 "${torch_args[@]}" | tee "$RESULTS/torch-gpu.jsonl"
  if [ -s "$RESULTS/gpu-check.jsonl" ]; then
    "$torch_py" -B "$HERE/reference/gpu_side_by_side.py" "$RESULTS/gpu-check.jsonl" "$RESULTS/torch-gpu.jsonl" \
        | tee "$RESULTS/side-by-side.md"
  fi
fi
exit $rc
