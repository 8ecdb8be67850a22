"""Glow's layers and the MNIST Glow of dfdx-flows (`GlowFlow`) in plain PyTorch, written from
Glow's published semantics (Kingma & Dhariwal 2018; openai/glow) in the layout of
rosinality/glow-pytorch, with dfdx-flows' parametrisation and tensor names, so that weights move
between the two with no renaming. Where this differs from the ports, it says so:

- ActNorm: y = exp(logs) * (x + loc) per channel (openai's log-scale; rosinality stores the
  scale itself), `initialized` a float buffer; initialisation sets loc = -mean, logs = -log(std)
  on the first batch, keeping the scale 1 on a channel whose std is below 1e-6.
- InvConv1x1: one (C, C) tensor `lu` with L below the diagonal, log s on it, U above it;
  W = L @ U. Glow's fixed permutation and sign buffers are not needed: the layer starts from the
  rotation P Q S (see src/layers/invconv.rs).
- Affine coupling: rosinality's `AffineCoupling` (h_s, t = net(a).chunk(2, 1),
  s = sigmoid(h_s + 2), b' = (b + t) * s) with openai's network (ActNorm after the first two
  convolutions); the zero convolution pads with zeros (rosinality pads with ones).
- The split's learned prior: rosinality's `prior` (a zero convolution, mean, log_sd =
  chunk(2, 1)) on the kept half.
- The learned top prior: N(mean, exp(2 logs)) per channel of the final latent (openai's
  `learntop`, whose zero convolution of an all-zero input leaves per-channel constants), written
  as the flow's last layer that standardises the latent before the tutorial's standard normal.
- Dequantization, squeeze, the final standard normal prior and the bits per dimension are the
  tutorial's (tutorial_flows.py).
"""

import sys

sys.dont_write_bytecode = True

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import tutorial_flows as tf


class ActNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(c, dtype=tf._float_dtype()))
        self.logs = nn.Parameter(torch.zeros(c, dtype=tf._float_dtype()))
        self.register_buffer("initialized", torch.zeros(1, dtype=tf._float_dtype()))

    @torch.no_grad()
    def initialize(self, x):
        mean = x.mean(dim=(0, 2, 3))
        std = x.var(dim=(0, 2, 3), unbiased=False).sqrt()
        self.loc.copy_(-mean)
        self.logs.copy_(torch.where(std > 1e-6, -std.clamp_min(1e-300).log(), torch.zeros_like(std)))
        self.initialized.fill_(1.0)

    def normalize(self, x):
        if self.initialized.item() == 0:
            self.initialize(x)
        return (x + self.loc.view(1, -1, 1, 1)) * self.logs.exp().view(1, -1, 1, 1)

    def forward(self, z, ldj, reverse=False):
        h, w = z.shape[2], z.shape[3]
        if not reverse:
            z = self.normalize(z)
            ldj = ldj + h * w * self.logs.sum()
        else:
            z = z * (-self.logs).exp().view(1, -1, 1, 1) - self.loc.view(1, -1, 1, 1)
            ldj = ldj - h * w * self.logs.sum()
        return z, ldj


class InvConv1x1(nn.Module):
    def __init__(self, c):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
        p, l, u = torch.linalg.lu(q)  # q = p l u
        s = torch.diagonal(u)
        w0 = p.T @ q @ torch.diag(torch.sign(s))  # = l (u S): a rotation with positive diagonal
        lu = torch.tril(l, -1) + torch.triu(u * torch.sign(s), 1) + torch.diag(s.abs().log())
        assert torch.allclose(self._weight(lu), w0, atol=1e-10)
        self.lu = nn.Parameter(lu.to(tf._float_dtype()))

    @staticmethod
    def _weight(lu):
        c = lu.shape[0]
        eye = torch.eye(c, dtype=lu.dtype)
        lower = torch.tril(lu, -1) + eye
        upper = torch.triu(lu, 1) + torch.diag(torch.diagonal(lu).exp())
        return lower @ upper

    def forward(self, z, ldj, reverse=False):
        c, h, w = z.shape[1], z.shape[2], z.shape[3]
        log_det = h * w * torch.diagonal(self.lu).sum()
        if not reverse:
            z = F.conv2d(z, self._weight(self.lu).view(c, c, 1, 1))
            ldj = ldj + log_det
        else:
            inverse = torch.linalg.inv(self._weight(self.lu.double())).to(z.dtype)
            z = F.conv2d(z, inverse.view(c, c, 1, 1))
            ldj = ldj - log_det
        return z, ldj


class ZeroConv2d(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c_out, c_in, 3, 3, dtype=tf._float_dtype()))
        self.bias = nn.Parameter(torch.zeros(c_out, dtype=tf._float_dtype()))
        self.logscale = nn.Parameter(torch.zeros(c_out, dtype=tf._float_dtype()))

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, padding=1) * (3 * self.logscale).exp().view(1, -1, 1, 1)


