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
warp, I1 and its gradient (central differences of I1, as Sánchez et al., rather than the
gradient of the resampled image) are resampled at x + u0 and the data term is linearised,
    rho(u) = I1w + grad I1w . (u - u0) - I0,
then the method alternates until the mean squared update of u falls below epsilon^2 or after
``iterations`` steps:
    v = u + { lambda theta g  if rho < -lambda theta |g|^2;  -lambda theta g  if rho > lambda
              theta |g|^2;  -rho g / |g|^2 otherwise }                  (g = grad I1w)
    u = v + theta div p
    p = (p + tau/theta grad u) / (1 + tau/theta |grad u|)               (Chambolle's dual step)
with forward differences for grad, backward ones for div (zero flux at the image border).
The flow of each level starts from the coarser one, resampled and rescaled; the dual field p
starts from zero at every level. A warp's steps stop when the mean squared update is below
epsilon^2 at a check, every 10 steps (OpenCV checks every step; checking less often costs a
GPU fewer synchronisations and a few more steps).

Everything is whole-tensor arithmetic over (N, 2, H, W): no loop over pixels or over pairs.
Each pair stops on its own (a converged pair leaves the working batch), and no step mixes
pairs, so a pair's flow does not depend on the batch it was computed in.
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
        steps per warp, here ``iterations``), median filter 5, gamma 0 (no illumination term).
        Here the median filter runs once after each warp (Wedel et al.); where OpenCV applies
        its own between iterations may differ. On twostream.flowpairs' pairs a warp stops after
        10 to 60 steps, so the 300 bound is rarely reached."""
        return cls(tau=0.25, lam=0.15, theta=0.3, scales=5, scale_step=0.8, warps=5,
                   iterations=300, epsilon=0.01, median=5)

    @classmethod
    def fast(cls) -> "TVL1Params":
        """The live preset: OpenCV's weights, a coarser pyramid, 2 warps of at most 20 steps.

        Chosen on twostream.flowpairs' pairs (2-core AMD EPYC, batch 4, mean endpoint error over
        translate/rotate/zoom/object; ms per pair): at 112x112 OpenCV contrib 0.045 px 138 ms,
        opencv() 0.040 px, this 0.044 px 11 ms, 3x0.8 scales x 1 warp x 30 0.042 px 8 ms; at
        224x224 contrib 0.058 px 390 ms, this 0.043 px 41 ms, 3x0.8 x 1 x 30 0.46 px (it
        loses the rotation). Levels of half size (to 1/8) keep large motion: a 12 px shift at
        224x224 costs contrib 13.6 px of error, opencv() 13.9, 3 half-size levels 12.9, this 0.05.
        """
        return cls(tau=0.25, lam=0.15, theta=0.3, scales=4, scale_step=0.5, warps=2,
                   iterations=20, epsilon=0.01, median=5)

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
    """(N, 1, H, W) -> same, separable Gaussian, borders replicated. Weighted sums of shifted
    views, not conv2d: a convolution backend may pick another algorithm for another batch size,
    and a pair's flow must not depend on its batch."""
    radius = max(1, math.ceil(3 * sigma))
    weights = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-radius, radius + 1)]
    weights = [w / sum(weights) for w in weights]
    height, width = image.shape[-2:]
    padded = F.pad(image, (radius, radius, radius, radius), mode="replicate")
    rows = sum(w * padded[..., :, k:k + width] for k, w in enumerate(weights))
    return sum(w * rows[..., k:k + height, :] for k, w in enumerate(weights))


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


def _divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """The negative adjoint of the forward-difference gradient: backward differences, p taken
    as 0 outside the image. (N, C, H, W) x 2 -> (N, C, H, W)."""
    div = px + py
    div[..., :, 1:] -= px[..., :, :-1]
    div[..., 1:, :] -= py[..., :-1, :]
    return div


