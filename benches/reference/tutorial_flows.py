"""The models of the tutorial "Normalizing Flows for Image Modeling" (Phillip Lippe, UvA DL
notebooks, tutorial 11; text in shared/seed/000_747673f53342728e.txt), as a plain PyTorch module.

This is the PyTorch reference for dfdx-flows: parity fixtures (export_fixtures.py), loading our
checkpoints (load_checkpoint.py) and the speed comparison (bench_torch.py) all build their models
here. The code is the tutorial's, line for line, with these changes only:

* No pytorch-lightning: ``ImageFlow`` is a plain ``nn.Module`` with the same attribute names
  (``flows``, ``import_samples``, ``prior``) and the same methods (``encode``, ``_get_likelihood``,
  ``sample``); ``training_step``/``validation_step``/``configure_optimizers`` are left out,
  ``test_step``'s importance sampling is ``importance_bpd``. The tutorial's global ``device`` is
  ``self.device`` (the device of the parameters).
* Lines lost when the tutorial was extracted to text are restored from the original notebook:
  ``super().__init__()`` calls, ``else:`` branches, the two ``ConcatELU()`` inside ``GatedConv.net``
  (so ``net.1``/``net.3`` are the convs), the zero init of the last conv of ``GatedConvNet``,
  the ``CouplingLayer(...)`` calls inside the ``create_*_flow`` lists, and in
  ``Dequantization.sigmoid`` (forward direction, used when sampling) the three lines
  "# Reversing scaling for numerical stability / ldj -= log(1-alpha)*D / z = (z-0.5a)/(1-a)".
* ``create_simple_flow``/``create_multiscale_flow`` take the hidden widths as arguments; the
  defaults are the tutorial's (coupling 32; variational-dequantization nets 16; multi-scale
  32, 48, 64), so reduced-width variants can be built for small fixtures.
* Where the tutorial casts the image to ``torch.float32`` (``dequant``), this casts to
  ``torch.get_default_dtype()`` (float32 unless changed: identical to the tutorial then), so that
  with ``torch.set_default_dtype(torch.float64)`` and ``model.double()`` the whole computation,
  including ``ldj`` (``torch.zeros`` follows the default dtype) and the conditioning image
  ``(x/255)*2-1``, runs in float64. See ``float64_mode``.
* ``torch.meshgrid`` gets ``indexing="ij"`` (its old default; silences a warning).
"""

import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# The tutorial's parameter counts for the full-size models (its results table).
FULL_PARAM_COUNTS = {"simple": 556_312, "vardeq": 628_388, "multiscale": 1_711_818}


def _float_dtype():
    return torch.get_default_dtype()


