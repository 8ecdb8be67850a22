//! Training step, inference and sampling times of the tutorial's three models on the CPU
//! (release build, batch 128 / 64 like the tutorial). `cargo bench --bench step [-- MODEL]`.
//!
//! Prints the median of a few repetitions per figure; compare ratios measured in one run.
use dfdx::prelude::*;
use dfdx_flows::optim::Adam;
use dfdx_flows::prelude::*;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn images(dev: &Cpu, n: usize) -> Tensor<Img<1, 28, 28>, f32, Cpu> {
    // Digit-like strokes: mostly black with a bright band, like MNIST's statistics.
    let px = (0..n * 784)
        .map(|i| if (i % 784) / 28 % 9 < 2 { 250.0 } else { 0.0 })
        .collect();
    dev.tensor_from_vec(px, Img::<1, 28, 28>::with_batch(n))
}

fn bench<F: Flow<f32, Cpu, In = Img<1, 28, 28>>>(
    name: &str,
    mut model: ImageFlow<F>,
    dev: &Cpu,
    reps: usize,
) where
    ImageFlow<F>: TensorCollection<f32, Cpu>,
{
    let x = images(dev, 128);
    let mut adam = Adam::new(1e-3);
    let mut grads = model.alloc_grads();
    let (mut fwd, mut bwd, mut opt) = (vec![], vec![], vec![]);
    for _ in 0..reps + 1 {
        let t0 = Instant::now();
        let loss = model
            .bpd(x.clone().traced(grads), &mut FlowCtx::default())
            .unwrap();
        let t1 = Instant::now();
        grads = loss.backward();
        let t2 = Instant::now();
        adam.update(&mut model, &grads).unwrap();
        model.zero_grads(&mut grads);
        let t3 = Instant::now();
        fwd.push((t1 - t0).as_secs_f64());
        bwd.push((t2 - t1).as_secs_f64());
        opt.push((t3 - t2).as_secs_f64());
    }
    // The first repetition warms caches and allocations.
    let (f, b, o) = (
        median(fwd[1..].to_vec()),
        median(bwd[1..].to_vec()),
        median(opt[1..].to_vec()),
    );
    let x64 = images(dev, 64);
    let infer = median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                model
                    .log_likelihood(x64.clone(), &mut FlowCtx::default())
                    .unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let sample = median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                model
                    .sample(dev, 64, None, &mut FlowCtx::default())
                    .unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!(
        "{name:<11} train step (batch 128) {:.3} s = forward {f:.3} + backward {b:.3} + adam {o:.3} | bpd of 64: {infer:.3} s | sample 64: {sample:.3} s",
        f + b + o
    );
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| f == name);
    let dev = dfdx_flows::cli::cpu_device(0);
    println!("threads: {}", rayon::current_num_threads());
    if wanted("simple") {
        bench("simple", simple_flow(&dev).unwrap(), &dev, 3);
    }
    if wanted("vardeq") {
        bench("vardeq", vardeq_flow(&dev).unwrap(), &dev, 3);
    }
    if wanted("multiscale") {
        bench("multiscale", multiscale_flow(&dev).unwrap(), &dev, 3);
    }
}
