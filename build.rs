//! Generates code that would be tedious and error-prone by hand:
//!
//! - `dims.rs`: the literal dimension impls of `src/shape.rs` (`Halve`, `Double`, `Quadruple`,
//!   and the squeeze/split traits whose error messages name the offending size). Literal impls
//!   (`impl Halve for Const<28> { type Output = Const<14>; }`) keep `cargo check` fast:
//!   docs/ARCHITECTURE.md §2 measured 0.6 s for 3,072 literal impls against 4.6 s for the same via const
//!   arithmetic in a macro.
//! - `chain.rs`: the `TensorCollection` and `Flow` impls of `Chain` for tuples of 1 to `MAX_CHAIN` layers (`src/chain.rs`).
//! - with feature `cuda`: PTX of dfdx's run-time kernels (`src/cuda/dfdx_kernels/README.md`),
//!   compiled with `nvcc` for `sm_$CUDA_COMPUTE_CAP` (else the compute capability that
//!   `nvidia-smi` reports), as dfdx compiles its own kernels.
use std::fmt::Write;

/// Largest size that can be halved (even sizes only).
const MAX_HALVE: usize = 4096;
/// Largest size that can be doubled.
const MAX_DOUBLE: usize = 2048;
/// Largest size that can be quadrupled.
const MAX_QUADRUPLE: usize = 1024;
/// Longest tuple of layers a `Chain` takes.
const MAX_CHAIN: usize = 16;
/// dfdx implements `ModuleFields` for tuples of at most 6 fields: larger chains visit their
/// layers in nested groups of this size.
const GROUP: usize = 6;

fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out.join("dims.rs"), dims()).unwrap();
    std::fs::write(out.join("chain.rs"), chains()).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        dfdx_kernels_ptx(&out);
    }
}

