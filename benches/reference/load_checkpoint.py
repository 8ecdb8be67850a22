"""Loads a safetensors checkpoint (e.g. one written by dfdx-flows: the tutorial's state_dict names,
float32) into the full-size PyTorch reference model, strictly.

    python benches/reference/load_checkpoint.py --model {simple,vardeq,multiscale} WEIGHTS.safetensors
        [--mnist DIR] [--images N] [--seed S] [--reduced] [--fixed-noise INPUTS [--compare JSON]]

Without --mnist it prints "loaded N tensors". With --mnist DIR (a folder holding
t10k-images-idx3-ubyte.gz, see shared/scripts/fetch-mnist.sh) it also prints the validation-style
bpd (the tutorial's validation_step: _get_likelihood with one uniform dequantization sample) of
the first N MNIST test images, and the importance-sampled bpd (the tutorial's test_step,
import_samples=8). --reduced builds the reduced-width variant of the parity fixtures instead.
With --fixed-noise INPUTS (and --mnist) it writes the first N test images and uniform noise drawn
with --seed to INPUTS (safetensors `images` and `noise`, the input of `loglik --inputs`) and prints
log p(x) of each image with exactly that noise; with --compare JSON (what `loglik --out JSON` wrote
for INPUTS) it fails unless every log p(x) agrees within 1e-4 relative.
Exits non-zero if a name or shape does not match (load_state_dict(strict=True)), or if a stored
`*.mask` differs from the tutorial's; --fill-masks supplies masks missing from the file.
"""

import sys

sys.dont_write_bytecode = True

import argparse
import gzip
import json
import os

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import tutorial_flows as tf
from export_fixtures import log_px


def load_mnist_test_images(mnist_dir, n):
    with gzip.open(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        head = f.read(16)
        magic, count, h, w = (int.from_bytes(head[i : i + 4], "big") for i in range(0, 16, 4))
        if (magic, h, w) != (0x803, 28, 28):
            raise SystemExit(f"not an MNIST image file: magic {magic:#x}, {h}x{w}")
        n = min(n, count)
        data = f.read(n * 28 * 28)
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).reshape(n, 1, 28, 28).astype(np.int32))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, choices=tf.MODEL_KINDS)
    ap.add_argument("weights", help="a .safetensors file with the tutorial's state_dict names")
    ap.add_argument("--mnist", help="folder with t10k-images-idx3-ubyte.gz")
    ap.add_argument("--images", type=int, default=64, help="number of test images (default 64)")
    ap.add_argument("--seed", type=int, default=42, help="seed of the dequantization noise")
    ap.add_argument("--reduced", action="store_true", help="the reduced-width fixture variant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fixed-noise", metavar="INPUTS",
                    help="write images and seeded noise to INPUTS (for `loglik --inputs`) and print log p(x) with it")
    ap.add_argument("--compare", metavar="JSON",
                    help="`loglik --out` of INPUTS: fail unless log p(x) agrees within 1e-4 relative")
    ap.add_argument("--fill-masks", action="store_true",
                    help="take `*.mask` buffers missing from the file from the built model")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = tf.create_model(args.model, reduced=args.reduced)
    state = load_file(args.weights)
    # Masks are fixed by the architecture: one that differs from the tutorial's is a bug (e.g. an
    # inverted checkerboard); with --fill-masks, missing ones are taken from the built model.
    expected = model.state_dict()
    filled = []
    for k, v in expected.items():
        if k.endswith(".mask"):
            if k in state:
                if state[k].shape == v.shape and not torch.equal(state[k].to(v.dtype), v):
                    raise SystemExit(f"{k}: the checkpoint's mask differs from the tutorial's")
            elif args.fill_masks:
                state[k] = v.clone()
                filled.append(k)
    bad = {k: v.dtype for k, v in state.items() if v.dtype != torch.float32}
    if bad:
        print(f"warning: non-float32 tensors (converted): {bad}", file=sys.stderr)
    result = model.load_state_dict(state, strict=True)  # raises on missing/unexpected/shape
    assert not result.missing_keys and not result.unexpected_keys
    if filled:
        print(f"filled {len(filled)} masks missing from the file")
    print(f"loaded {len(state) - len(filled)} tensors ({tf.num_params(model):,} parameters) into {args.model}"
          f"{' (reduced)' if args.reduced else ''} from {args.weights}")

    if args.mnist:
        imgs = load_mnist_test_images(args.mnist, args.images)
        model.eval()
        torch.manual_seed(args.seed)
        with torch.no_grad():
            bpd = model._get_likelihood(imgs).item()
            ibpd = model.importance_bpd(imgs).item()
        print(f"bpd of {imgs.shape[0]} MNIST test images: {bpd:.4f} (one dequantization sample); "
              f"{ibpd:.4f} (importance sampling, M={model.import_samples})")

    if args.fixed_noise:
        if not args.mnist:
            raise SystemExit("--fixed-noise needs --mnist DIR")
        gen = torch.Generator().manual_seed(args.seed)
        noise = torch.rand(tuple(imgs.shape), generator=gen, dtype=torch.float32)
        save_file({"images": imgs.to(torch.float32).contiguous(), "noise": noise.contiguous()},
                  args.fixed_noise)
        lp = log_px(model, imgs, noise).double()
        print(f"wrote {args.fixed_noise}; log p(x) with its noise: "
              + " ".join(f"{v:.4f}" for v in lp[:8].tolist()) + (" ..." if len(lp) > 8 else ""))
        if args.compare:
            with open(args.compare) as f:
                theirs = torch.tensor(json.load(f)["log_px"], dtype=torch.float64)
            if theirs.shape != lp.shape:
                raise SystemExit(f"{args.compare} has {theirs.shape[0]} images, not {lp.shape[0]}")
            rel = ((theirs - lp).abs() / lp.abs().clamp_min(1e-12)).max().item()
            print(f"largest relative difference from {args.compare}: {rel:.2e} over {lp.shape[0]} images")
            if rel > 1e-4:
                raise SystemExit("log p(x) differs by more than 1e-4 relative")


if __name__ == "__main__":
    main()
