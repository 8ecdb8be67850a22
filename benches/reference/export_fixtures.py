"""Writes the PyTorch parity fixtures into tests/fixtures/parity/ (see the README written there).

    python benches/reference/export_fixtures.py [--mnist DIR] [--out DIR]

--mnist DIR: a folder with t10k-images-idx3-ubyte.gz (shared/scripts/fetch-mnist.sh DIR makes
one); default /tmp/mnist-ref, fetched with that script when missing. Deterministic: all random
numbers come from fixed seeds, and the computations run single-threaded.
"""

import sys

sys.dont_write_bytecode = True

import argparse
import copy
import gzip
import json
import math
import os
import subprocess
from contextlib import contextmanager

import numpy as np
import torch
from safetensors.torch import load_file

import tutorial_flows as tf

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "parity")
FETCH_MNIST_CANDIDATES = [os.path.join(REPO, "shared", "scripts", "fetch-mnist.sh"),
                          os.path.join(REPO, "..", "shared", "scripts", "fetch-mnist.sh")]

SEED_MODEL = {"simple": 101, "vardeq": 202, "multiscale": 303}  # torch.manual_seed before build
SEED_NOISE = 7  # torch.Generator for the dequantization noise u ~ U[0,1)
SEED_ZINIT = 11  # torch.Generator for the sampling z_init ~ N(0,1)
S_BIAS_SHIFT = -0.5  # added to the s-channel biases of the main flow's last convs
N_IMAGES = 8
N_SAMPLES = 16
LOG2E = math.log2(math.e)


def load_mnist_test_images(mnist_dir, n):
    path = os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz")
    if not os.path.isfile(path):
        for script in FETCH_MNIST_CANDIDATES:
            if os.path.isfile(script):
                subprocess.run(["bash", script, mnist_dir], check=True)
                break
    with gzip.open(path, "rb") as f:
        head = f.read(16)
        magic, count, h, w = (int.from_bytes(head[i : i + 4], "big") for i in range(0, 16, 4))
        assert (magic, h, w) == (0x803, 28, 28) and count >= n, (magic, count, h, w)
        data = f.read(n * 28 * 28)
    arr = np.frombuffer(data, dtype=np.uint8).reshape(n, 1, 28, 28)
    return torch.from_numpy(arr.astype(np.int32))


@contextmanager
def fixed_rand_like(noise):
    """Replaces torch.rand_like so that the dequantization layers take `noise` (cast to the
    dtype asked for); yields a list whose [0] counts the calls."""
    calls = [0]
    orig = torch.rand_like

    def fake(t, *args, **kwargs):
        calls[0] += 1
        assert tuple(t.shape) == tuple(noise.shape), (tuple(t.shape), tuple(noise.shape))
        return noise.to(dtype=t.dtype, device=t.device).clone()

    torch.rand_like = fake
    try:
        yield calls
    finally:
        torch.rand_like = orig


def randomize_(model, gen):
    """Random non-zero values everywhere: default init kept for convs except the final conv of
    each GatedConvNet (zeroed by the tutorial) -> N(0, 0.02) weight and bias (plus S_BIAS_SHIFT on
    the s half of the bias in the main flow's couplings, see below); scaling_factor -> N(0, 0.5);
    LayerNormChannels gamma -> 1 + N(0, 0.1), beta -> N(0, 0.1)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tf.GatedConvNet):
                last = m.nn[-1]
                last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * 0.02)
                last.bias.copy_(torch.randn(last.bias.shape, generator=gen) * 0.02)
            elif isinstance(m, tf.CouplingLayer):
                m.scaling_factor.copy_(torch.randn(m.scaling_factor.shape, generator=gen) * 0.5)
            elif isinstance(m, tf.LayerNormChannels):
                m.gamma.copy_(1.0 + torch.randn(m.gamma.shape, generator=gen) * 0.1)
                m.beta.copy_(torch.randn(m.beta.shape, generator=gen) * 0.1)
        # The tutorial's untrained (identity) flow gives ~28 bpd on MNIST, and the above ~30-38:
        # the logit of a dequantized 0 pixel is about -6. Shift the bias of the scale half (s)
        # of the last conv of each main-flow coupling by S_BIAS_SHIFT, so that the couplings
        # contract (bpd ~4-5, a magnitude a trained model has) while s stays far from saturation.
        for flow in model.flows:
            if isinstance(flow, tf.CouplingLayer):
                bias = flow.network.nn[-1].bias
                bias[: bias.shape[0] // 2] += S_BIAS_SHIFT
    for name, p in model.named_parameters():
        assert (p != 0).all(), f"{name} has zeros"


def log_px(model, images, noise, f64=False):
    """The tutorial's _get_likelihood(imgs, return_ll=True) with the given dequantization noise."""
    if f64:
        model = copy.deepcopy(model).double()
        with tf.float64_mode(), fixed_rand_like(noise) as calls, torch.no_grad():
            out = model._get_likelihood(images, return_ll=True)
    else:
        with fixed_rand_like(noise) as calls, torch.no_grad():
            out = model._get_likelihood(images, return_ll=True)
    assert calls[0] == 1, f"torch.rand_like called {calls[0]} times, expected exactly 1"
    assert out.dtype == (torch.float64 if f64 else torch.float32), out.dtype
    return out


