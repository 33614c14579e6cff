"""Training augmentation of the cell classifier's stored crops: one batched pass on tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bmpipe.nn.cell_classifier import CROP_PX


@dataclass(frozen=True)
class Augment:
    """Batched training augmentation, on tensors (one pass per batch, no worker processes on 2 cores).

    Wide on purpose: every class must be recognised under any lab's look, not only the look of the source it
    was learned from (PBC's CellaVision, SegPC's camera, the phantom's renderer).
    Geometry: any rotation, flips, scale ±20 % (a lab's stated µm/px is often that far off, and cells spread
    more in a thin smear), a shift of a few pixels (detector centring error).
    Colour: stain jitter in optical density (how Giemsa batches and staining times differ), hue ±45° and
    saturation (a nucleus is navy under one lab's stain and violet under another's; some crops lose their
    colour altogether, so shape and texture must carry the class), brightness/contrast and gamma (camera and
    lamp); then blur up to a defocused 1000× photograph, and sensor noise.
    Random convolutions (``random_conv_p``, off by default; RandConv, Xu et al. 2021, ICLR): a share of crops
    pass through a convolution with random weights (one kernel size per batch, 1-7 px), blended with the crop
    by a random weight and brought back to its own colour means and contrast: the local colour and texture
    change while the shapes stay, so a class must be told by shape, not by the texture of its source's camera.
    Fourier mixing (``fourier_p``, off by default; FDA, Yang & Soatto 2020, CVPR): a share of crops take the
    lowest spatial frequencies' amplitudes (a square of up to ``fourier_beta`` of the spectrum's width, so up
    to about 4 cycles across a crop) from another crop of the batch and keep their own phase: the broad
    colour casts and shading of one source's photographs land on another's cells, whose edges and texture stay.
    Surroundings (``swap_p``, off by default): a share of crops keep the cell, a disc of ``swap_radius_px``
    around the centre, and take everything outside it from another crop of the batch, so the red cells and
    background around a cell (its lab's look, or the phantom's) say nothing of its class or source.
    """

    out_px: int = CROP_PX
    scale: float = 0.20
    shift_px: float = 4.0
    stain: float = 0.15
    hue: float = 0.25
    saturation: float = 0.45
    grey_p: float = 0.15
    brightness: float = 0.15
    contrast: float = 0.40
    gamma: float = 0.35
    blur_p: float = 0.5
    blur_max: float = 3.0
    noise: float = 6.0
    swap_p: float = 0.0
    swap_radius_px: tuple[float, float] = (28.0, 44.0)
    random_conv_p: float = 0.0
    random_conv_kernels: tuple[int, ...] = (1, 3, 5, 7)
    fourier_p: float = 0.0
    fourier_beta: float = 0.05

    def __call__(self, images: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        """uint8 (B, S, S, 3) → float (B, 3, out_px, out_px) in 0-255."""
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        b, _, s, _ = x.shape
        x = self._swap_surroundings(x, gen)
        x = self._geometry(x, gen, s)
        x = self._stain(x, gen)
        x = self._random_convolution(x, gen)
        x = self._fourier_mix(x, gen)
        x = self._blur(x, gen)
        x = x + torch.randn(x.shape, generator=gen) * self.noise * torch.rand(b, 1, 1, 1, generator=gen)
        return x.clamp_(0, 255)

    def _u(self, gen: torch.Generator, *shape: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    def _swap_surroundings(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Each picked crop keeps its centre disc (soft edge of 6 px) and gets another crop's surroundings."""
        b, _, s, _ = x.shape
        if self.swap_p <= 0 or b < 2:
            return x  # no random draws: runs without it keep their batches
        picked = torch.rand(b, generator=gen) < self.swap_p
        radius = self._u(gen, b, lo=self.swap_radius_px[0], hi=self.swap_radius_px[1])
        radius = torch.where(picked, radius, torch.inf)[:, None, None]  # a crop not picked keeps everything
        r = torch.arange(s, dtype=torch.float32) - (s - 1) / 2
        distance = torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2)[None]
        keep = torch.clamp((radius - distance) / 6.0 + 0.5, 0, 1)[:, None]
        order = torch.randperm(b, generator=gen)
        donor = torch.empty_like(order)
        donor[order] = order.roll(1)  # one random cycle through the batch: no crop is its own donor
        return keep * x + (1 - keep) * x[donor]

    def _random_convolution(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Each picked crop: mean + α·(crop - mean) + (1 - α)·conv(crop - mean), the convolution's output scaled
        to the crop's own contrast (α uniform in 0-1; per-crop random 3→3 weights, variance 1/fan-in)."""
        if self.random_conv_p <= 0:
            return x  # no random draws: runs without it keep their batches
        b, c, h, w = x.shape
        k = self.random_conv_kernels[int(torch.randint(len(self.random_conv_kernels), (1,), generator=gen))]
        picked = (torch.rand(b, generator=gen) < self.random_conv_p)[:, None, None, None]
        alpha = torch.rand(b, 1, 1, 1, generator=gen)
        weight = torch.randn(b * c, c, k, k, generator=gen) / (c * k * k) ** 0.5
        mean = x.mean((2, 3), keepdim=True)
        centred = x - mean
        y = centred.reshape(1, b * c, h, w)  # one group per crop: its own weights
        if k > 1:
            y = F.pad(y, (k // 2,) * 4, mode="reflect")
        y = F.conv2d(y, weight, groups=b).reshape(b, c, h, w)
        y = y * (centred.std((1, 2, 3), keepdim=True) / (y.std((1, 2, 3), keepdim=True) + 1e-6))
        out = (mean + alpha * centred + (1 - alpha) * y).clamp(0, 255)
        return torch.where(picked, out, x)

    def _fourier_mix(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Each picked crop with the amplitudes of its lowest frequencies (a centred square of the shifted
        spectrum, half-width uniform in 0-``fourier_beta`` of the crop) from its donor, its phase its own."""
        b, _, h, w = x.shape
        if self.fourier_p <= 0 or b < 2:
            return x  # no random draws: runs without it keep their batches
        picked = (torch.rand(b, generator=gen) < self.fourier_p)[:, None, None, None]
        order = torch.randperm(b, generator=gen)
        donor = torch.empty_like(order)
        donor[order] = order.roll(1)  # one random cycle through the batch: no crop is its own donor
        half = torch.floor(self._u(gen, b, lo=0.0, hi=self.fourier_beta) * min(h, w))[:, None, None]
        rows = (torch.arange(h) - h // 2).abs()[None, :, None]
        cols = (torch.arange(w) - w // 2).abs()[None, None, :]
        low = ((rows <= half) & (cols <= half))[:, None] & picked
        spectrum = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
        amplitude = torch.where(low, spectrum.abs()[donor], spectrum.abs())
        mixed = torch.polar(amplitude, spectrum.angle())
        return torch.fft.ifft2(torch.fft.ifftshift(mixed, dim=(-2, -1))).real.clamp(0, 255)

    def _geometry(self, x: torch.Tensor, gen: torch.Generator, s: int) -> torch.Tensor:
        b = x.shape[0]
        angle = self._u(gen, b, lo=0.0, hi=2 * np.pi)
        zoom = (self.out_px / s) * (1 + self.scale * self._u(gen, b))
        flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        shift = self._u(gen, b, 2) * self.shift_px * 2 / s
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, [b, 3, self.out_px, self.out_px], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _stain(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        od = -torch.log((x + 1) / 256)
        mix = torch.eye(3) + self.stain * torch.randn(b, 3, 3, generator=gen)
        x = 256 * torch.exp(-torch.einsum("bchw,bcd->bdhw", od, mix)) - 1
        # hue rotation and saturation scaling in YIQ (linear, so one matrix per image)
        a = self.hue * np.pi * self._u(gen, b)
        sat = 1 + self.saturation * self._u(gen, b)
        sat = torch.where(torch.rand(b, generator=gen) < self.grey_p, 0.0, sat)  # some labs' look: no colour to go on
        rot = torch.zeros(b, 3, 3)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2] = torch.cos(a) * sat, -torch.sin(a) * sat
        rot[:, 2, 1], rot[:, 2, 2] = torch.sin(a) * sat, torch.cos(a) * sat
        m = _YIQ_INV @ rot @ _YIQ
        x = torch.einsum("bdc,bchw->bdhw", m, x)
        mean = x.mean((1, 2, 3), keepdim=True)
        contrast = 1 + self.contrast * self._u(gen, b, 1, 1, 1)
        bright = 255 * self.brightness * self._u(gen, b, 1, 1, 1)
        x = ((x - mean) * contrast + mean + bright).clamp(0, 255)
        gamma = torch.exp(self.gamma * self._u(gen, b, 1, 1, 1))
        return 255 * (x / 255) ** gamma

    def _blur(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        sigma = torch.where(torch.rand(b, generator=gen) < self.blur_p,
                            self._u(gen, b, lo=0.4, hi=self.blur_max), 0.01)
        radius = int(np.ceil(2.5 * self.blur_max))
        r = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
        k = (k / k.sum(1, keepdim=True)).repeat_interleave(3, 0)  # (3B, 2 radius + 1)
        y = x.reshape(1, 3 * b, *x.shape[2:])
        y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=3 * b)
        y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=3 * b)
        return y.reshape_as(x)


#: Neutrophil-series codes: a lab whose neutrophils take up eosin makes them look like PBC's eosinophils.
EOSIN_TINTED = ("MYB", "MMZ", "NGB", "NGS")
#: Eosin's optical density (log10) per unit, red, green, blue: PBC's eosinophils' cytoplasm minus its
#: neutrophils' (0.04, 0.15, 0.07) and wbc_seg 1's neutrophils' minus PBC's (0.02, 0.15, 0.12), as a direction.
EOSIN_OD = np.array([0.2, 1.0, 0.6], np.float32)


def eosin_tint(images: np.ndarray, picked: np.ndarray, p: float, rng: np.random.Generator,
               most: float = 0.2) -> np.ndarray:
    """Crops where ``picked`` (each with probability ``p``) with up to ``most`` (log10 OD in green) of eosin
    added to their stained parts, in proportion to how stained each pixel is (background stays white)."""
    chosen = np.flatnonzero(picked & (rng.random(len(images)) < p))
    if not len(chosen):
        return images
    out = images.copy()
    x = images[chosen].astype(np.float32) + 1
    od = -np.log10(x / 256)
    glass = -np.log10(np.percentile(x.reshape(len(x), -1, 3), 99, axis=1) / 256)  # each crop's background
    stained = np.clip((od.sum(-1, keepdims=True) - glass.sum(-1)[:, None, None, None] - 0.15) / 0.3, 0, 1)
    amount = rng.uniform(0, most, len(chosen))[:, None, None, None]
    od = od + stained * amount * EOSIN_OD
    out[chosen] = np.clip(np.rint(256 * 10 ** -od - 1), 0, 255).astype(np.uint8)
    return out


_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)
