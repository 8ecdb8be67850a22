//! Criterion benchmarks: every layer kind at the tutorial's shapes (forward, and forward plus
//! backward), how a training step grows with the batch, and how a flow of the same design grows
//! with the image size.
//!
//! ```text
//! cargo bench --bench layers                 # everything (tens of minutes on 2 cores)
//! cargo bench --bench layers -- layer/       # one group; criterion filters by name
//! cargo bench --bench layers -- "gated conv" # the fused network against the chain of ops
//! ```
//!
//! The whole-model figures the tutorial reports (training step at batch 128, bpd of 64 images,
//! sampling 64) and their comparison with PyTorch are in `benches/step.rs` and
//! `benches/reference/side_by_side.py`.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dfdx::prelude::*;
use dfdx_flows::nn::ConvDevice;
use dfdx_flows::optim::Adam;
use dfdx_flows::prelude::*;
use std::time::Duration;

#[path = "../examples/common/alloc.rs"]
mod alloc;

type Dev = Cpu;
/// The tutorial's batch size.
const BATCH: usize = 128;

fn device() -> Dev {
    alloc::keep_freed_memory();
    dfdx_flows::device::cpu_device(0)
}

/// Forward (no tape) and forward + backward (a sum of outputs and log-determinants as the
/// loss) of one flow layer on a batch of `BATCH` inputs.
fn bench_layer<F: Flow<f32, Dev>>(c: &mut Criterion, name: &str, scale: f32) {
    let dev = device();
    let layer = F::build(&dev);
    let x: Tensor<F::In, f32, Dev> = dev.sample_uniform_like(&F::In::with_batch(BATCH)) * scale;
    let mut group = c.benchmark_group("layer");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("forward", name), |b| {
        b.iter(|| {
            let ldj = dev.zeros_like(&(BATCH,));
            layer
                .try_forward(x.clone(), ldj, &mut FlowCtx::default())
                .unwrap()
        })
    });
    let mut grads = Some(layer.alloc_grads());
    group.bench_function(BenchmarkId::new("forward_backward", name), |b| {
        b.iter(|| {
            let g = grads.take().unwrap();
            let ldj = dev.zeros_like(&(BATCH,)).retaped::<OwnedTape<f32, Dev>>();
            let (z, ldj) = layer
                .try_forward(x.clone().traced(g), ldj, &mut FlowCtx::default())
                .unwrap();
            let loss = z.sum::<Rank0, _>() + ldj.sum::<Rank0, _>();
            let mut g = loss.backward();
            layer.zero_grads(&mut g);
            grads = Some(g);
        })
    });
    group.finish();
}

fn layers(c: &mut Criterion) {
    // Pixel values for the dequantization layers, latent-like values for the others.
    bench_layer::<Dequantization<1, 28, 28>>(c, "dequantization 1x28x28", 255.0);
    bench_layer::<TutorialVarDeq<1, 28, 28, f32, Dev>>(c, "vardeq 1x28x28", 255.0);
    bench_layer::<CheckerboardCoupling<1, 28, 28, 32, false, f32, Dev>>(
        c,
        "checkerboard coupling 1x28x28 h32",
        1.0,
    );
    bench_layer::<ChannelCoupling<4, 14, 14, 48, false, f32, Dev>>(
        c,
        "channel coupling 4x14x14 h48",
        1.0,
    );
    bench_layer::<ChannelCoupling<8, 7, 7, 64, false, f32, Dev>>(
        c,
        "channel coupling 8x7x7 h64",
        1.0,
    );
    bench_layer::<Squeeze<1, 28, 28>>(c, "squeeze 1x28x28", 1.0);
    bench_layer::<Split<4, 14, 14>>(c, "split 4x14x14", 1.0);
    // Glow's layers at the shapes of `GlowFlow`'s first and second level.
    bench_layer::<ActNorm<4, 14, 14, f32, Dev>>(c, "glow actnorm 4x14x14", 1.0);
    bench_layer::<InvConv1x1<4, 14, 14, f32, Dev>>(c, "glow invconv 4x14x14", 1.0);
    bench_layer::<InvConv1x1<8, 7, 7, f32, Dev>>(c, "glow invconv 8x7x7", 1.0);
    bench_layer::<GlowCoupling<4, 14, 14, 64, f32, Dev>>(c, "glow coupling 4x14x14 h64", 1.0);
    bench_layer::<GlowCoupling<8, 7, 7, 64, f32, Dev>>(c, "glow coupling 8x7x7 h64", 1.0);
    bench_layer::<SplitPrior<4, 14, 14, f32, Dev>>(c, "glow split prior 4x14x14", 1.0);
}

