//! dfdx's run-time CUDA kernels, compiled at build time (`dfdx_kernels/README.md`).
//!
//! dfdx 0.13 compiles the kernels of `reshape` (of a non-contiguous tensor), `concat_along`,
//! `concat` and `stack` with NVRTC the first time they run, with the CUDA headers at paths baked
//! in on the build machine; and an NVRTC newer than the GPU's driver writes PTX the driver
//! refuses. It checks whether the module is loaded first, so loading our build-time PTX under
//! dfdx's module names means NVRTC never runs.

/// dfdx's name of each module, the functions dfdx gets from it, and the dfdx op whose
/// `cuda_kernel.rs` names them (`format!("{prefix}{}", E::NAME)`, `E::NAME` = `float` / `double`);
/// [`preload`]'s PTX is in the same order.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
const MODULES: [(&str, &[&str], &str); 10] = [
    ("reshape_fwd_float", &["reshape_fwd"], "reshape_to"),
    ("reshape_fwd_double", &["reshape_fwd"], "reshape_to"),
    ("reshape_bwd_float", &["reshape_bwd"], "reshape_to"),
    ("reshape_bwd_double", &["reshape_bwd"], "reshape_to"),
    ("concat_float", &["fwd", "bwd"], "concat_along"),
    ("concat_double", &["fwd", "bwd"], "concat_along"),
    ("concat_bwd_float", &["concat_bwd"], "concat"),
    ("concat_bwd_double", &["concat_bwd"], "concat"),
    ("stack_bwd_float", &["stack_bwd"], "stack"),
    ("stack_bwd_double", &["stack_bwd"], "stack"),
];

#[cfg(feature = "cuda")]
mod preload {
    use super::MODULES;
    use cudarc::nvrtc::Ptx;
    use dfdx::prelude::*;

    macro_rules! ptx {
        ($file:literal) => {
            include_str!(concat!(env!("OUT_DIR"), "/dfdx_kernels/", $file, ".ptx"))
        };
    }

    /// The PTX of each module of [`MODULES`], in its order (`build.rs` names the files after
    /// our sources: `concat_along` is dfdx's module `concat`).
    const PTX: [&str; MODULES.len()] = [
        ptx!("reshape_fwd_float"),
        ptx!("reshape_fwd_double"),
        ptx!("reshape_bwd_float"),
        ptx!("reshape_bwd_double"),
        ptx!("concat_along_float"),
        ptx!("concat_along_double"),
        ptx!("concat_bwd_float"),
        ptx!("concat_bwd_double"),
        ptx!("stack_bwd_float"),
        ptx!("stack_bwd_double"),
    ];

    /// Loads every module of [`MODULES`] that `dev` has not loaded yet.
    pub(crate) fn preload(dev: &Cuda) -> Result<(), CudaError> {
        let cuda = crate::cuda::driver::driver_device(dev)?;
        for ((module, functions, _), ptx) in MODULES.into_iter().zip(PTX) {
            if !cuda.has_func(module, functions[0]) {
                cuda.load_ptx(Ptx::from_src(ptx), module, functions)?;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "cuda")]
pub(crate) use preload::preload;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// dfdx 0.13.0's sources in cargo's registry (`$CARGO_HOME`, else `~/.cargo`).
    fn dfdx_sources() -> PathBuf {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
            .expect("neither CARGO_HOME nor HOME is set");
        let registry = home.join("registry/src");
        std::fs::read_dir(&registry)
            .unwrap_or_else(|e| panic!("{}: {e}", registry.display()))
            .map(|entry| entry.unwrap().path().join("dfdx-0.13.0"))
            .find(|dir| dir.is_dir())
            .unwrap_or_else(|| panic!("dfdx-0.13.0 not found under {}", registry.display()))
    }

    /// The contents of `const NAME: &str = "...";` in a Rust source, unescaped.
    fn string_const(source: &str, name: &str) -> String {
        let start = source
            .find(&format!("const {name}: &str = \""))
            .unwrap_or_else(|| panic!("no const {name}"))
            + format!("const {name}: &str = \"").len();
        let end = start + source[start..].find("\";").expect("unterminated string");
        source[start..end]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\")
    }

    #[test]
    fn the_copied_kernels_are_dfdx_0_13_0s() {
        let dfdx = dfdx_sources().join("src/tensor_ops");
        let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cuda/dfdx_kernels");
        // dfdx's files have CRLF line ends; rustc reads them as LF, so its strings have LF.
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .replace("\r\n", "\n")
        };
        for (op, name, file) in [
            ("reshape_to", "FWD_KERNEL", "reshape_fwd.cu"),
            ("reshape_to", "BWD_KERNEL", "reshape_bwd.cu"),
            ("concat_along", "KERNEL", "concat_along.cu"),
            ("concat", "BWD_KERNEL", "concat_bwd.cu"),
            ("stack", "BWD_KERNEL", "stack_bwd.cu"),
        ] {
            let theirs = string_const(&read(dfdx.join(op).join("cuda_kernel.rs")), name);
            assert_eq!(
                read(ours.join(file)),
                theirs,
                "{file} differs from dfdx's {op} {name}"
            );
        }
        // dfdx looks the modules up under these names, so that it finds ours loaded.
        for (module, functions, op) in super::MODULES {
            let source = read(dfdx.join(op).join("cuda_kernel.rs"));
            let prefix = module
                .strip_suffix("float")
                .or_else(|| module.strip_suffix("double"))
                .unwrap();
            assert!(
                source.contains(&format!("format!(\"{prefix}{{}}\", E::NAME)")),
                "dfdx's {op} names no module {prefix}{{E::NAME}}"
            );
            for f in functions {
                assert!(
                    source.contains(&format!("\"{f}\"")),
                    "dfdx's {op} gets no function {f}"
                );
            }
        }
        for header in ["cuda_utils.cuh", "compatibility.cuh"] {
            assert_eq!(
                read(ours.join(header)),
                read(dfdx.join("utilities").join(header)),
                "{header} differs from dfdx's"
            );
        }
    }
}