class GlowNet(nn.Module):
    def __init__(self, c_in, hidden, c_out):
        super().__init__()
        self.conv_in = nn.Conv2d(c_in, hidden, 3, padding=1)
        self.norm_in = ActNorm(hidden)
        self.conv_mid = nn.Conv2d(hidden, hidden, 1)
        self.norm_mid = ActNorm(hidden)
        self.conv_out = ZeroConv2d(hidden, c_out)

    def forward(self, x):
        h = F.relu(self.norm_in.normalize(self.conv_in(x)))
        h = F.relu(self.norm_mid.normalize(self.conv_mid(h)))
        return self.conv_out(h)


class GlowCoupling(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.net = GlowNet(c // 2, hidden, c)

    def forward(self, z, ldj, reverse=False):
        a, b = z.chunk(2, dim=1)
        h_s, t = self.net(a).chunk(2, dim=1)
        s = torch.sigmoid(h_s + 2.0)
        if not reverse:
            b = (b + t) * s
            ldj = ldj + s.log().sum(dim=[1, 2, 3])
        else:
            b = b / s - t
            ldj = ldj - s.log().sum(dim=[1, 2, 3])
        return torch.cat([a, b], dim=1), ldj


class SplitPrior(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = ZeroConv2d(c // 2, c)

    def forward(self, z, ldj, reverse=False):
        if not reverse:
            kept, split = z.chunk(2, dim=1)
            mean, logs = self.conv(kept).chunk(2, dim=1)
            eps = (split - mean) * (-logs).exp()
            log_p = -0.5 * eps**2 - logs - 0.5 * math.log(2 * math.pi)
            return kept, ldj + log_p.sum(dim=[1, 2, 3])
        mean, logs = self.conv(z).chunk(2, dim=1)
        split = mean + logs.exp() * torch.randn_like(mean)
        return torch.cat([z, split], dim=1), ldj


class AdditiveCoupling(nn.Module):
    """b' = b + net(a) (openai's `--flow_coupling 0`); dfdx-flows' `AdditiveCoupling`."""

    def __init__(self, c, hidden):
        super().__init__()
        self.net = GlowNet(c // 2, hidden, c // 2)

    def forward(self, z, ldj, reverse=False):
        a, b = z.chunk(2, dim=1)
        b = b - self.net(a) if reverse else b + self.net(a)
        return torch.cat([a, b], dim=1), ldj


class LearnedPrior(nn.Module):
    """The learned top prior as the last layer: eps = (z - mean) exp(-logs) per channel."""

    def __init__(self, c):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(c, dtype=tf._float_dtype()))
        self.logs = nn.Parameter(torch.zeros(c, dtype=tf._float_dtype()))

    def forward(self, z, ldj, reverse=False):
        h, w = z.shape[2], z.shape[3]
        mean, logs = self.mean.view(1, -1, 1, 1), self.logs.view(1, -1, 1, 1)
        if not reverse:
            return (z - mean) * (-logs).exp(), ldj - h * w * self.logs.sum()
        return z * logs.exp() + mean, ldj + h * w * self.logs.sum()


def glow_step(c, hidden):
    return nn.ModuleList([ActNorm(c), InvConv1x1(c), GlowCoupling(c, hidden)])


class Repeat(nn.ModuleList):
    """K steps, each a ModuleList of three layers (dfdx-flows' Repeat of a Chain: names
    `{step}.{layer}.…`)."""

    def forward(self, z, ldj, reverse=False):
        for step in (reversed(self) if reverse else self):
            for layer in (reversed(step) if reverse else step):
                z, ldj = layer(z, ldj, reverse=reverse)
        return z, ldj


def create_glow_flow(steps=8, hidden=64):
    """dfdx-flows' `GlowFlow<E, D, K, HIDDEN>` for 1x28x28 MNIST."""
    flows = [
        tf.Dequantization(),
        tf.SqueezeFlow(),
        Repeat([glow_step(4, hidden) for _ in range(steps)]),
        SplitPrior(4),
        tf.SqueezeFlow(),
        Repeat([glow_step(8, hidden) for _ in range(steps)]),
        LearnedPrior(8),
    ]
    return tf.ImageFlow(flows)


@torch.no_grad()
def initialize(model, imgs, noise):
    """Data-dependent initialisation of every ActNorm on a batch (dfdx-flows'
    `ImageFlow::initialize`): a pass in the density direction, with `noise` as the
    dequantization noise."""
    orig = torch.rand_like
    torch.rand_like = lambda t, *a, **k: noise.to(dtype=t.dtype).clone()
    try:
        model.encode(imgs)
    finally:
        torch.rand_like = orig