/// The convolution alone, the most expensive operation of every coupling network.
fn conv(c: &mut Criterion) {
    let dev = device();
    let x: Tensor<(usize, Const<64>, Const<28>, Const<28>), f32, Dev> =
        dev.sample_normal_like(&(BATCH, Const, Const, Const));
    let w: Tensor<Rank4<32, 64, 3, 3>, f32, Dev> = dev.sample_normal();
    let bias: Tensor<Rank1<32>, f32, Dev> = dev.sample_normal();
    let mut group = c.benchmark_group("conv3x3 64->32 28x28");
    group.sample_size(10);
    group.bench_function("forward", |b| {
        b.iter(|| Dev::try_conv2d_same(x.clone(), &w, &bias).unwrap())
    });
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            let y = Dev::try_conv2d_same(x.clone().leaky_traced(), &w, &bias).unwrap();
            y.sum().backward()
        })
    });
    group.finish();
}

/// The three convolutions of Glow's coupling network at `GlowFlow`'s first level (4×14×14, width
/// 64): none has the channel counts the Winograd path takes.
fn glow_convs(c: &mut Criterion) {
    fn one<const CI: usize, const CO: usize, const K: usize>(c: &mut Criterion, name: &str) {
        let dev = device();
        let x: Tensor<(usize, Const<CI>, Const<14>, Const<14>), f32, Dev> =
            dev.sample_normal_like(&(BATCH, Const, Const, Const));
        let w: Tensor<Rank4<CO, CI, K, K>, f32, Dev> = dev.sample_normal();
        let bias: Tensor<Rank1<CO>, f32, Dev> = dev.sample_normal();
        let mut group = c.benchmark_group(format!("glow {name}"));
        group.sample_size(10);
        group.bench_function("forward", |b| {
            b.iter(|| Dev::try_conv2d_same(x.clone(), &w, &bias).unwrap())
        });
        group.bench_function("forward_backward", |b| {
            b.iter(|| {
                let y = Dev::try_conv2d_same(x.clone().leaky_traced(), &w, &bias).unwrap();
                y.sum().backward()
            })
        });
        group.finish();
    }
    one::<2, 64, 3>(c, "conv_in 3x3 2->64 14x14");
    one::<64, 64, 1>(c, "conv_mid 1x1 64->64 14x14");
    one::<64, 4, 3>(c, "conv_out 3x3 64->4 14x14");
}

/// The conditioner network of a checkerboard coupling (1 → 32 → 2 channels, 28×28) as one fused
/// op (what the layers use on the CPU) and as the chain of its layers, one op each.
fn network(c: &mut Criterion) {
    use dfdx_flows::nn::Conditioner;
    type Net = GatedConvNet<Const<1>, Const<32>, Const<2>, f32, Dev>;
    let dev = device();
    let mut net = dev.build_module::<Net, f32>();
    dfdx_flows::testing::perturb_params(&mut net, 0.1).unwrap();
    let x: Tensor<(usize, Const<1>, Const<28>, Const<28>), f32, Dev> =
        dev.sample_normal_like(&(BATCH, Const, Const, Const));
    let mut group = c.benchmark_group("gated conv net 1->32->2 28x28");
    group.sample_size(10);
    for fused in [true, false] {
        let name = if fused { "fused" } else { "chain of ops" };
        let mut grads = Some(net.alloc_grads());
        group.bench_function(BenchmarkId::new("forward_backward", name), |b| {
            b.iter(|| {
                let x = x.clone().traced(grads.take().unwrap());
                let y = if fused {
                    net.try_condition(x).unwrap()
                } else {
                    net.try_condition_composed(x).unwrap()
                };
                let mut g = y.sum().backward();
                net.zero_grads(&mut g);
                grads = Some(g);
            })
        });
    }
    group.finish();
}

fn train_step<
    F: Flow<f32, Dev, In = Img<C, H, W>>,
    const C: usize,
    const H: usize,
    const W: usize,
>(
    model: &mut ImageFlow<F>,
    adam: &mut Adam,
    x: &Tensor<Img<C, H, W>, f32, Dev>,
) {
    let g = model.alloc_grads();
    let loss = model
        .bpd(x.clone().traced(g), &mut FlowCtx::default())
        .unwrap();
    let g = loss.backward();
    adam.update(model, &g).unwrap();
}

fn pixels<const C: usize, const H: usize, const W: usize>(
    dev: &Dev,
    n: usize,
) -> Tensor<Img<C, H, W>, f32, Dev> {
    dev.sample_uniform_like(&Img::<C, H, W>::with_batch(n)) * 255.0
}

