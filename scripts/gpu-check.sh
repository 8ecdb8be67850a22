#!/usr/bin/env bash
# Runs the GPU check on a machine with an NVIDIA GPU, its driver and the CUDA 13 libraries, and no
# Rust toolchain. Made by scripts/gpu-bundle.sh, run from the bundle:
#
#   bash gpu-bundle/gpu-check.sh [gpu_check arguments, e.g. --steps 10 multiscale]
#
# Reports CPU-vs-GPU agreement of log p(x) per model (≤ 1e-4 relative), seconds per training
# step (batch 128), images/s, bpd and sampling time per 64 images, GPU memory, and the peak GPU
# memory seen by nvidia-smi. Exit status: gpu_check's (0 = all agree and ran).
# The kernels are built for compute capability 9.0 (H100/H200; CUDA_COMPUTE_CAP in gpu-bundle.sh).
# Library folders beyond the usual places: CUDA_LIB_DIRS=dir1:dir2.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LIMIT_S=${GPU_CHECK_TIMEOUT:-420}

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
( peak=0
  while sleep 0.2; do
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
    [ -n "$used" ] && [ "$used" -gt "$peak" ] 2>/dev/null && peak=$used && echo "$peak" > "$peak_file"
  done ) &
poller=$!
start=$(date +%s)
timeout "$LIMIT_S" "$HERE/gpu_check" --device cuda --json "${OUT:-$HERE}/gpu-check.jsonl" "$@"
rc=$?
kill "$poller" 2>/dev/null
peak=$(cat "$peak_file" 2>/dev/null)
echo "peak GPU memory in use (nvidia-smi, whole GPU): ${peak:-?} MiB"
echo "gpu-check: exit $rc after $(( $(date +%s) - start )) s"
exit $rc