/// The kernels of `src/cuda/dfdx_kernels/` as `OUT_DIR/dfdx_kernels/{name}_{float,double}.ptx`.
fn dfdx_kernels_ptx(out: &std::path::Path) {
    const KERNELS: [&str; 5] = [
        "reshape_fwd",
        "reshape_bwd",
        "concat_along",
        "concat_bwd",
        "stack_bwd",
    ];
    let src = std::path::Path::new("src/cuda/dfdx_kernels");
    let dir = out.join("dfdx_kernels");
    std::fs::create_dir_all(&dir).unwrap();
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| {
        let out = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
            .output()
            .expect("feature `cuda`: set CUDA_COMPUTE_CAP (e.g. 90) or put `nvidia-smi` on PATH");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .replace('.', "")
    });
    let cap = cap.trim();
    assert!(
        !cap.is_empty() && cap.chars().all(|c| c.is_ascii_digit()),
        "feature `cuda`: no compute capability (CUDA_COMPUTE_CAP={cap:?}); set CUDA_COMPUTE_CAP, e.g. 90"
    );
    for header in ["cuda_utils.cuh", "compatibility.cuh"] {
        std::fs::copy(src.join(header), dir.join(header)).unwrap();
    }
    let mut children = Vec::new();
    for kernel in KERNELS {
        let template = std::fs::read_to_string(src.join(format!("{kernel}.cu"))).unwrap();
        for ty in ["float", "double"] {
            let cu = dir.join(format!("{kernel}_{ty}.cu"));
            // dfdx substitutes `$Ty` (concat, stack) or `$T` (reshape).
            std::fs::write(&cu, template.replace("$Ty", ty).replace("$T", ty)).unwrap();
            let child = std::process::Command::new("nvcc")
                .arg(format!("--gpu-architecture=sm_{cap}"))
                .arg("--ptx")
                .arg("-o")
                .arg(cu.with_extension("ptx"))
                .arg("-I")
                .arg(&dir)
                .arg(&cu)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("feature `cuda`: `nvcc` did not start; put the CUDA toolkit's bin on PATH");
            children.push((cu, child));
        }
    }
    for (cu, child) in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "nvcc failed on {}:\n{}{}",
            cu.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn dims() -> String {
    let mut src = String::new();
    for n in (2..=MAX_HALVE).step_by(2) {
        let h = n / 2;
        writeln!(
            src,
            "impl Halve for Const<{n}> {{ type Output = Const<{h}>; }}"
        )
        .unwrap();
        // The squeeze and split traits carry the whole image shape as parameters so that
        // their error messages can print it; only the halved size is literal here.
        writeln!(
            src,
            "#[diagnostic::do_not_recommend] impl<const C: usize, const W: usize> SqueezeHeight<C, {n}, W> for () {{ type Half = Const<{h}>; }}"
        )
        .unwrap();
        writeln!(
            src,
            "#[diagnostic::do_not_recommend] impl<const C: usize, const H: usize> SqueezeWidth<C, H, {n}> for () {{ type Half = Const<{h}>; }}"
        )
        .unwrap();
        writeln!(
            src,
            "#[diagnostic::do_not_recommend] impl<const H: usize, const W: usize> SplitChannels<{n}, H, W> for () {{ type Half = Const<{h}>; }}"
        )
        .unwrap();
    }
    for n in 1..=MAX_DOUBLE {
        let d = 2 * n;
        writeln!(
            src,
            "impl Double for Const<{n}> {{ type Output = Const<{d}>; }}"
        )
        .unwrap();
        // The channel counts of coupling networks (src/layers/coupling.rs), literal so that a
        // network of other channel counts matches no impl and gets the trait's own message.
        writeln!(
            src,
            "#[diagnostic::do_not_recommend] impl crate::layers::coupling::CouplingNetwork<{n}, Const<{n}>, Const<{d}>> for () {{}}"
        )
        .unwrap();
        writeln!(
            src,
            "#[diagnostic::do_not_recommend] impl crate::layers::coupling::ConditionalCouplingNetwork<{n}, Const<{d}>, Const<{d}>> for () {{}}"
        )
        .unwrap();
    }
    for n in 1..=MAX_QUADRUPLE {
        let q = 4 * n;
        writeln!(
            src,
            "impl Quadruple for Const<{n}> {{ type Output = Const<{q}>; }}"
        )
        .unwrap();
        writeln!(
            src,
            "#[diagnostic::do_not_recommend] impl<const H: usize, const W: usize> SqueezeChannels<{n}, H, W> for () {{ type Quadrupled = Const<{q}>; }}"
        )
        .unwrap();
    }
    src
}

/// `L0, L1, …, L{n-1}` with a suffix per item.
fn list(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(", ")
}