def bpd_grads(model, images, noise):
    """Gradients of the mean bpd of `images` (the training loss, the tutorial's
    _get_likelihood(imgs)) with respect to every parameter, in float64 with the given noise."""
    model = copy.deepcopy(model).double()
    model.zero_grad()
    with tf.float64_mode(), fixed_rand_like(noise) as calls:
        loss = model._get_likelihood(images)
        loss.backward()
    assert calls[0] == 1, f"torch.rand_like called {calls[0]} times, expected exactly 1"
    assert loss.dtype == torch.float64 and loss.dim() == 0
    grads = {}
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert (p.grad != 0).any(), f"{name}: zero gradient"
        grads[name] = p.grad.detach().contiguous().clone()
    return loss.detach(), grads


def sample(model, z_init, f64=False):
    if f64:
        model = copy.deepcopy(model).double()
        with tf.float64_mode(), torch.no_grad():
            out = model.sample(z_init.shape, z_init=z_init.double())
    else:
        with torch.no_grad():
            out = model.sample(z_init.shape, z_init=z_init)
    assert out.dtype == torch.int32
    return out


def save_file(tensors, path, metadata=None):
    """Writes a safetensors file byte-for-byte deterministically (safetensors' own writer orders
    the __metadata__ entries differently from run to run). Tensors are stored in the order given
    (state_dict order for weights); the result is checked with safetensors' reader."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    names = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32"}
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for b in blobs:
            f.write(b)
    back = load_file(path)
    assert list(back) and set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t.cpu()), name


def compact_json(full):
    """full_tensors.json: valid JSON, one tensor per line."""
    lines = ["{", f' "torch_version": {json.dumps(full["torch_version"])},', ' "models": {']
    kinds = list(full["models"])
    for i, kind in enumerate(kinds):
        m = full["models"][kind]
        lines.append(f"  {json.dumps(kind)}: {{")
        lines.append(f'   "num_params": {m["num_params"]},')
        lines.append('   "state_dict": [')
        sd = m["state_dict"]
        lines += [f"    {json.dumps(e)}" + ("," if j + 1 < len(sd) else "") for j, e in enumerate(sd)]
        lines.append("   ],")
        lines.append(f'   "buffers": {json.dumps(m["buffers"])}')
        lines.append("  }" + ("," if i + 1 < len(kinds) else ""))
    lines += [" }", "}", ""]
    text = "\n".join(lines)
    assert json.loads(text) == full
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default="/tmp/mnist-ref")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)

    tf.self_check()
    meta_common = {"torch_version": torch.__version__, "generator": "benches/reference/export_fixtures.py"}

    # ---- full-size tensor lists --------------------------------------------------------------
    full = {"torch_version": torch.__version__, "models": {}}
    for kind in tf.MODEL_KINDS:
        m = tf.create_model(kind)
        buffers = {n for n, _ in m.named_buffers()}
        full["models"][kind] = {
            "num_params": tf.num_params(m),
            "state_dict": [[k, list(v.shape)] for k, v in m.state_dict().items()],
            "buffers": [k for k in m.state_dict() if k in buffers],
        }
    with open(os.path.join(args.out, "full_tensors.json"), "w") as f:
        f.write(compact_json(full))

    # ---- inputs ----------------------------------------------------------------------------
    images = load_mnist_test_images(args.mnist, N_IMAGES)  # int32 (8,1,28,28), 0..255
    assert (images == 0).any() and (images == 255).any(), "need 0 and 255 pixels"
    noise = torch.rand((N_IMAGES, 1, 28, 28), generator=torch.Generator().manual_seed(SEED_NOISE), dtype=torch.float32)
    z_init = torch.randn((N_SAMPLES, 1, 28, 28), generator=torch.Generator().manual_seed(SEED_ZINIT), dtype=torch.float32)

    report = {}
    for kind in tf.MODEL_KINDS:
        torch.manual_seed(SEED_MODEL[kind])
        model = tf.create_model(kind, reduced=True)
        randomize_(model, torch.Generator().manual_seed(SEED_MODEL[kind] + 1))
        model.eval()

        sd = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
        meta = dict(meta_common, kind=kind, widths=json.dumps(tf.REDUCED_WIDTHS[kind]), num_params=str(tf.num_params(model)))
        save_file(sd, os.path.join(args.out, f"{kind}_weights.safetensors"), metadata=meta)

        # Round trip: the file loads strictly into a freshly built reduced model, same numbers.
        fresh = tf.create_model(kind, reduced=True)
        fresh.load_state_dict(load_file(os.path.join(args.out, f"{kind}_weights.safetensors")), strict=True)
        lp32 = log_px(model, images, noise)
        assert torch.equal(lp32, log_px(fresh, images, noise)), "round trip changed log p(x)"
        lp64 = log_px(model, images, noise, f64=True)
        bpd64 = -lp64 * LOG2E / (28 * 28)
        assert torch.isfinite(lp32).all() and torch.isfinite(lp64).all()
        assert ((bpd64 > 1) & (bpd64 < 20)).all(), f"{kind}: bpd out of range: {bpd64}"
        save_file(
            {
                "images": images.to(torch.float32).contiguous(),
                "noise": noise.contiguous(),
                "log_px_f32": lp32.contiguous(),
                "log_px_f64": lp64.contiguous(),
                "bpd_f64": bpd64.contiguous(),
            },
            os.path.join(args.out, f"{kind}_inputs.safetensors"),
            metadata=dict(meta_common, kind=kind, noise_seed=str(SEED_NOISE)),
        )
        loss64, grads64 = bpd_grads(model, images, noise)
        assert abs(loss64.item() - bpd64.mean().item()) < 1e-12, (loss64, bpd64.mean())
        save_file(
            dict(grads64, mean_bpd=loss64.reshape(1)),
            os.path.join(args.out, f"{kind}_grads.safetensors"),
            metadata=dict(meta_common, kind=kind, loss="mean bpd of the 8 images (float64)"),
        )
        rel = ((lp32.double() - lp64).abs() / lp64.abs()).max().item()
        report[kind] = {
            "num_params": tf.num_params(model),
            "log_px_f32": lp32.tolist(),
            "log_px_f64": lp64.tolist(),
            "bpd_f64": bpd64.tolist(),
            "max_abs_diff_f32_f64": (lp32.double() - lp64).abs().max().item(),
            "max_rel_diff_f32_f64": rel,
            "mean_bpd_f64": loss64.item(),
            "grad_norms_f64": {n: g.norm().item() for n, g in list(grads64.items())[:3]},
        }

        if kind == "simple":
            s32 = sample(model, z_init)
            s64 = sample(model, z_init, f64=True)
            save_file(
                {
                    "z_init": z_init.contiguous(),
                    "samples": s32.to(torch.float32).contiguous(),
                    "samples_f64": s64.to(torch.float64).contiguous(),
                },
                os.path.join(args.out, "simple_sample.safetensors"),
                metadata=dict(meta_common, kind=kind, z_init_seed=str(SEED_ZINIT)),
            )
            report["simple_sample"] = {
                "pixels_differing_f32_vs_f64": int((s32 != s64).sum()),
                "max_abs_diff": int((s32 - s64).abs().max()),
                "min": int(s32.min()),
                "max": int(s32.max()),
                "mean": float(s32.double().mean()),
            }

    print(json.dumps(report, indent=1))
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    for f in sorted(os.listdir(args.out)):
        print(f"{os.path.getsize(os.path.join(args.out, f)):>9}  {f}")
    print(f"{total:>9}  total bytes")


if __name__ == "__main__":
    main()
