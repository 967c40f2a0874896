"""Duality-based TV-L1 optical flow in torch: batched over N frame pairs, on CPU or CUDA.

The method of
  C. Zach, T. Pock, H. Bischof, "A Duality Based Approach for Realtime TV-L1 Optical Flow",
    DAGM 2007;
  A. Wedel, T. Pock, C. Zach, H. Bischof, D. Cremers, "An Improved Algorithm for TV-L1 Optical
    Flow", Statistical and Geometrical Approaches to Visual Motion Analysis, 2009 (median
    filtering of the flow after each warp);
  J. Sánchez Pérez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1 Optical Flow Estimation", Image
    Processing On Line 3 (2013), 137-150 (the numerical scheme OpenCV's DualTVL1OpticalFlow
    follows: pyramid with Gaussian pre-smoothing, warps, the thresholding step, the stopping rule).

The energy  E(u) = sum |grad u1| + |grad u2| + lambda |I1(x + u) - I0(x)|  is split with an
auxiliary field v and a coupling (u - v)^2 / (2 theta). Per scale, coarse to fine, and per
warp, I1 and its gradient are resampled at x + u0 and the data term is linearised,
    rho(u) = I1w + grad I1w . (u - u0) - I0,
then the method alternates until the mean squared update of u falls below epsilon^2 or after
``iterations`` steps:
    v = u + { lambda theta g  if rho < -lambda theta |g|^2;  -lambda theta g  if rho > lambda
              theta |g|^2;  -rho g / |g|^2 otherwise }                  (g = grad I1w)
    u = v + theta div p
    p = (p + tau/theta grad u) / (1 + tau/theta |grad u|)               (Chambolle's dual step)
with forward differences for grad, backward ones for div (zero flux at the image border).

Everything is whole-tensor arithmetic over (N, 2, H, W): no loop over pixels or over pairs.
Each pair stops on its own (a frozen pair is no longer updated), so a pair's flow does not
depend on which batch it was computed in.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from twostream.errors import ContractMismatch

MIN_PYRAMID_SIDE = 16  # coarser levels than this carry too few pixels for the data term
_CHECK_EVERY = 10  # iterations between "all pairs converged?" checks (each one syncs a GPU)


@dataclass(frozen=True)
class TVL1Params:
    """Zach, Pock and Bischof's duality-based TV-L1 (as OpenCV's DualTVL1OpticalFlow).

    tau: dual time step; lam: data weight (for grey levels 0..255); theta: coupling of u and v;
    scales: pyramid levels (fewer when the image gets below 16 px); scale_step: size ratio of
    consecutive levels; warps: linearisations per level; iterations: most primal-dual steps per
    warp; epsilon: stop a warp when the mean squared update of u is below epsilon^2; median:
    median filter size applied to the flow after each warp (0 or 1: off).
    """

    tau: float
    lam: float
    theta: float
    scales: int
    scale_step: float
    warps: int
    iterations: int
    epsilon: float
    median: int

    def __post_init__(self) -> None:
        problems = []
        if not (0 < self.tau <= 0.25):
            problems.append(f"tau {self.tau} must be in (0, 0.25] (the dual step is stable up to 1/4)")
        if self.lam <= 0 or self.theta <= 0:
            problems.append(f"lam {self.lam} and theta {self.theta} must be > 0")
        if self.scales < 1 or self.warps < 1 or self.iterations < 1:
            problems.append(f"scales, warps and iterations must be >= 1, got {self.scales}, {self.warps}, {self.iterations}")
        if not (0 < self.scale_step < 1):
            problems.append(f"scale_step {self.scale_step} must be in (0, 1)")
        if self.epsilon < 0:
            problems.append(f"epsilon {self.epsilon} must be >= 0")
        if self.median < 0 or (self.median > 1 and self.median % 2 == 0):
            problems.append(f"median {self.median} must be 0, 1 or an odd filter size")
        if problems:
            raise ContractMismatch("invalid TV-L1 parameters: " + "; ".join(problems))

    @classmethod
    def opencv(cls) -> "TVL1Params":
        """OpenCV contrib's DualTVL1OpticalFlow_create() defaults, read from opencv-contrib 5.0
        (getTau() ... getMedianFiltering()): tau 0.25, lambda 0.15, theta 0.3, 5 scales,
        scaleStep 0.8, 5 warps, epsilon 0.01, 10 outer x 30 inner iterations (at most 300
        steps per warp, here ``iterations``), median filter 5, gamma 0 (no illumination term)."""
        return cls(tau=0.25, lam=0.15, theta=0.3, scales=5, scale_step=0.8, warps=5,
                   iterations=300, epsilon=0.01, median=5)

    @classmethod
    def fast(cls) -> "TVL1Params":
        """The live preset: fewer levels, warps and steps than OpenCV's defaults."""
        return cls(tau=0.25, lam=0.15, theta=0.3, scales=3, scale_step=0.5, warps=3,
                   iterations=30, epsilon=0.01, median=5)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TVL1Params":
        if not isinstance(data, dict):
            raise ContractMismatch(f"TV-L1 parameters must be a mapping, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        if sorted(data) != sorted(names):
            raise ContractMismatch(f"TV-L1 parameters need exactly {names}, got {sorted(data)}")
        ints = {"scales", "warps", "iterations", "median"}
        try:
            return cls(**{k: int(data[k]) if k in ints else float(data[k]) for k in names})
        except (TypeError, ValueError) as exc:
            raise ContractMismatch(f"TV-L1 parameters are not numbers: {exc}") from exc


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 1, H, W) -> same, separable Gaussian, borders replicated."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(image, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


