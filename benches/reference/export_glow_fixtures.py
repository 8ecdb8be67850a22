"""Writes the Glow parity fixtures into tests/fixtures/parity/ (glow_weights.safetensors,
glow_inputs.safetensors; see tests/parity.rs):

    python benches/reference/export_glow_fixtures.py [--mnist DIR] [--out DIR]

A reduced dfdx-flows `GlowFlow<E, D, 2, 8>` (2 steps per level, networks of 8 channels) from
glow_flows.py: ActNorm initialised from the 8 MNIST test images with the fixed noise, then every
parameter moved off its start (ActNorm, LU factors and zero convolutions by small normal
noise), so that no term is trivially zero; its log p(x) of the 8 images with that noise, in
float32 and float64. Deterministic (fixed seeds, one thread).
"""

import sys

sys.dont_write_bytecode = True

import argparse
import math
import os

import torch
from safetensors.torch import load_file

import glow_flows as gf
from export_fixtures import DEFAULT_OUT, N_IMAGES, SEED_NOISE, load_mnist_test_images, log_px, save_file

SEED_MODEL = 404
STEPS, HIDDEN = 2, 8


@torch.no_grad()
def randomize_(model, gen):
    for name, p in model.named_parameters():
        if name.endswith((".loc", ".logs", ".lu", ".mean")):
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        elif ".conv_out." in name or ".conv." in name:
            p.copy_(torch.randn(p.shape, generator=gen) * (0.1 if name.endswith("logscale") else 0.02))
    for name, p in model.named_parameters():
        assert (p != 0).all(), f"{name} has zeros"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default="/tmp/mnist-ref")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    images = load_mnist_test_images(args.mnist, N_IMAGES)
    noise = torch.rand((N_IMAGES, 1, 28, 28), generator=torch.Generator().manual_seed(SEED_NOISE), dtype=torch.float32)
    torch.manual_seed(SEED_MODEL)
    model = gf.create_glow_flow(steps=STEPS, hidden=HIDDEN)
    gf.initialize(model, images, noise)
    inits = [m.initialized.item() for m in model.modules() if isinstance(m, gf.ActNorm)]
    assert inits and all(v == 1.0 for v in inits), inits
    randomize_(model, torch.Generator().manual_seed(SEED_MODEL + 1))
    model.eval()

    meta = {"generator": "benches/reference/export_glow_fixtures.py", "torch_version": torch.__version__,
            "kind": "glow", "steps": str(STEPS), "hidden": str(HIDDEN)}
    sd = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    path = os.path.join(args.out, "glow_weights.safetensors")
    save_file(sd, path, metadata=meta)
    fresh = gf.create_glow_flow(steps=STEPS, hidden=HIDDEN)
    fresh.load_state_dict(load_file(path), strict=True)

    lp32 = log_px(model, images, noise)
    assert torch.equal(lp32, log_px(fresh, images, noise)), "round trip changed log p(x)"
    lp64 = log_px(model, images, noise, f64=True)
    bpd64 = -lp64 * math.log2(math.e) / 784
    assert ((bpd64 > 1) & (bpd64 < 20)).all(), bpd64
    save_file(
        {
            "images": images.to(torch.float32).contiguous(),
            "noise": noise.contiguous(),
            "log_px_f32": lp32.contiguous(),
            "log_px_f64": lp64.contiguous(),
            "bpd_f64": bpd64.contiguous(),
        },
        os.path.join(args.out, "glow_inputs.safetensors"),
        metadata=dict(meta, noise_seed=str(SEED_NOISE)),
    )
    rel = ((lp32.double() - lp64).abs() / lp64.abs()).max().item()
    print(f"glow (steps {STEPS}, hidden {HIDDEN}): {sum(p.numel() for p in model.parameters())} parameters, "
          f"bpd {bpd64.tolist()}, f32 vs f64 {rel:.1e}")
    for f in ("glow_weights.safetensors", "glow_inputs.safetensors"):
        print(f"{os.path.getsize(os.path.join(args.out, f)):>9}  {f}")


if __name__ == "__main__":
    main()
