"""The E-step: log-likelihoods of images against reference projections, as GEMMs.

Gaussian noise with variance sigma2 per Fourier shell. For image X (shifted by t), CTF C and
projection A on the points p of a SlicePoints list (Hermitian weights w):

    log p(X | r, t) = const + sum_p w_p / sigma2_p (2 Re(conj(X_tp) C_p A_rp) - C_p^2 |A_rp|^2)

The cross term over all (image, shift) rows and orientation columns is one real GEMM of
[Re a, -Im a] with [Re A, Im A], a = conj(X_t) C w / sigma2; the |A|^2 term is a second GEMM.
"""

from __future__ import annotations

import torch


def shifted(images: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """(B, P) complex image transforms x (T, P) unit phases -> (B, T, P): every image at every shift."""
    return images[:, None, :] * phases[None, :, :]


def shift_phases(shifts: torch.Tensor, coords: torch.Tensor, n: int) -> torch.Tensor:
    """(T, 2) shifts in pixels, (P, 2) frequencies (kx, ky) -> (T, P) phases that shift an image by +s."""
    angle = -2 * torch.pi * (shifts @ coords.T.to(shifts.dtype)) / n
    return torch.polar(torch.ones_like(angle), angle)


def _real_pair(x: torch.Tensor, conjugate: bool = False) -> torch.Tensor:
    """(..., P) complex -> (..., 2P) real [Re, Im] (or [Re, -Im]) for real GEMMs."""
    return torch.cat([x.real, -x.imag if conjugate else x.imag], dim=-1)


def cross_and_power(
    images_t: torch.Tensor, ctf: torch.Tensor, weight: torch.Tensor, projections: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two GEMMs of the E-step.

    images_t: (B, T, P) complex shifted images; ctf: (B, P) real; weight: (P,) real, the Hermitian
    weight over sigma2; projections: (R, P) complex shared by all images, or (B, R, P) per image.
    Returns cross (B, T, R) = sum_p w Re(conj(X_t) C A_r) and power (B, R) = sum_p w C^2 |A_r|^2.
    """
    a = images_t.conj() * (ctf * weight)[:, None, :]
    ctf2 = ctf**2 * weight
    if projections.dim() == 2:
        b, t, p = a.shape
        cross = (_real_pair(a.reshape(b * t, p), conjugate=True) @ _real_pair(projections).T).reshape(
            b, t, -1
        )
        power = ctf2 @ (projections.abs() ** 2).T
    else:
        cross = _real_pair(a, conjugate=True) @ _real_pair(projections).transpose(1, 2)
        power = torch.einsum("bp,brp->br", ctf2, projections.abs() ** 2)
    return cross, power


def log_likelihoods(images_t, ctf, weight, projections) -> torch.Tensor:
    """(B, T, R) log-likelihood, up to a per-image constant (arguments as cross_and_power)."""
    cross, power = cross_and_power(images_t, ctf, weight, projections)
    return 2 * cross - power[:, None, :]


def plane_log_likelihoods(
    images_t: torch.Tensor, ctf: torch.Tensor, weight: torch.Tensor, planes: torch.Tensor
) -> torch.Tensor:
    """(B, T, R) log-likelihoods against each image's own projections, as log_likelihoods.

    images_t: (B, T, P) complex; ctf, weight: (B, P); planes: (2, B, P, R) the real and imaginary
    parts of the projections (projector.extract_slice_planes), used as they lie: two batched GEMMs
    for the cross term, one for the power."""
    a = images_t.conj() * (ctf * weight)[:, None, :]
    re, im = planes
    cross = torch.bmm(a.real.contiguous(), re) - torch.bmm(a.imag.contiguous(), im)
    power = re.square().addcmul_(im, im)  # (B, P, R) |A|^2
    return 2 * cross - torch.bmm((ctf**2 * weight)[:, None, :], power)


def significant(probs: torch.Tensor, fraction: float = 0.999, bin_width: float = 0.05) -> torch.Tensor:
    """(B, T, R) posteriors -> the same, with each image's weights outside its significant
    orientations set to zero and the rest renormalised. An image's significant orientations are
    its most probable ones (summed over shifts) that together hold at least `fraction` of its
    probability (RELION's adaptive_fraction, 0.999): the only ones the M-step then visits.

    Instead of sorting, the orientations are binned by log-distance from the image's best
    (`bin_width` nats per bin) and whole bins are kept down to the one where the mass crosses
    `fraction`: one pass over (B, R).
    """
    marginal = probs.sum(1)  # (B, R)
    n_bins = int(25 / bin_width)  # below e^-25 of the best, all orientations together weigh < 1e-6
    top = marginal.max(1, keepdim=True).values
    depth = ((top.log() - marginal.clamp(min=1e-38).log()) / bin_width).clamp_(max=n_bins).long()
    mass = torch.zeros(len(marginal), n_bins + 1, dtype=probs.dtype, device=probs.device)
    mass.scatter_add_(1, depth, marginal)
    last = ((mass.cumsum(1) - mass) < fraction * mass.sum(1, keepdim=True)).sum(1, keepdim=True) - 1
    keep = (depth <= last).to(probs.dtype)
    return probs * (keep / (marginal * keep).sum(1, keepdim=True))[:, None, :]


def weighted_sums(
    probs: torch.Tensor, y: torch.Tensor, ctf2: torch.Tensor, data: torch.Tensor, weight: torch.Tensor
) -> None:
    """The M-step's sums over the images of a batch, added into `data` and `weight` in place:
    data[r] += sum_bt probs[b, t, r] y[b, t], weight[r] += sum_bt probs[b, t, r] ctf2[b].

    probs: (B, T, R), zero outside the significant orientations (`significant`); y: (B, T, P)
    complex; ctf2: (B, P); data: (R, P) complex; weight: (R, P). The GEMMs run only over the
    orientations that carry weight for some image of the batch.
    """
    b, t, r = probs.shape
    marginal = probs.sum(1)  # (B, R)
    cols = (marginal > 0).any(0).nonzero().squeeze(1)
    flat = probs.reshape(b * t, r)
    yr = torch.view_as_real(y.reshape(b * t, -1).contiguous()).reshape(b * t, -1)  # (B T, 2P) real: one GEMM
    if len(cols) > 0.7 * r:  # broad posteriors: gathering would cost more than it saves
        data += torch.view_as_complex((flat.T @ yr).reshape(r, -1, 2))
        weight += marginal.T @ ctf2
        return
    p = flat[:, cols]  # (B T, cols)
    data.index_add_(0, cols, torch.view_as_complex((p.T @ yr).reshape(len(cols), -1, 2)))
    weight.index_add_(0, cols, marginal[:, cols].T @ ctf2)


def posteriors(scores: torch.Tensor, log_prior: torch.Tensor | None = None):
    """(B, T, R) log-likelihoods -> (probabilities (B, T, R), max probability (B,), best (t, r))."""
    b, t, r = scores.shape
    if log_prior is not None:
        scores = scores + log_prior
    flat = scores.reshape(b, -1)
    best = flat.argmax(dim=1)
    probs = torch.softmax(flat, dim=1)
    return probs.reshape(b, t, r), probs.gather(1, best[:, None]).squeeze(1), (best // r, best % r)
