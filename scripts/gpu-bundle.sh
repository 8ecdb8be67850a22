#!/usr/bin/env bash
# Builds the GPU check (examples/gpu_check, feature `cuda`) on this machine, which needs no GPU,
# and packs what scripts/gpu-check.sh needs on a GPU machine that has no Rust toolchain.
#
#   scripts/gpu-bundle.sh [BUNDLE_DIR]      # default: gpu-bundle/ (ignored by git)
#
# The NVRTC catch (RECIPE.md): dfdx compiles some kernels with NVRTC at run time, with two include
# directories baked into the binary as absolute paths of the build machine: the CUDA headers
# (`CUDA_INCLUDE_DIR`) and dfdx's build OUT_DIR (its .cuh files). Our build compiles those kernels
# with nvcc and `Cuda::open` loads them (src/cuda/dfdx_kernels/README.md), so NVRTC should not run;
# as a fallback, we build with both paths fixed under /tmp, read the exact baked paths back out of
# the binary, and ship the headers with the bundle; gpu-check.sh recreates those paths before it
# runs anything.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=$(mkdir -p "${1:-gpu-bundle}" && cd "${1:-gpu-bundle}" && pwd)
ENV_PREFIX=/tmp/dfdx-flows-cuda13      # CUDA 13.0 build env (wheels, stubs, fake nvidia-smi)
TARGET=/tmp/dfdx-flows-cuda-target     # cargo target dir: dfdx's OUT_DIR lies below it

if [ ! -f "$ENV_PREFIX/env.sh" ]; then
  cargo fetch --quiet
  CUDA_LITE=1 bash scripts/setup-cuda13-build-env.sh "$ENV_PREFIX"
fi
. "$ENV_PREFIX/env.sh"
CARGO_TARGET_DIR=$TARGET cargo build --release --features cuda --example gpu_check
bin=$TARGET/release/examples/gpu_check

# The include paths the binary will hand to NVRTC, as baked in.
include_dir=$(grep -aoE "$ENV_PREFIX/[^[:cntrl:]\"]*/include" "$bin" | sort -u | head -1)
out_dir=$(grep -aoE "$TARGET/release/build/dfdx-[0-9a-f]+/out" "$bin" | sort -u | head -1)
[ -n "$include_dir" ] && [ -f "$include_dir/cuda_fp16.h" ] || { echo "gpu-bundle: CUDA include dir not found in the binary" >&2; exit 1; }
[ -n "$out_dir" ] && ls "$out_dir"/*.cuh >/dev/null || { echo "gpu-bundle: dfdx OUT_DIR not found in the binary" >&2; exit 1; }

rm -rf "${BUNDLE:?}"/*
# Without debug info: 10 MB instead of 145 MB (symbols stay, for backtraces).
strip --strip-debug -o "$BUNDLE/gpu_check" "$bin" 2>/dev/null || cp "$bin" "$BUNDLE/gpu_check"
printf '%s\n%s\n' "$include_dir" "$out_dir" > "$BUNDLE/nvrtc-include-paths.txt"
# The whole CUDA include tree (cuda_fp16.h pulls in vector_types.h, nv/target, ...): 22 MB, ~3 MB packed.
tar -czf "$BUNDLE/cuda-include.tar.gz" -C "$include_dir" .
tar -czf "$BUNDLE/dfdx-cuh.tar.gz" -C "$out_dir" $(cd "$out_dir" && ls *.cuh)
cp scripts/gpu-check.sh "$BUNDLE/"
# The PyTorch side (run when the GPU machine has torch with CUDA): the tutorial's models.
mkdir -p "$BUNDLE/reference"
cp benches/reference/{bench_torch.py,tutorial_flows.py,gpu_side_by_side.py} "$BUNDLE/reference/"
du -sh "$BUNDLE"/*
echo "bundle ready: $BUNDLE (run: bash $BUNDLE/gpu-check.sh)"