def _warp(images: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample images (N, C, H, W) at x + flow (N, 2, H, W) px, bicubic, borders replicated.

    Bicubic as in Sánchez et al.: bilinear sampling blurs most at half-pixel offsets, which
    pulls sub-pixel motion towards the half pixel (measured: 1.3 px found as 1.34)."""
    height, width = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")
    # align_corners=True puts -1 and +1 on the centres of the first and last pixels
    gx = (xs + flow[:, 0]) * (2.0 / max(width - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="border", align_corners=True)


def _odd_even_merge(lo: int, hi: int, r: int):
    step = r * 2
    if step < hi - lo:
        yield from _odd_even_merge(lo, hi, step)
        yield from _odd_even_merge(lo + r, hi, step)
        yield from ((i, i + r) for i in range(lo + r, hi - r, step))
    else:
        yield lo, lo + r


def _odd_even_merge_sort(lo: int, hi: int):
    """Batcher's odd-even merge sort network on wires lo..hi (hi - lo + 1 a power of two):
    compare-exchange pairs (i, j), i < j, after which wire i holds the smaller value."""
    if hi - lo >= 1:
        mid = lo + (hi - lo) // 2
        yield from _odd_even_merge_sort(lo, mid)
        yield from _odd_even_merge_sort(mid + 1, hi)
        yield from _odd_even_merge(lo, hi, 1)


def _median_network(count: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """The comparators of a sorting network on ``count`` wires that the middle wire depends
    on, as (i, j, need_min, need_max). Wires past ``count`` (up to a power of two) hold +inf,
    so comparators touching them never move anything and are dropped."""
    size = 1 << (count - 1).bit_length()
    pairs = [(i, j) for i, j in _odd_even_merge_sort(0, size - 1) if j < count]
    needed, kept = {count // 2}, []
    for i, j in reversed(pairs):
        if i in needed or j in needed:
            kept.append((i, j, i in needed, j in needed))
            needed |= {i, j}
    return tuple(reversed(kept))


_MEDIAN_NETWORKS = {size: _median_network(size * size) for size in (3, 5, 7)}


def _median_filter(flow: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> same, each plane median-filtered over size x size, borders replicated.

    On the CPU a selection network of elementwise min/max (113 comparators for 5 x 5) is
    about 5x faster than torch.median over unfolded windows; on a GPU the one median kernel
    beats hundreds of small launches. Both give the exact median, so results do not depend on
    the device's choice."""
    r = size // 2
    height, width = flow.shape[-2:]
    padded = F.pad(flow, (r, r, r, r), mode="replicate")
    if flow.device.type == "cpu" and size in _MEDIAN_NETWORKS:
        wires = [padded[..., dy:dy + height, dx:dx + width] for dy in range(size) for dx in range(size)]
        for i, j, need_min, need_max in _MEDIAN_NETWORKS[size]:
            low = torch.minimum(wires[i], wires[j]) if need_min else None
            wires[j] = torch.maximum(wires[i], wires[j]) if need_max else None
            wires[i] = low
        return wires[size * size // 2]
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # (N, C, H, W, size, size)
    return windows.reshape(*flow.shape, size * size).median(dim=-1).values


def _solve_warp(rho_c: torch.Tensor, grad: torch.Tensor, u: torch.Tensor, px: torch.Tensor,
                py: torch.Tensor, params: TVL1Params) -> None:
    """The primal-dual steps of one warp, in place on u, px, py (N, 2, H, W).

    rho_c (N, 1, H, W): the linearised residual at u = 0 (I1w - g . u0 - I0); grad (N, 2, H, W):
    g, the gradient of I1 at x + u0. A pair stops at the first check (every _CHECK_EVERY steps)
    where its last update's mean square is below epsilon^2; stopped pairs leave the working
    batch, so the steps a pair gets never depend on the other pairs in the batch.
    """
    lt = params.lam * params.theta
    step = params.tau / params.theta
    grad_sq = (grad * grad).sum(dim=1, keepdim=True)
    # The thresholding step is v = u - clamp(rho / |g|^2, -lt, lt) g; where |g|^2 is ~0 the data
    # term says nothing, and a zero inverse makes v = u there.
    flat = grad_sq < 1e-10
    inv_grad_sq = torch.where(flat, torch.zeros_like(grad_sq), 1.0 / torch.where(flat, torch.ones_like(grad_sq), grad_sq))
    full_u, full_px, full_py = u, px, py
    rows = torch.arange(u.shape[0], device=u.device)  # which pairs of the batch are still working
    ux, uy = torch.zeros_like(u), torch.zeros_like(u)  # forward differences; last column/row stay 0
    stop = params.epsilon ** 2
    for step_no in range(1, params.iterations + 1):
        rho = torch.addcmul(rho_c, grad[:, :1], u[:, :1]).addcmul_(grad[:, 1:], u[:, 1:])
        update = (rho * inv_grad_sq).clamp_(-lt, lt).mul(grad).neg_()  # v - u
        update.add_(_divergence(px, py), alpha=params.theta)  # u_new - u = v - u + theta div p
        u += update
        torch.sub(u[..., :, 1:], u[..., :, :-1], out=ux[..., :, :-1])
        torch.sub(u[..., 1:, :], u[..., :-1, :], out=uy[..., :-1, :])
        norm = torch.addcmul(ux * ux, uy, uy).sqrt_().mul_(step).add_(1.0)
        px.add_(ux, alpha=step).div_(norm)
        py.add_(uy, alpha=step).div_(norm)
        if step_no % _CHECK_EVERY and step_no < params.iterations:
            continue
        done = (update * update).sum(dim=1).mean(dim=(1, 2)) < stop  # (n,)
        last = step_no == params.iterations or bool(done.all())
        if not last and not bool(done.any()):
            continue
        if u is not full_u:  # the batch has shrunk before: the working pairs are copies
            finished = slice(None) if last else done
            full_u[rows[finished]], full_px[rows[finished]], full_py[rows[finished]] = \
                u[finished], px[finished], py[finished]
        if last:
            return
        keep = ~done
        rows, u, px, py = rows[keep], u[keep], px[keep], py[keep]
        rho_c, grad, inv_grad_sq, ux, uy = rho_c[keep], grad[keep], inv_grad_sq[keep], ux[keep], uy[keep]


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
            px, py = torch.zeros_like(u), torch.zeros_like(u)  # the dual field restarts per level
            sources = torch.cat([i1, _centred_gradient(i1)], dim=1)  # (N, 3, H, W)
            for _ in range(params.warps):
                warped = _warp(sources, u)
                grad = warped[:, 1:].contiguous()
                rho_c = warped[:, :1] - (grad * u).sum(dim=1, keepdim=True) - i0  # rho(u) = rho_c + g . u
                _solve_warp(rho_c, grad, u, px, py, params)
                if params.median > 1:
                    u = _median_filter(u, params.median)
        return u
