"""Central-slice projection against real-space projection, and projector/back-projector adjointness."""
import torch

from blush_scipion.engine.fourier import irfft2_centered
from blush_scipion.engine.projector import (SlicePoints, extract_central_slices, fourier_reference,
                                            hermitian_symmetrize, insert_central_slices)
from blush_scipion.engine.rotation import euler_to_matrix, random_rotations


def blobs(n):
    k = torch.arange(n, dtype=torch.float32) - n // 2
    z, y, x = torch.meshgrid(k, k, k, indexing="ij")
    return (torch.exp(-((x - 3) ** 2 + (y + 2) ** 2 / 2 + (z - 1) ** 2 / 3) / 8)
            + 0.5 * torch.exp(-((x + 5) ** 2 + (y - 4) ** 2 + (z + 2) ** 2) / 5))


def project(volume, rot, tilt, psi):
    n = volume.shape[-1]
    points = SlicePoints.within(n)
    rotation = euler_to_matrix(torch.tensor([rot]), torch.tensor([tilt]), torch.tensor([psi]))
    return irfft2_centered(points.scatter(extract_central_slices(fourier_reference(volume), rotation, points)), n)[0]


def test_identity_projection_is_the_sum_along_z():
    vol = blobs(32)
    expected = vol.sum(0)
    assert (project(vol, 0, 0, 0) - expected).abs().max() < 0.04 * expected.abs().max()


def test_tilt_90_projects_along_x_in_relions_convention():
    # A = Ry(90): the image is the sum over x of V at z = -x_image (RELION's Euler convention)
    vol = blobs(32)
    n = 32
    side = vol.sum(2)  # [z, y]
    expected = torch.zeros(n, n)
    for xi in range(1, n):
        expected[:, xi] = side[n - xi, :]
    assert (project(vol, 0, 90, 0) - expected).abs().max() < 0.04 * expected.abs().max()


def test_extract_and_insert_are_adjoint():
    g = torch.Generator().manual_seed(0)
    n, pad = 24, 2
    m = n * pad
    reference = torch.complex(torch.randn(m, m, m, generator=g), torch.randn(m, m, m, generator=g))
    points = SlicePoints.within(n)
    rotations = euler_to_matrix(*random_rotations(7, g).T)
    y = torch.complex(torch.randn(7, len(points.index), generator=g), torch.randn(7, len(points.index), generator=g))
    px = extract_central_slices(reference, rotations, points, pad)
    pty = torch.zeros(m, m, m, dtype=torch.complex64)
    insert_central_slices(pty, None, y, None, rotations, points, pad)
    lhs = (px * y.conj()).sum()
    rhs = (reference * pty.conj()).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-4)


def test_back_projection_of_real_images_gives_a_real_map():
    g = torch.Generator().manual_seed(1)
    n, pad = 16, 2
    m = n * pad
    points = SlicePoints.within(n)
    from blush_scipion.engine.fourier import rfft2_centered
    images = torch.randn(5, n, n, generator=g)
    slices = points.gather(rfft2_centered(images)) * points.weight
    data = torch.zeros(m, m, m, dtype=torch.complex64)
    insert_central_slices(data, None, slices, None, euler_to_matrix(*random_rotations(5, g).T), points, pad)
    data = hermitian_symmetrize(data)
    full = torch.fft.ifftn(torch.fft.ifftshift(data))
    assert full.imag.abs().max() < 1e-4 * full.real.abs().max()
