"""PyTorch side of the dfdx-flows speed comparison: the tutorial's full-size models on the CPU
or (--device cuda) on a GPU.

    python benches/reference/bench_torch.py [--models simple,vardeq,multiscale,glow] [--batch 128]
        [--repeats 5] [--threads 2] [--mnist DIR] [--peak-rss] [--figures train,bpd,sample]
        [--device cpu|cuda] [--steps 10] [--tf32 default|off]

Figures, one JSON object per line on stdout:
  train_step_b{B}: one training step as the tutorial trains (Adam lr 1e-3, loss = mean bpd of
                   _get_likelihood, backward, step) on a batch of B images; median of --repeats
                   after one warm-up step.
  bpd_64:          _get_likelihood (bpd, one dequantization sample) of 64 images, no_grad; median
                   of --repeats after one warm-up call (the tutorial's "inference time" is per
                   importance sample of a 64-batch, so this is the same quantity).
  sample_64:       model.sample of 64 images (multiscale: latent shape (64, 8, 7, 7), as the
                   tutorial samples it); median of --repeats after one warm-up call.
  peak_rss_train_step (with --peak-rss): peak resident set size (getrusage ru_maxrss) of a fresh
                   process that builds the model and runs the warm-up step plus one training
                   step at --batch ("bytes", the whole process's ru_maxrss, as asked).
                   Python + torch alone already peak at ~0.5-1 GB here, so it also reports
                   "import_bytes" (ru_maxrss after the imports), "rss_before_step_bytes" (RSS
                   with the model and the batch built, before the warm-up step) and, on Linux,
                   "step_hwm_bytes" (the peak RSS during the two steps: VmHWM after resetting
                   it via /proc/self/clear_refs just before the warm-up step). The memory the
                   step itself needs is about step_hwm_bytes - rss_before_step_bytes.
Inputs: random integer images 0..255 (seeded), or the first MNIST test images with --mnist DIR.
torch.set_flush_denormal(True) and torch.set_num_threads(--threads) are set first.

With --device cuda (the GPU side of scripts/gpu-check.sh, same figures as examples/gpu_check.rs):
  train_step_b{B}: --steps training steps back to back after one warm-up step, then
                   torch.cuda.synchronize(); seconds per step = the whole / --steps (throughput,
                   as a training loop runs: no host sync inside the loop). Also "host_seconds":
                   the time per step until the last step was queued, before the final sync; when
                   it is close to "seconds", the step is bound by the CPU issuing kernels.
  bpd_64, sample_64: as above, with torch.cuda.synchronize() inside the timed region.
  peak_gpu_memory_train_step: torch.cuda.max_memory_allocated / max_memory_reserved over the
                   warm-up and the timed training steps ("allocated_bytes", "reserved_bytes").
  PyTorch eager as the tutorial runs it: cuDNN convolutions with TF32 allowed (PyTorch's default,
  torch.backends.cudnn.allow_tf32), matmuls in full FP32; --tf32 off runs the convolutions in
  full FP32 too, the precision of dfdx's cuBLAS SGEMM. cudnn.benchmark stays off (the default).
"""

import sys

sys.dont_write_bytecode = True

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import time

import numpy as np
import torch
import torch.optim as optim

import tutorial_flows as tf

# The tutorial's models and the Glow of dfdx-flows (glow_flows.py: two levels of 8 steps,
# hidden width 64, `GlowFlow`'s defaults).
MODEL_KINDS = tf.MODEL_KINDS + ("glow",)
PARAM_COUNTS = dict(tf.FULL_PARAM_COUNTS, glow=155_744)


def create_model(kind):
    if kind == "glow":
        import glow_flows as gf

        return gf.create_glow_flow()
    return tf.create_model(kind)


def _maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


_IMPORT_RSS = _maxrss_bytes()


def make_images(n, mnist_dir, seed):
    if mnist_dir:
        with gzip.open(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz"), "rb") as f:
            f.read(16)
            data = f.read(n * 28 * 28)
        if len(data) < n * 28 * 28:
            raise SystemExit(f"the MNIST test set has fewer than {n} images")
        arr = np.frombuffer(data, dtype=np.uint8).reshape(n, 1, 28, 28).astype(np.int32)
        return torch.from_numpy(arr)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.int32)


def setup(threads):
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_fn(model, imgs):
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model._get_likelihood(imgs)
        loss.backward()
        opt.step()
        return loss

    return step


def timed(fn, repeats, device=torch.device("cpu")):
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def timed_steps(step, steps, device):
    """Throughput of `steps` training steps back to back (one sync at the end), after a warm-up
    step: (seconds per step, host seconds per step until the last step was queued)."""
    step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    queued = time.perf_counter() - t0
    sync(device)
    total = time.perf_counter() - t0
    if not torch.isfinite(loss).item():
        raise SystemExit(f"training loss is {loss.item()}")
    return total / steps, queued / steps