@contextmanager
def float64_mode():
    """Inside: torch's default dtype is float64 (so ldj accumulators and the dequantization casts
    are float64). Use with a model converted by ``model.double()``."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


class ImageFlow(nn.Module):
    def __init__(self, flows, import_samples=8):
        """
        Args:
            flows: A list of flows (each a nn.Module) that should be applied on the images.
            import_samples: Number of importance samples to use during testing (see explanation below). Can be changed at any time
        """
        super().__init__()
        self.flows = nn.ModuleList(flows)
        self.import_samples = import_samples
        # Create prior distribution for final latent space
        self.prior = torch.distributions.normal.Normal(loc=0.0, scale=1.0)

    @property
    def device(self):
        return next(self.parameters()).device

    def forward(self, imgs):
        # The forward function is only used for visualizing the graph
        return self._get_likelihood(imgs)

    def encode(self, imgs):
        # Given a batch of images, return the latent representation z and ldj of the transformations
        z, ldj = imgs, torch.zeros(imgs.shape[0], device=self.device)
        for flow in self.flows:
            z, ldj = flow(z, ldj, reverse=False)
        return z, ldj

    def _get_likelihood(self, imgs, return_ll=False):
        """Given a batch of images, return the likelihood of those.

        If return_ll is True, this function returns the log likelihood of the input. Otherwise, the output metric is
        bits per dimension (scaled negative log likelihood)
        """
        z, ldj = self.encode(imgs)
        log_pz = self.prior.log_prob(z).sum(dim=[1, 2, 3])
        log_px = ldj + log_pz
        nll = -log_px
        # Calculating bits per dimension
        bpd = nll * np.log2(np.exp(1)) / np.prod(imgs.shape[1:])
        return bpd.mean() if not return_ll else log_px

    @torch.no_grad()
    def sample(self, img_shape, z_init=None):
        """Sample a batch of images from the flow."""
        device = self.device
        # Sample latent representation from prior
        if z_init is None:
            z = self.prior.sample(sample_shape=img_shape).to(device)
        else:
            z = z_init.to(device)

        # Transform z to x by inverting the flows
        ldj = torch.zeros(img_shape[0], device=device)
        for flow in reversed(self.flows):
            z, ldj = flow(z, ldj, reverse=True)
        return z

    @torch.no_grad()
    def importance_bpd(self, imgs, import_samples=None):
        """The tutorial's test_step: importance-sampled bpd of a batch (mean over the batch)."""
        m = import_samples or self.import_samples
        samples = []
        for _ in range(m):
            img_ll = self._get_likelihood(imgs, return_ll=True)
            samples.append(img_ll)
        img_ll = torch.stack(samples, dim=-1)
        # To average the probabilities, we need to go from log-space to exp, and back to log.
        # Logsumexp provides us a stable implementation for this
        img_ll = torch.logsumexp(img_ll, dim=-1) - np.log(m)
        # Calculate final bpd
        bpd = -img_ll * np.log2(np.exp(1)) / np.prod(imgs.shape[1:])
        return bpd.mean()


class Dequantization(nn.Module):
    def __init__(self, alpha=1e-5, quants=256):
        """
        Args:
            alpha: small constant that is used to scale the original input.
                    Prevents dealing with values very close to 0 and 1 when inverting the sigmoid
            quants: Number of possible discrete values (usually 256 for 8-bit image)
        """
        super().__init__()
        self.alpha = alpha
        self.quants = quants

    def forward(self, z, ldj, reverse=False):
        if not reverse:
            z, ldj = self.dequant(z, ldj)
            z, ldj = self.sigmoid(z, ldj, reverse=True)
        else:
            z, ldj = self.sigmoid(z, ldj, reverse=False)
            z = z * self.quants
            ldj += np.log(self.quants) * np.prod(z.shape[1:])
            z = torch.floor(z).clamp(min=0, max=self.quants - 1).to(torch.int32)
        return z, ldj

    def sigmoid(self, z, ldj, reverse=False):
        # Applies an invertible sigmoid transformation
        if not reverse:
            ldj += (-z - 2 * F.softplus(-z)).sum(dim=[1, 2, 3])
            z = torch.sigmoid(z)
            # Reversing scaling for numerical stability
            ldj -= np.log(1 - self.alpha) * np.prod(z.shape[1:])
            z = (z - 0.5 * self.alpha) / (1 - self.alpha)
        else:
            z = z * (1 - self.alpha) + 0.5 * self.alpha  # Scale to prevent boundaries 0 and 1
            ldj += np.log(1 - self.alpha) * np.prod(z.shape[1:])
            ldj += (-torch.log(z) - torch.log(1 - z)).sum(dim=[1, 2, 3])
            z = torch.log(z) - torch.log(1 - z)
        return z, ldj

    def dequant(self, z, ldj):
        # Transform discrete values to continuous volumes
        z = z.to(_float_dtype())  # tutorial: torch.float32
        z = z + torch.rand_like(z).detach()
        z = z / self.quants
        ldj -= np.log(self.quants) * np.prod(z.shape[1:])
        return z, ldj


