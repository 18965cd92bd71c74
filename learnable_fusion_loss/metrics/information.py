"""Information measures on grey levels: EN (entropy), MI (mutual information) and VIF.

Each core takes float64 grey levels (see :func:`.levels.to_grey_levels`) and
returns one value per image (``[B]``) or per image and reference channel (``[B, S]``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import native
from .filters import filter_valid, gaussian_1d, local_moments


def entropy_levels(levels: Tensor) -> Tensor:
    codes = torch.round(levels).long().flatten(1)  # [B, N]
    batch, count = codes.shape
    offsets = torch.arange(batch, device=codes.device).unsqueeze(1) * 256
    hist = torch.bincount((codes + offsets).flatten(), minlength=batch * 256).view(batch, 256)
    p = hist.to(levels.dtype) / count
    return -torch.where(p > 0, p * torch.log2(torch.where(p > 0, p, 1.0)), 0.0).sum(-1)


def mi_levels(x: Tensor, y: Tensor) -> Tensor:
    """Mutual information (nats) of the 256-level joint histogram of each image pair."""
    # A joint histogram by one bincount over (batch, x, y) codes: the same numbers
    # as sklearn's contingency matrix, without its sparse-matrix round trip.
    cx = torch.round(x).long().flatten(1)
    cy = torch.round(y).long().flatten(1)
    batch, count = cx.shape
    offsets = torch.arange(batch, device=cx.device).unsqueeze(1) * 65536
    joint = torch.bincount((offsets + cx * 256 + cy).flatten(), minlength=batch * 65536)
    p = joint.view(batch, 256, 256).to(x.dtype) / count
    # log of the marginals on their 256 entries, broadcast (a marginal is 0 only where
    # its whole row or column of p is, and those terms are masked out below)
    px, py = p.sum(2, keepdim=True), p.sum(1, keepdim=True)
    log_px = torch.where(px > 0, px, 1.0).log_()
    log_py = torch.where(py > 0, py, 1.0).log_()
    nz = p > 0
    terms = p * torch.where(nz, p, 1.0).log_().sub_(log_px).sub_(log_py)
    return torch.where(nz, terms, 0.0).flatten(1).sum(-1).clamp_min(0.0)


def _sum_log10(terms: Tensor, group: int = 16) -> Tensor:
    """``log10(terms).sum((-2, -1))`` for terms in ``[1, 10^19]``, as the log of products.

    ``log10`` is the costliest step of VIF's per-pixel chain; taking it of products of
    ``group`` neighbours evaluates it on 16× fewer values. VIF's terms are ``1 + x``
    with ``x ≤ σ²_max / σ²_n ≈ 8·10³`` on 8-bit levels, so a product of 16 stays below
    10^63 (terms up to 10^19 would stay below float64's 1.8e308), and the sum changes
    only by rounding (~1e-16).
    """
    length = terms.shape[-1] - terms.shape[-1] % group
    products = terms[..., :length].unflatten(-1, (-1, group)).prod(-1)
    return torch.log10(products).sum((-2, -1)) + torch.log10(terms[..., length:]).sum((-2, -1))


def vif_levels(refs: Tensor, dist: Tensor, sigma_nsq: float = 2.0, eps: float = 1e-10) -> Tensor:
    """Pixel-domain VIF of each reference channel of ``refs`` [B, S, H, W] against ``dist`` [B, 1, H, W].

    Four scales, Gaussian windows N = 17, 9, 5, 3 with σ = N / 5, 'valid' filtering,
    downsampling by 2 after smoothing with the current window; σ²_n = 2 (``vifp``).
    """
    num = refs.new_zeros(refs.shape[:2])
    den = refs.new_zeros(refs.shape[:2])
    ref, dst = refs, dist
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = gaussian_1d(n, n / 5.0, refs)
        if scale > 1:
            ref = filter_valid(ref, win, stride=2)  # filtered[::2, ::2]
            dst = filter_valid(dst, win, stride=2)
        if native.available(ref, dst):  # the same formula, evaluated inside the filter
            scale_num, scale_den = native.vif_log_sums(ref, dst, win, sigma_nsq, eps)
            num, den = num + scale_num, den + scale_den
            continue
        _, _, sigma1_sq, sigma2_sq, sigma12 = local_moments(ref, dst, win)
        sigma1_sq.clamp_min_(0.0)
        sigma2_sq.clamp_min_(0.0)
        # The evaluators' masked assignments, folded: g is zeroed where the
        # reference or the distorted window is flat or g < 0, and every pixel with
        # g = 0 adds log10(1) = 0 to the numerator whatever sv² is, so only the
        # surviving pixels need sv² = max(σ2² − g·σ12, eps). Same values up to the
        # rounding of a fused multiply-add.
        g = sigma12 / (sigma1_sq + eps)
        keep = (sigma1_sq >= eps) & (sigma2_sq >= eps) & (g >= 0)
        g.mul_(keep)
        sv_sq = torch.addcmul(sigma2_sq, g, sigma12, value=-1.0).clamp_min_(eps)
        signal = sigma1_sq.masked_fill_(sigma1_sq < eps, 0.0)
        num = num + _sum_log10(g.square_().mul_(signal).div_(sv_sq.add_(sigma_nsq)).add_(1.0))
        den = den + _sum_log10(signal.div_(sigma_nsq).add_(1.0))
    vif = num / den
    return torch.where(torch.isnan(vif), 1.0, vif)  # flat reference: CDDFuse returns 1