def sample_shape(kind, n):
    return [n, 8, 7, 7] if kind in ("multiscale", "glow") else [n, 1, 28, 28]


def emit(obj):
    print(json.dumps(obj), flush=True)


def _proc_status_bytes(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm():
    """Linux: resets VmHWM (the peak RSS) to the current RSS; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_child(kind, batch, threads, mnist, seed):
    """Runs in a fresh process: warm-up + one training step, then prints the peak RSS."""
    setup(threads)
    torch.manual_seed(seed)
    model = create_model(kind)
    imgs = make_images(batch, mnist, seed)
    step = train_step_fn(model, imgs)
    before = _proc_status_bytes("VmRSS")
    reset = _reset_hwm()
    step()  # warm-up
    step()
    out = {"bytes": _maxrss_bytes(), "import_bytes": _IMPORT_RSS, "rss_before_step_bytes": before}
    if reset:
        out["step_hwm_bytes"] = _proc_status_bytes("VmHWM")
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="simple,vardeq,multiscale")
    ap.add_argument("--batch", type=int, default=128, help="training batch (default 128, the tutorial's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mnist", help="folder with t10k-images-idx3-ubyte.gz (default: random images)")
    ap.add_argument("--peak-rss", action="store_true", help="also measure the peak RSS of a training step")
    ap.add_argument("--figures", default="train,bpd,sample", help="subset of train,bpd,sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=10, help="--device cuda: timed training steps (default 10)")
    ap.add_argument("--tf32", default="default", choices=["default", "off"],
                    help="--device cuda: 'off' disables TF32 in cuDNN convolutions (default: PyTorch's default)")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.rss_child:
        rss_child(args.rss_child, args.batch, args.threads, args.mnist, args.seed)
        return

    setup(args.threads)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    figures = {f.strip() for f in args.figures.split(",") if f.strip()}
    for k in kinds:
        if k not in MODEL_KINDS:
            raise SystemExit(f"unknown model {k!r}; expected some of {','.join(MODEL_KINDS)}")
    if not figures <= {"train", "bpd", "sample"}:
        raise SystemExit(f"unknown figures {figures - {'train', 'bpd', 'sample'}}")
    device = torch.device(args.device)
    base = {"impl": "pytorch", "torch": torch.__version__, "threads": args.threads, "device": args.device}
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch.cuda.is_available() is False (no GPU, or a CPU-only torch)")
        if args.peak_rss:
            raise SystemExit("--peak-rss measures host memory of CPU runs; on the GPU the peak GPU memory is reported")
        if args.tf32 == "off":
            torch.backends.cudnn.allow_tf32 = False
        base.update(gpu=torch.cuda.get_device_name(device), cudnn_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_tf32=torch.backends.cuda.matmul.allow_tf32)

    for kind in kinds:
        torch.manual_seed(args.seed)
        model = create_model(kind).to(device)
        assert tf.num_params(model) == PARAM_COUNTS[kind]
        if "train" in figures:
            model.train()
            step = train_step_fn(model, make_images(args.batch, args.mnist, args.seed).to(device))
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                per_step, host = timed_steps(step, args.steps, device)
                emit(dict(base, model=kind, figure=f"train_step_b{args.batch}", seconds=per_step,
                          host_seconds=host, batch=args.batch, steps=args.steps,
                          images_per_second=args.batch / per_step))
                emit(dict(base, model=kind, figure="peak_gpu_memory_train_step", batch=args.batch,
                          allocated_bytes=torch.cuda.max_memory_allocated(device),
                          reserved_bytes=torch.cuda.max_memory_reserved(device)))
            else:
                med, times = timed(step, args.repeats)
                emit(dict(base, model=kind, figure=f"train_step_b{args.batch}", seconds=med,
                          batch=args.batch, all_seconds=times))
        model.eval()
        if "bpd" in figures:
            imgs = make_images(64, args.mnist, args.seed + 1).to(device)

            def bpd():
                with torch.no_grad():
                    return model._get_likelihood(imgs)

            med, times = timed(bpd, args.repeats, device)
            emit(dict(base, model=kind, figure="bpd_64", seconds=med, batch=64, all_seconds=times))
        if "sample" in figures:
            shape = sample_shape(kind, 64)
            med, times = timed(lambda: model.sample(shape), args.repeats, device)
            emit(dict(base, model=kind, figure="sample_64", seconds=med, batch=64, all_seconds=times))
        del model

    if args.peak_rss:
        for kind in kinds:
            cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", kind, "--batch", str(args.batch),
                   "--threads", str(args.threads), "--seed", str(args.seed)]
            if args.mnist:
                cmd += ["--mnist", args.mnist]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            emit(dict(base, model=kind, figure="peak_rss_train_step", batch=args.batch, **r))


if __name__ == "__main__":
    main()