class VariationalDequantization(Dequantization):
    def __init__(self, var_flows, alpha=1e-5):
        """Variational Dequantization.

        Args:
            var_flows: A list of flow transformations to use for modeling q(u|x)
            alpha: Small constant, see Dequantization for details
        """
        super().__init__(alpha=alpha)
        self.flows = nn.ModuleList(var_flows)

    def dequant(self, z, ldj):
        z = z.to(_float_dtype())  # tutorial: torch.float32
        img = (z / 255.0) * 2 - 1  # We condition the flows on x, i.e. the original image

        # Prior of u is a uniform distribution as before
        # As most flow transformations are defined on [-infinity,+infinity], we apply an inverse sigmoid first.
        deq_noise = torch.rand_like(z).detach()
        deq_noise, ldj = self.sigmoid(deq_noise, ldj, reverse=True)
        for flow in self.flows:
            deq_noise, ldj = flow(deq_noise, ldj, reverse=False, orig_img=img)
        deq_noise, ldj = self.sigmoid(deq_noise, ldj, reverse=False)

        # After the flows, apply u as in standard dequantization
        z = (z + deq_noise) / 256.0
        ldj -= np.log(256.0) * np.prod(z.shape[1:])
        return z, ldj


class CouplingLayer(nn.Module):
    def __init__(self, network, mask, c_in):
        """Coupling layer inside a normalizing flow.

        Args:
            network: A PyTorch nn.Module constituting the deep neural network for mu and sigma.
                      Output shape should be twice the channel size as the input.
            mask: Binary mask (0 or 1) where 0 denotes that the element should be transformed,
                   while 1 means the latent will be used as input to the NN.
            c_in: Number of input channels
        """
        super().__init__()
        self.network = network
        self.scaling_factor = nn.Parameter(torch.zeros(c_in))
        # Register mask as buffer as it is a tensor which is not a parameter,
        # but should be part of the modules state.
        self.register_buffer("mask", mask)

    def forward(self, z, ldj, reverse=False, orig_img=None):
        """
        Args:
            z: Latent input to the flow
            ldj:
                The current ldj of the previous flows. The ldj of this layer will be added to this tensor.
            reverse: If True, we apply the inverse of the layer.
            orig_img:
                Only needed in VarDeq. Allows external input to condition the flow on (e.g. original image)
        """
        # Apply network to masked input
        z_in = z * self.mask
        if orig_img is None:
            nn_out = self.network(z_in)
        else:
            nn_out = self.network(torch.cat([z_in, orig_img], dim=1))
        s, t = nn_out.chunk(2, dim=1)

        # Stabilize scaling output
        s_fac = self.scaling_factor.exp().view(1, -1, 1, 1)
        s = torch.tanh(s / s_fac) * s_fac

        # Mask outputs (only transform the second part)
        s = s * (1 - self.mask)
        t = t * (1 - self.mask)

        # Affine transformation
        if not reverse:
            # Whether we first shift and then scale, or the other way round,
            # is a design choice, and usually does not have a big impact
            z = (z + t) * torch.exp(s)
            ldj += s.sum(dim=[1, 2, 3])
        else:
            z = (z * torch.exp(-s)) - t
            ldj -= s.sum(dim=[1, 2, 3])

        return z, ldj


def create_checkerboard_mask(h, w, invert=False):
    x, y = torch.arange(h, dtype=torch.int32), torch.arange(w, dtype=torch.int32)
    xx, yy = torch.meshgrid(x, y, indexing="ij")
    mask = torch.fmod(xx + yy, 2)
    mask = mask.to(torch.float32).view(1, 1, h, w)
    if invert:
        mask = 1 - mask
    return mask


