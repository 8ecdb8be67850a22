#!/bin/bash
# (Copied from the project's shared/cuda/ so that CI needs nothing outside this repository.)
# Sets up a GPU-less build environment for dfdx 0.13 (feature "cuda", cudarc 0.9.x) against CUDA 13.0,
# using only PyPI wheels (no NVIDIA driver, no GPU, no apt).
#
# usage: setup_cuda13_build_env.sh PREFIX [CUDARC_SRC_DIR]
#   PREFIX          where to install (gets PREFIX/site, PREFIX/cuda -> CUDA root, PREFIX/bin, PREFIX/env.sh)
#   CUDARC_SRC_DIR  cudarc crate source (default: newest ~/.cargo/registry/src/*/cudarc-0.9.*), used to
#                   list the driver (and, with CUDA_LITE=1, cublas/nvrtc) symbols the stubs must export;
#                   run `cargo fetch` in the project first so it exists.
#   CUDA_LITE=1     do not download cublas (423 MB) / nvrtc (90 MB) wheels; link against generated
#                   stub libcublas.so.13 / libnvrtc.so.13 instead (build-only host).
# afterwards:  . PREFIX/env.sh && cargo build --release
set -euo pipefail
PREFIX=$(mkdir -p "${1:?PREFIX}" && cd "$1" && pwd)
CUDARC_SRC=${2:-$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.9.* 2>/dev/null | sort -V | tail -1)}
[ -f "$CUDARC_SRC/src/driver/sys.rs" ] || { echo "cudarc source not found (run cargo fetch first): $CUDARC_SRC" >&2; exit 1; }
LITE=${CUDA_LITE:-0}

# CUDA 13.0.x: its PTX (ISA 9.0) and NVRTC output load on driver 580 (CUDA 13.0); 13.1+ would emit
# PTX ISA 9.1+, which a 580 driver rejects (CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
PKGS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
[ "$LITE" = 1 ] || PKGS+=(nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.1.0.3)

t0=$(date +%s)
python3 -m pip install --quiet --no-deps --no-cache-dir --disable-pip-version-check \
  --target "$PREFIX/site" "${PKGS[@]}"
t1=$(date +%s)
echo "pip install: $((t1 - t0)) s"

ROOT="$PREFIX/site/nvidia/cu13"          # all CUDA 13 wheels share this root: bin include lib nvvm
ln -sfn "$ROOT" "$PREFIX/cuda"
chmod +x "$ROOT"/bin/* "$ROOT"/nvvm/bin/* 2>/dev/null || true

# unversioned names for the linker (-lcublas -lcublasLt -lnvrtc)
for l in cublas cublasLt nvrtc cudart; do
  [ -e "$ROOT/lib/lib$l.so.13" ] && ln -sfn "lib$l.so.13" "$ROOT/lib/lib$l.so"
done

# stub libraries: empty functions with the right SONAME; cudarc's build.rs adds lib64/stubs to -L
STUBS="$ROOT/lib64/stubs"; mkdir -p "$STUBS"
mkstub() { # name soname symbols-file [C prelude]
  # every function returns 34 (CUDA_ERROR_STUB_LIBRARY): a binary that meets the stub at run time
  # (no driver) gets an error, not a crash; the real library replaces it on a GPU host.
  { printf '%s\n' "${4:-}"; awk '{print "int " $1 "(void){ return 34; }"}' "$3"; } > "$STUBS/$1.c"
  cc -shared -fPIC -Wl,-soname,"$2" -o "$STUBS/$1.so" "$STUBS/$1.c"
  rm "$STUBS/$1.c"
}
{ grep -oE 'pub fn cu[A-Za-z0-9_]+' "$CUDARC_SRC/src/driver/sys.rs" | awk '{print $3}'
  grep -oE '\bcu[A-Z][A-Za-z0-9_]*' "$ROOT/include/cuda.h"; } | sort -u \
  | grep -vxE 'cuGetErrorString|cuGetErrorName' > "$STUBS/libcuda.syms"
# cudarc formats DriverError via cuGetErrorString(...).unwrap(): these two must succeed.
mkstub libcuda libcuda.so.1 "$STUBS/libcuda.syms" \
  'int cuGetErrorString(int e, const char **s){ *s = "no NVIDIA driver: libcuda stub (CUDA_ERROR_STUB_LIBRARY)"; return 0; }
int cuGetErrorName(int e, const char **s){ *s = "CUDA_ERROR_STUB_LIBRARY"; return 0; }'
if [ "$LITE" = 1 ]; then
  grep -oE 'pub fn [A-Za-z0-9_]+' "$CUDARC_SRC/src/cublas/sys.rs" | awk '{print $3}' | sort -u > "$STUBS/libcublas.syms"
  grep -oE 'pub fn [A-Za-z0-9_]+' "$CUDARC_SRC/src/nvrtc/sys.rs" | awk '{print $3}' | sort -u > "$STUBS/libnvrtc.syms"
  mkstub libcublas libcublas.so.13 "$STUBS/libcublas.syms"
  mkstub libnvrtc libnvrtc.so.13 "$STUBS/libnvrtc.syms"
  echo 'void cublasLtCreate(void){}' > "$STUBS/lt.c"
  cc -shared -fPIC -Wl,-soname,libcublasLt.so.13 -o "$STUBS/libcublasLt.so" "$STUBS/lt.c"; rm "$STUBS/lt.c"
fi

# dfdx 0.13's build.rs always runs `nvidia-smi --query-gpu=compute_cap --format=csv` (it panics
# without it, even when CUDA_COMPUTE_CAP is set) and checks the value against `nvcc --list-gpu-code`.
mkdir -p "$PREFIX/bin"
cat > "$PREFIX/bin/nvidia-smi" <<'EOF'
#!/bin/sh
echo "compute_cap"
echo "${FAKE_COMPUTE_CAP:-9.0}"
EOF
chmod +x "$PREFIX/bin/nvidia-smi"

cat > "$PREFIX/env.sh" <<EOF
# source me before: cargo build --release (dfdx feature "cuda")
export CUDA_ROOT="$PREFIX/cuda"          # read by cudarc's and dfdx's build.rs (include/cuda.h, lib*, lib64/stubs)
export PATH="$PREFIX/bin:$PREFIX/cuda/bin:\$PATH"   # fake nvidia-smi + nvcc
export CUDA_COMPUTE_CAP=90               # dfdx: nvcc --gpu-architecture=sm_90, NVRTC arch sm_90 (H100/H200)
EOF
echo "done in $(( $(date +%s) - t0 )) s; du: $(du -sh "$PREFIX" | cut -f1)"
echo "next: . $PREFIX/env.sh && cargo build --release"