def _pyramid(image: torch.Tensor, params: TVL1Params) -> list[torch.Tensor]:
    """(N, 1, H, W) -> levels finest first; each coarser one is the previous blurred with the
    anti-aliasing sigma Sánchez et al. use for this step (0.6 sqrt(1/step^2 - 1)), resampled."""
    sigma = 0.6 * math.sqrt(1.0 / params.scale_step ** 2 - 1.0)
    levels = [image]
    for _ in range(1, params.scales):
        height, width = levels[-1].shape[-2:]
        size = (round(height * params.scale_step), round(width * params.scale_step))
        if min(size) < MIN_PYRAMID_SIDE:
            break
        blurred = _gaussian_blur(levels[-1], sigma)
        levels.append(F.interpolate(blurred, size=size, mode="bilinear", align_corners=False))
    return levels


def _centred_gradient(image: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 2, H, W) central differences d/dx, d/dy, borders replicated."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return torch.cat([gx, gy], dim=1)


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) -> d/dx, d/dy by forward differences, zero on the last column / row."""
    ux = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1, 0, 0))
    uy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return ux, uy


def _divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """The negative adjoint of _forward_gradient: backward differences, p taken as 0 outside."""
    return (px - F.pad(px[..., :, :-1], (1, 0, 0, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))


def _warp(images: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample images (N, C, H, W) at x + flow (N, 2, H, W) px, bilinear, borders replicated."""
    n, _, height, width = flow.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")
    # align_corners=True puts -1 and +1 on the centres of the first and last pixels
    gx = (xs + flow[:, 0]) * (2.0 / max(width - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _median_filter(flow: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> same, each plane median-filtered over size x size, borders replicated."""
    r = size // 2
    padded = F.pad(flow, (r, r, r, r), mode="replicate")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # (N, C, H, W, size, size)
    return windows.reshape(*flow.shape, size * size).median(dim=-1).values


def _solve_warp(i0: torch.Tensor, i1w: torch.Tensor, grad: torch.Tensor, u: torch.Tensor,
                px: torch.Tensor, py: torch.Tensor, params: TVL1Params) -> tuple[torch.Tensor, ...]:
    """The primal-dual steps of one warp. i0, i1w (N, 1, H, W); grad (N, 2, H, W) of I1 at
    x + u0; u (N, 2, H, W) = u0; px, py (N, 2, H, W) dual fields. Returns u, px, py."""
    lt = params.lam * params.theta
    step = params.tau / params.theta
    grad_sq = (grad * grad).sum(dim=1, keepdim=True)
    rho_c = i1w - (grad * u).sum(dim=1, keepdim=True) - i0  # rho(u) = rho_c + g . u
    # where |g|^2 is tiny the third case divides by ~0; there the data term says nothing: v = u
    flat = grad_sq < 1e-10
    safe_grad = grad / torch.where(flat, torch.ones_like(grad_sq), grad_sq)
    limit = lt * grad_sq
    active = torch.ones(u.shape[0], dtype=torch.bool, device=u.device)
    stop = params.epsilon ** 2
    for step_no in range(params.iterations):
        rho = rho_c + (grad * u).sum(dim=1, keepdim=True)
        shift = torch.where(rho < -limit, lt * grad,
                            torch.where(rho > limit, -lt * grad, -rho * safe_grad))
        shift = torch.where(flat, torch.zeros_like(shift), shift)
        new_u = u + shift + params.theta * _divergence(px, py)
        error = ((new_u - u) ** 2).sum(dim=1).mean(dim=(1, 2))  # (N,)
        keep = active.view(-1, 1, 1, 1)
        u = torch.where(keep, new_u, u)
        ux, uy = _forward_gradient(u)
        norm = 1.0 + step * torch.sqrt(ux * ux + uy * uy)
        px = torch.where(keep, (px + step * ux) / norm, px)
        py = torch.where(keep, (py + step * uy) / norm, py)
        active = active & (error >= stop)
        if (step_no + 1) % _CHECK_EVERY == 0 and not bool(active.any()):
            break
    return u, px, py


def _check(prev: torch.Tensor, cur: torch.Tensor) -> None:
    if prev.shape != cur.shape or prev.dim() != 3:
        raise ContractMismatch(f"tvl1_flow expects two (N, H, W) batches of the same shape, got "
                               f"{tuple(prev.shape)} and {tuple(cur.shape)}")
    if prev.device != cur.device:
        raise ContractMismatch(f"tvl1_flow frames on two devices: {prev.device} and {cur.device}")
    if min(prev.shape[-2:]) < 2:
        raise ContractMismatch(f"tvl1_flow needs frames of at least 2x2 px, got {tuple(prev.shape[-2:])}")


def tvl1_flow(prev: torch.Tensor, cur: torch.Tensor, params: TVL1Params) -> torch.Tensor:
    """prev, cur: float32 (N, H, W) grey levels 0..255, any device -> (N, 2, H, W) float32
    displacement in px (x then y) of prev -> cur, on the same device: prev(x) ~ cur(x + flow)."""
    _check(prev, cur)
    with torch.no_grad():
        levels0 = _pyramid(prev.float()[:, None], params)
        levels1 = _pyramid(cur.float()[:, None], params)
        n = prev.shape[0]
        u = None
        for i0, i1 in zip(reversed(levels0), reversed(levels1)):
            height, width = i0.shape[-2:]
            if u is None:
                u = i0.new_zeros(n, 2, height, width)
            else:  # the coarser flow, resampled and rescaled to this level's pixels
                scale = torch.tensor([width / u.shape[-1], height / u.shape[-2]], dtype=u.dtype, device=u.device)
                u = F.interpolate(u, size=(height, width), mode="bilinear", align_corners=False)
                u = u * scale.view(1, 2, 1, 1)
            px, py = torch.zeros_like(u), torch.zeros_like(u)
            sources = torch.cat([i1, _centred_gradient(i1)], dim=1)  # (N, 3, H, W)
            for _ in range(params.warps):
                warped = _warp(sources, u)
                u, px, py = _solve_warp(i0, warped[:, :1], warped[:, 1:], u, px, py, params)
                if params.median > 1:
                    u = _median_filter(u, params.median)
        return u