/// Training step of the multi-scale flow at batch 16 … 256: should grow linearly.
fn batch_scaling(c: &mut Criterion) {
    let dev = device();
    let mut model = multiscale_flow::<f32, Dev>(&dev).unwrap();
    let mut adam = Adam::new(1e-3);
    let mut group = c.benchmark_group("multiscale train step by batch");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for batch in [16, 32, 64, 128, 256] {
        let x = pixels::<1, 28, 28>(&dev, batch);
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter(|| train_step(&mut model, &mut adam, &x))
        });
    }
    group.finish();
}

/// The multi-scale design (variational dequantization, 2 checkerboard couplings, squeeze,
/// 2 channel couplings, split, squeeze, 4 channel couplings) on `S`×`S` images.
macro_rules! multiscale_design {
    ($s:literal, $h:literal, $q:literal) => {
        Chain<(
            TutorialVarDeq<1, $s, $s, f32, Dev>,
            CheckerboardCoupling<1, $s, $s, 32, false, f32, Dev>,
            CheckerboardCoupling<1, $s, $s, 32, true, f32, Dev>,
            Squeeze<1, $s, $s>,
            ChannelCoupling<4, $h, $h, 48, false, f32, Dev>,
            ChannelCoupling<4, $h, $h, 48, true, f32, Dev>,
            Split<4, $h, $h>,
            Squeeze<2, $h, $h>,
            ChannelCoupling<8, $q, $q, 64, false, f32, Dev>,
            ChannelCoupling<8, $q, $q, 64, true, f32, Dev>,
            ChannelCoupling<8, $q, $q, 64, false, f32, Dev>,
            ChannelCoupling<8, $q, $q, 64, true, f32, Dev>,
        )>
    };
}

/// Training step (batch 16) of the same design on 28×28, 56×56 and 112×112 images: the cost
/// per pixel should stay constant (4× per doubling of the side).
fn size_scaling(c: &mut Criterion) {
    let dev = device();
    let mut group = c.benchmark_group("multiscale design train step (batch 16) by image size");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let mut m28 = ImageFlow::<multiscale_design!(28, 14, 7)>::build(&dev);
    let x28 = pixels::<1, 28, 28>(&dev, 16);
    group.bench_function("28x28", |b| {
        let mut adam = Adam::new(1e-3);
        b.iter(|| train_step(&mut m28, &mut adam, &x28))
    });
    let mut m56 = ImageFlow::<multiscale_design!(56, 28, 14)>::build(&dev);
    let x56 = pixels::<1, 56, 56>(&dev, 16);
    group.bench_function("56x56", |b| {
        let mut adam = Adam::new(1e-3);
        b.iter(|| train_step(&mut m56, &mut adam, &x56))
    });
    let mut m112 = ImageFlow::<multiscale_design!(112, 56, 28)>::build(&dev);
    let x112 = pixels::<1, 112, 112>(&dev, 16);
    group.bench_function("112x112", |b| {
        let mut adam = Adam::new(1e-3);
        b.iter(|| train_step(&mut m112, &mut adam, &x112))
    });
    group.finish();
}

/// Glow's coupling network at `GlowFlow`'s first level (2 → 64 → 4 channels, 14×14) as one
/// fused op (what the couplings use on the CPU) and as the chain of its layers' ops.
fn glow_network(c: &mut Criterion) {
    type Net = GlowNet<Const<2>, 64, Const<4>, 14, 14, f32, Dev>;
    let dev = device();
    let mut net = dev.build_module::<Net, f32>();
    dfdx_flows::testing::perturb_params(&mut net, 0.1).unwrap();
    let x: Tensor<(usize, Const<2>, Const<14>, Const<14>), f32, Dev> =
        dev.sample_normal_like(&(BATCH, Const, Const, Const));
    let mut group = c.benchmark_group("glow net 2->64->4 14x14");
    group.sample_size(10);
    for fused in [true, false] {
        let name = if fused { "fused" } else { "chain of ops" };
        let mut grads = Some(net.alloc_grads());
        group.bench_function(BenchmarkId::new("forward_backward", name), |b| {
            b.iter(|| {
                let x = x.clone().traced(grads.take().unwrap());
                let y = if fused {
                    net.try_apply_with(x, None).unwrap()
                } else {
                    net.try_apply_composed(x, None).unwrap()
                };
                let mut g = y.sum().backward();
                net.zero_grads(&mut g);
                grads = Some(g);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    layers,
    conv,
    glow_convs,
    glow_network,
    network,
    batch_scaling,
    size_scaling
);
criterion_main!(benches);