def create_channel_mask(c_in, invert=False):
    mask = torch.cat([torch.ones(c_in // 2, dtype=torch.float32), torch.zeros(c_in - c_in // 2, dtype=torch.float32)])
    mask = mask.view(1, c_in, 1, 1)
    if invert:
        mask = 1 - mask
    return mask


class ConcatELU(nn.Module):
    """Activation function that applies ELU in both direction (inverted and plain).

    Allows non-linearity while providing strong gradients for any input (important for final convolution)
    """

    def forward(self, x):
        return torch.cat([F.elu(x), F.elu(-x)], dim=1)


class LayerNormChannels(nn.Module):
    def __init__(self, c_in, eps=1e-5):
        """This module applies layer norm across channels in an image.

        Args:
            c_in: Number of channels of the input
            eps: Small constant to stabilize std
        """
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, c_in, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c_in, 1, 1))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, unbiased=False, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        y = y * self.gamma + self.beta
        return y


class GatedConv(nn.Module):
    def __init__(self, c_in, c_hidden):
        """This module applies a two-layer convolutional ResNet block with input gate.

        Args:
            c_in: Number of channels of the input
            c_hidden: Number of hidden dimensions we want to model (usually similar to c_in)
        """
        super().__init__()
        self.net = nn.Sequential(
            ConcatELU(),
            nn.Conv2d(2 * c_in, c_hidden, kernel_size=3, padding=1),
            ConcatELU(),
            nn.Conv2d(2 * c_hidden, 2 * c_in, kernel_size=1),
        )

    def forward(self, x):
        out = self.net(x)
        val, gate = out.chunk(2, dim=1)
        return x + val * torch.sigmoid(gate)


class GatedConvNet(nn.Module):
    def __init__(self, c_in, c_hidden=32, c_out=-1, num_layers=3):
        """Module that summarizes the previous blocks to a full convolutional neural network.

        Args:
            c_in: Number of input channels
            c_hidden: Number of hidden dimensions to use within the network
            c_out: Number of output channels. If -1, 2 times the input channels are used (affine coupling)
            num_layers: Number of gated ResNet blocks to apply
        """
        super().__init__()
        c_out = c_out if c_out > 0 else 2 * c_in
        layers = []
        layers += [nn.Conv2d(c_in, c_hidden, kernel_size=3, padding=1)]
        for layer_index in range(num_layers):
            layers += [GatedConv(c_hidden, c_hidden), LayerNormChannels(c_hidden)]
        layers += [ConcatELU(), nn.Conv2d(2 * c_hidden, c_out, kernel_size=3, padding=1)]
        self.nn = nn.Sequential(*layers)

        self.nn[-1].weight.data.zero_()
        self.nn[-1].bias.data.zero_()

    def forward(self, x):
        return self.nn(x)


class SqueezeFlow(nn.Module):
    def forward(self, z, ldj, reverse=False):
        B, C, H, W = z.shape
        if not reverse:
            # Forward direction: H x W x C => H/2 x W/2 x 4C
            z = z.reshape(B, C, H // 2, 2, W // 2, 2)
            z = z.permute(0, 1, 3, 5, 2, 4)
            z = z.reshape(B, 4 * C, H // 2, W // 2)
        else:
            # Reverse direction: H/2 x W/2 x 4C => H x W x C
            z = z.reshape(B, C // 4, 2, 2, H, W)
            z = z.permute(0, 1, 4, 2, 5, 3)
            z = z.reshape(B, C // 4, H * 2, W * 2)
        return z, ldj


class SplitFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.prior = torch.distributions.normal.Normal(loc=0.0, scale=1.0)

    def forward(self, z, ldj, reverse=False):
        if not reverse:
            z, z_split = z.chunk(2, dim=1)
            ldj += self.prior.log_prob(z_split).sum(dim=[1, 2, 3])
        else:
            z_split = self.prior.sample(sample_shape=z.shape).to(z.device)
            z = torch.cat([z, z_split], dim=1)
            ldj -= self.prior.log_prob(z_split).sum(dim=[1, 2, 3])
        return z, ldj


def create_simple_flow(use_vardeq=True, c_hidden=32, vardeq_c_hidden=16):
    """The tutorial's single-scale flow. Defaults: the tutorial's widths."""
    flow_layers = []
    if use_vardeq:
        vardeq_layers = [
            CouplingLayer(
                network=GatedConvNet(c_in=2, c_out=2, c_hidden=vardeq_c_hidden),
                mask=create_checkerboard_mask(h=28, w=28, invert=(i % 2 == 1)),
                c_in=1,
            )
            for i in range(4)
        ]
        flow_layers += [VariationalDequantization(var_flows=vardeq_layers)]
    else:
        flow_layers += [Dequantization()]

    for i in range(8):
        flow_layers += [
            CouplingLayer(
                network=GatedConvNet(c_in=1, c_hidden=c_hidden),
                mask=create_checkerboard_mask(h=28, w=28, invert=(i % 2 == 1)),
                c_in=1,
            )
        ]

    flow_model = ImageFlow(flow_layers)
    return flow_model


def create_multiscale_flow(c_hidden=(32, 48, 64), vardeq_c_hidden=16):
    """The tutorial's multi-scale flow. Defaults: the tutorial's widths."""
    c1, c2, c3 = c_hidden
    flow_layers = []

    vardeq_layers = [
        CouplingLayer(
            network=GatedConvNet(c_in=2, c_out=2, c_hidden=vardeq_c_hidden),
            mask=create_checkerboard_mask(h=28, w=28, invert=(i % 2 == 1)),
            c_in=1,
        )
        for i in range(4)
    ]
    flow_layers += [VariationalDequantization(vardeq_layers)]

    flow_layers += [
        CouplingLayer(
            network=GatedConvNet(c_in=1, c_hidden=c1),
            mask=create_checkerboard_mask(h=28, w=28, invert=(i % 2 == 1)),
            c_in=1,
        )
        for i in range(2)
    ]
    flow_layers += [SqueezeFlow()]
    for i in range(2):
        flow_layers += [
            CouplingLayer(
                network=GatedConvNet(c_in=4, c_hidden=c2), mask=create_channel_mask(c_in=4, invert=(i % 2 == 1)), c_in=4
            )
        ]
    flow_layers += [SplitFlow(), SqueezeFlow()]
    for i in range(4):
        flow_layers += [
            CouplingLayer(
                network=GatedConvNet(c_in=8, c_hidden=c3), mask=create_channel_mask(c_in=8, invert=(i % 2 == 1)), c_in=8
            )
        ]

    flow_model = ImageFlow(flow_layers)
    return flow_model


MODEL_KINDS = ("simple", "vardeq", "multiscale")


def create_model(kind, reduced=False):
    """Full-size model of a kind ("simple" = create_simple_flow(use_vardeq=False), "vardeq",
    "multiscale"); with reduced=True the small-width variants used by the parity fixtures."""
    if kind == "simple":
        return create_simple_flow(use_vardeq=False, c_hidden=8 if reduced else 32)
    if kind == "vardeq":
        if reduced:
            return create_simple_flow(use_vardeq=True, c_hidden=8, vardeq_c_hidden=4)
        return create_simple_flow(use_vardeq=True)
    if kind == "multiscale":
        if reduced:
            return create_multiscale_flow(c_hidden=(8, 12, 16), vardeq_c_hidden=4)
        return create_multiscale_flow()
    raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")


REDUCED_WIDTHS = {
    "simple": {"coupling_c_hidden": [8]},
    "vardeq": {"coupling_c_hidden": [8], "vardeq_c_hidden": 4},
    "multiscale": {"coupling_c_hidden": [8, 12, 16], "vardeq_c_hidden": 4},
}


def num_params(model):
    return int(sum(np.prod(p.shape) for p in model.parameters()))


def self_check():
    """Asserts the tutorial's parameter counts and a few state_dict names/shapes."""
    for kind in MODEL_KINDS:
        m = create_model(kind)
        n = num_params(m)
        assert n == FULL_PARAM_COUNTS[kind], (kind, n, FULL_PARAM_COUNTS[kind])
    sd = create_model("multiscale").state_dict()
    expect = {
        "flows.0.flows.0.network.nn.1.net.3.weight": (32, 32, 1, 1),
        "flows.0.flows.3.network.nn.0.weight": (16, 2, 3, 3),
        "flows.1.mask": (1, 1, 28, 28),
        "flows.1.scaling_factor": (1,),
        "flows.4.mask": (1, 4, 1, 1),
        "flows.11.network.nn.8.bias": (16,),
        "flows.11.network.nn.2.gamma": (1, 64, 1, 1),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, (k, tuple(sd[k].shape), shape)
    sd = create_model("simple").state_dict()
    assert tuple(sd["flows.8.network.nn.8.weight"].shape) == (2, 64, 3, 3)
    assert "flows.0.mask" not in sd  # Dequantization has no state
    return True


if __name__ == "__main__":
    self_check()
    for kind in MODEL_KINDS:
        m = create_model(kind)
        print(f"{kind}: {num_params(m):,} parameters, {len(m.state_dict())} state_dict tensors")
    print("self-check ok")
