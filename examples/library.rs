//! The library without the command line: build the multi-scale flow, read MNIST from files, take
//! a few Adam steps, measure bits per dimension, save and reload a checkpoint, and write samples
//! to a PNG. Needs no feature (`default-features = false` builds it). It fails if training does
//! not lower the bpd or the reloaded model differs: CI runs it on real MNIST.
//!
//! ```text
//! ../shared/scripts/fetch-mnist.sh data/mnist   # or any directory with the four IDX files
//! cargo run --release --example library -- data/mnist
//! ```
use dfdx::prelude::*;
use dfdx_flows::checkpoint::{self, CheckpointMeta};
use dfdx_flows::data::{Mnist, Subset};
use dfdx_flows::optim::Adam;
use dfdx_flows::prelude::*;
use dfdx_flows::viz::{save_grid, to_bytes, GridStyle};
use std::error::Error;
use std::path::PathBuf;

const BATCH: usize = 64;
const STEPS: usize = 20;

fn main() -> Result<(), Box<dyn Error>> {
    let data = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/mnist".into());
    let out = PathBuf::from("runs/library");
    let dev: Cpu = Default::default();
    dev.enable_cache();

    // The tutorial's multi-scale flow: its shapes are checked when this line compiles.
    let mut model = multiscale_flow::<f32, Cpu>(&dev)?;
    let mnist = Mnist::load(PathBuf::from(&data).as_path())?;
    let (train, val) = (mnist.split(Subset::Train), mnist.split(Subset::Validation));
    let val_images = val.batch_f32(&(0..256).collect::<Vec<_>>());
    let val_bpd = |model: &ImageFlow<MultiscaleFlow<f32, Cpu>>| -> Result<f32, Box<dyn Error>> {
        // Fixed noise, so that two measurements differ only by the training between them.
        let x = dev.tensor_from_vec(val_images.clone(), Img::<1, 28, 28>::with_batch(256));
        let mut ctx = FlowCtx::with_noise(vec![0.5; 256 * 784]);
        Ok(model.bpd(x, &mut ctx)?.array())
    };
    let before = val_bpd(&model)?;
    println!("validation bpd before training: {before:.3}");

    // A few steps of Adam on the mean bpd of a batch (uniform dequantization noise drawn inside).
    let mut adam = Adam::new(1e-3);
    let mut grads = model.alloc_grads();
    for step in 0..STEPS {
        let indices: Vec<usize> = (step * BATCH..(step + 1) * BATCH).collect();
        let x = dev.tensor_from_vec(
            train.batch_f32(&indices),
            Img::<1, 28, 28>::with_batch(BATCH),
        );
        let loss = model.bpd(x.traced(grads), &mut FlowCtx::default())?;
        if step % 5 == 0 {
            println!("step {step:>2}: train bpd {:.3}", loss.array());
        }
        grads = loss.backward();
        adam.update(&mut model, &grads)?;
        model.zero_grads(&mut grads);
    }
    let after = val_bpd(&model)?;
    println!("validation bpd after {STEPS} steps: {after:.3}");
    if after.is_nan() || after >= before {
        return Err(format!("training did not lower the bpd ({before} → {after})").into());
    }

    // A checkpoint (safetensors weights, optimizer state, a JSON sidecar), read back into a
    // fresh model that must give the same bpd.
    let mut meta = CheckpointMeta::new("multiscale", &model);
    meta.step = STEPS as u64;
    checkpoint::save(&out.join("checkpoints"), &["last"], &model, &adam, &meta)?;
    let mut reloaded = multiscale_flow::<f32, Cpu>(&dev)?;
    checkpoint::load(
        &out.join("checkpoints"),
        "last",
        "multiscale",
        &mut reloaded,
    )?;
    let reloaded_bpd = val_bpd(&reloaded)?;
    println!("reloaded from {}: bpd {reloaded_bpd:.3}", out.display());
    if reloaded_bpd != after {
        return Err(format!("the reloaded model gives {reloaded_bpd}, not {after}").into());
    }

    // Samples at temperature 0.7, as 8-bit pixels in a PNG grid.
    let mut ctx = FlowCtx {
        temperature: 0.7,
        ..FlowCtx::default()
    };
    let images = reloaded.sample(&dev, 16, None, &mut ctx)?;
    let png = out.join("samples.png");
    save_grid(
        &png,
        &to_bytes(&images.as_vec()),
        16,
        28,
        28,
        GridStyle::default(),
    )?;
    println!("wrote {}", png.display());
    Ok(())
}