fn chains() -> String {
    let mut src = String::new();
    for n in 1..=MAX_CHAIN {
        let layers = list(n, |i| format!("L{i}"));
        let tuple = format!("({layers},)");

        // TensorCollection: flat names "0", "1", … in nested groups of at most GROUP.
        let bounds = list(n, |i| format!("L{i}: TensorCollection<E, D>"));
        let to = list(n, |i| format!("L{i}::To<E2, D2>"));
        let groups: Vec<Vec<usize>> = (0..n)
            .collect::<Vec<_>>()
            .chunks(GROUP)
            .map(|c| c.to_vec())
            .collect();
        let field = |i: usize| format!("Self::module(\"{i}\", |s| &s.0 .{i}, |s| &mut s.0 .{i})");
        let binding = |g: &[usize]| {
            format!(
                "({},)",
                g.iter()
                    .map(|i| format!("x{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let group_fields = |g: &[usize]| {
            format!(
                "({},)",
                g.iter().map(|&i| field(i)).collect::<Vec<_>>().join(", ")
            )
        };
        let (fields, pattern) = if groups.len() == 1 {
            (group_fields(&groups[0]), binding(&groups[0]))
        } else {
            (
                format!(
                    "({},)",
                    groups
                        .iter()
                        .map(|g| group_fields(g))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "({},)",
                    groups
                        .iter()
                        .map(|g| binding(g))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        };
        let xs = list(n, |i| format!("x{i}"));
        writeln!(
            src,
            "impl<E: FlowDtype, D: FlowDevice<E>, {bounds}> TensorCollection<E, D> for Chain<{tuple}> {{
    type To<E2: Dtype, D2: Device<E2>> = Chain<({to},)>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {{
        visitor.visit_fields({fields}, |{pattern}| Chain(({xs},)))
    }}
}}"
        )
        .unwrap();

        // Flow: each output shape must fit the next input shape (`FitsInto`, whose failure
        // names both layers and both shapes).
        let bounds = list(n, |i| format!("L{i}: Flow<E, D>"));
        let fits: String = (1..n)
            .map(|j| {
                let i = j - 1;
                format!("    <L{i} as Flow<E, D>>::Out: FitsInto<<L{j} as Flow<E, D>>::In, L{i}, L{j}, {i}, {j}>,\n")
            })
            .collect();
        let mut forward = String::new();
        for i in 0..n {
            if i > 0 {
                let h = i - 1;
                writeln!(
                    forward,
                    "        let x = <<L{h} as Flow<E, D>>::Out as FitsInto<<L{i} as Flow<E, D>>::In, L{h}, L{i}, {h}, {i}>>::fit(x);"
                )
                .unwrap();
            }
            writeln!(
                forward,
                "        let (x, ldj) = self.0 .{i}.try_forward(x, ldj, ctx)?;"
            )
            .unwrap();
        }
        let mut inverse = String::new();
        for i in (0..n).rev() {
            writeln!(inverse, "        let z = self.0 .{i}.try_inverse(z, ctx)?;").unwrap();
            if i > 0 {
                let h = i - 1;
                writeln!(
                    inverse,
                    "        let z = <<L{h} as Flow<E, D>>::Out as FitsInto<<L{i} as Flow<E, D>>::In, L{h}, L{i}, {h}, {i}>>::unfit(z);"
                )
                .unwrap();
            }
        }
        let describe: String = (0..n)
            .map(|i| format!("        self.0 .{i}.describe(layers);\n"))
            .collect();
        let needs_init = (0..n)
            .map(|i| format!("self.0 .{i}.needs_initialization()"))
            .collect::<Vec<_>>()
            .join(" || ");
        let mut initialize = String::new();
        for i in 0..n {
            if i > 0 {
                let h = i - 1;
                writeln!(
                    initialize,
                    "        let x = <<L{h} as Flow<E, D>>::Out as FitsInto<<L{i} as Flow<E, D>>::In, L{h}, L{i}, {h}, {i}>>::fit(x);"
                )
                .unwrap();
            }
            writeln!(
                initialize,
                "        let x = self.0 .{i}.try_initialize(x, ctx)?;"
            )
            .unwrap();
        }
        let last = n - 1;
        let where_clause = if fits.is_empty() {
            String::new()
        } else {
            format!("where\n{fits}")
        };
        writeln!(
            src,
            "impl<E: FlowDtype, D: FlowDevice<E>, {bounds}> Flow<E, D> for Chain<{tuple}>
{where_clause}{{
    type In = <L0 as Flow<E, D>>::In;
    type Out = <L{last} as Flow<E, D>>::Out;

    fn try_forward<T: Tape<E, D>>(
        &self,
        x: Tensor<Self::In, E, D, T>,
        ldj: Ldj<E, D, T>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<(Tensor<Self::Out, E, D, T>, Ldj<E, D, T>), FlowError<D::Err>> {{
{forward}        Ok((x, ldj))
    }}

    fn try_inverse(
        &self,
        z: Tensor<Self::Out, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::In, E, D>, FlowError<D::Err>> {{
{inverse}        Ok(z)
    }}

    fn needs_initialization(&self) -> bool {{
        {needs_init}
    }}

    fn try_initialize(
        &mut self,
        x: Tensor<Self::In, E, D>,
        ctx: &mut FlowCtx<E>,
    ) -> Result<Tensor<Self::Out, E, D>, FlowError<D::Err>> {{
{initialize}        Ok(x)
    }}

    fn name(&self) -> String {{
        \"Chain\".into()
    }}

    fn describe(&self, layers: &mut Vec<LayerInfo>) {{
{describe}    }}
}}"
        )
        .unwrap();
    }
    src
}
