"""The E-step's likelihoods, and the significant-weights pruning of the M-step (RELION's
adaptive_fraction): what is kept, and that the pruned sums equal the dense ones."""

import torch

from blush_scipion.engine.expectation import (
    log_likelihoods,
    plane_log_likelihoods,
    posteriors,
    significant,
    weighted_sums,
)


def _posteriors(sharpness: float, b=16, t=5, r=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, t, r, generator=g) * sharpness
    return torch.softmax(scores.reshape(b, -1), 1).reshape(b, t, r)


def test_significant_orientations_hold_the_fraction_and_at_most_a_bin_more(device):
    for sharpness in (0.5, 3.0, 30.0):
        probs = _posteriors(sharpness).to(device)
        kept = significant(probs, fraction=0.99)
        assert torch.allclose(kept.sum((1, 2)), torch.ones(len(probs)))
        marginal, inside = probs.sum(1), kept.sum(1) > 0  # (B, R)
        # every shift of a kept orientation is kept, in proportion
        renormalised = probs * inside[:, None, :] / (marginal * inside).sum(1)[:, None, None]
        assert torch.allclose(kept, renormalised, rtol=1e-4, atol=1e-9)
        assert ((marginal * inside).sum(1) >= 0.99 - 1e-5).all()
        # the best orientation is always kept, and every kept one outweighs every dropped one
        assert inside.gather(1, marginal.argmax(1, keepdim=True)).all()
        lightest_kept = torch.where(inside, marginal, torch.ones_like(marginal)).min(1).values
        heaviest_dropped = torch.where(inside, torch.zeros_like(marginal), marginal).max(1).values
        assert (lightest_kept >= heaviest_dropped).all()
        # minimal up to one bin of 0.05 nats: without the kept orientations lighter than e^0.05
        # times the lightest kept one, less than the fraction is left
        heavy = inside & (marginal > lightest_kept[:, None] * 1.052)
        assert ((marginal * heavy).sum(1) < 0.99 + 1e-5).all()
    sharp = significant(_posteriors(30.0).to(device), fraction=0.999)
    assert (sharp.sum(1) > 0).sum(1).float().mean() < 5  # a sharp posterior keeps a few orientations


def test_pruned_m_step_sums_equal_the_dense_sums(device):
    g = torch.Generator().manual_seed(1)
    for sharpness in (0.5, 30.0):  # the dense path and the gathered one
        probs = significant(_posteriors(sharpness).to(device))
        b, t, r = probs.shape
        y = torch.randn(b, t, 40, dtype=torch.complex64, generator=g).to(device)
        ctf2 = torch.rand(b, 40, generator=g).to(device)
        data = torch.zeros(r, 40, dtype=torch.complex64, device=device)
        weight = torch.zeros(r, 40, device=device)
        weighted_sums(probs, y, ctf2, data, weight)
        assert torch.allclose(data, torch.einsum("btr,btp->rp", probs.to(y.dtype), y), atol=1e-5)
        assert torch.allclose(weight, torch.einsum("btr,bp->rp", probs, ctf2), atol=1e-5)


def test_the_true_pose_is_the_most_likely(device):
    g = torch.Generator().manual_seed(2)
    proj = torch.randn(50, 200, dtype=torch.complex64, generator=g)
    ctf = torch.rand(3, 200, generator=g) + 0.5
    truth = torch.tensor([4, 17, 33])
    images = ctf * proj[truth] + 0.3 * torch.randn(3, 200, dtype=torch.complex64, generator=g)
    on = (images[:, None], ctf, torch.ones(200), proj)
    _, _, (bt, br) = posteriors(log_likelihoods(*(x.to(device) for x in on)))
    assert br.tolist() == truth.tolist() and bt.tolist() == [0, 0, 0]


def test_plane_likelihoods_equal_the_complex_ones(device):
    """The local search's GEMMs on real and imaginary planes give log_likelihoods' scores."""
    g = torch.Generator().manual_seed(3)
    b, t, r, p = 4, 3, 20, 150
    proj = torch.randn(b, r, p, dtype=torch.complex64, generator=g).to(device)
    images = torch.randn(b, t, p, dtype=torch.complex64, generator=g).to(device)
    ctf, weight = (torch.rand(b, p, generator=g).to(device) + 0.5 for _ in range(2))
    expected = log_likelihoods(images, ctf, weight, proj)
    planes = torch.stack([proj.real, proj.imag]).transpose(2, 3).contiguous()  # (2, B, P, R)
    got = plane_log_likelihoods(images, ctf, weight, planes)
    assert got.shape == (b, t, r)
    assert (got - expected).abs().max() < 1e-4 * expected.abs().max()
