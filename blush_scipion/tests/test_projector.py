"""Central-slice projection against real-space projection, and projector/back-projector adjointness."""

import pytest
import torch

from blush_scipion.engine.fourier import irfft2_centered, irfft3_centered, rfft2_centered, rfft3_centered
from blush_scipion.engine.projector import (
    SlicePoints,
    extract_central_slices,
    extract_slice_planes,
    fourier_reference,
    fourier_shape,
    hermitian_symmetrize,
    insert_central_slices,
    reference_channels,
)
from blush_scipion.engine.rotation import euler_to_matrix, random_rotations


def blobs(n):
    k = torch.arange(n, dtype=torch.float32) - n // 2
    z, y, x = torch.meshgrid(k, k, k, indexing="ij")
    return torch.exp(-((x - 3) ** 2 + (y + 2) ** 2 / 2 + (z - 1) ** 2 / 3) / 8) + 0.5 * torch.exp(
        -((x + 5) ** 2 + (y - 4) ** 2 + (z + 2) ** 2) / 5
    )


def project(volume, rot, tilt, psi):
    n = volume.shape[-1]
    points = SlicePoints.within(n)
    rotation = euler_to_matrix(torch.tensor([rot]), torch.tensor([tilt]), torch.tensor([psi]))
    return irfft2_centered(
        points.scatter(extract_central_slices(fourier_reference(volume), rotation, points)), n
    )[0]


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


@pytest.mark.parametrize("radius", [None, 9.0])
def test_extract_and_insert_are_adjoint(device, radius):
    """To Nyquist, the slices' rims fall off the grid's edge (where the back-projection masks
    corners: the identity and a 90 deg tilt put ky = 12 on the last planes in y and z); within 9 px
    none do."""
    g = torch.Generator().manual_seed(0)
    n, pad = 24, 2
    m = n * pad
    shape = fourier_shape(m)
    reference = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)).to(device)
    points = SlicePoints.within(n, radius, device=device)
    angles = torch.cat([torch.tensor([[0.0, 0, 0], [0, 90, 0], [3, 87, 2]]), random_rotations(30, g)])
    rotations = euler_to_matrix(*angles.T).to(device)
    k = len(rotations)
    y = torch.complex(
        torch.randn(k, len(points.index), generator=g), torch.randn(k, len(points.index), generator=g)
    ).to(device)
    px = extract_central_slices(reference, rotations, points, pad)
    pty = torch.zeros(shape, dtype=torch.complex64, device=device)
    insert_central_slices(pty, None, y, None, rotations, points, pad)
    # points with kx < 0 read and write conjugates at -k: the pair is adjoint as real-linear maps
    lhs = (px * y.conj()).sum().real
    rhs = (reference * pty.conj()).sum().real
    assert torch.allclose(lhs, rhs, rtol=1e-4)
    assert (pty[:, :, 0] != 0).any()
    if radius is None:
        assert (pty[:, :, -2] != 0).any()  # both ends of the half are reached


def test_slice_planes_and_a_cropped_reference_read_what_extract_reads(device):
    """The local E-step's reads (point-major planes, the reference cropped to the points' radius)
    are extract_central_slices' values, only laid out differently."""
    g = torch.Generator().manual_seed(1)
    n = 32
    reference = fourier_reference(blobs(n) + 0.1 * torch.randn(n, n, n, generator=g)).to(device)
    rotations = euler_to_matrix(*random_rotations(12, g).T).reshape(3, 4, 3, 3).to(device)
    for radius in (None, 9.0):
        points = SlicePoints.within(n, radius, device=device)
        expected = extract_central_slices(reference, rotations, points)  # (3, 4, P)
        scale = expected.abs().max()
        cropped = reference_channels(reference, points.radius)
        if radius is not None:
            assert cropped.shape[-3:] < reference.shape  # the crop took effect
        assert (extract_central_slices(cropped, rotations, points) - expected).abs().max() < 1e-5 * scale
        planes = extract_slice_planes(cropped, rotations, points)  # (2, 3, P, 4)
        read = torch.complex(planes[0], planes[1]).transpose(1, 2)
        assert (read - expected).abs().max() < 1e-5 * scale


def test_back_projection_of_real_images_gives_a_real_map():
    g = torch.Generator().manual_seed(1)
    n, pad = 16, 2
    m = n * pad
    points = SlicePoints.within(n)
    images = torch.randn(5, n, n, generator=g)
    slices = points.gather(rfft2_centered(images)) * points.weight
    data = torch.zeros(fourier_shape(m), dtype=torch.complex64)
    insert_central_slices(data, None, slices, None, euler_to_matrix(*random_rotations(5, g).T), points, pad)
    inner = slice(0, m // 2)  # the kx = m/2 plane (the padded box's Nyquist) lies beyond the sphere
    before = rfft3_centered(irfft3_centered(data, m))
    # before completion, the kx = 0 plane holds one side of each pair only
    assert not torch.allclose(before[..., inner], data[..., inner], atol=1e-3)
    hermitian_symmetrize(data)
    # a half transform of a real volume: the inverse and forward transforms give it back unchanged
    assert torch.allclose(rfft3_centered(irfft3_centered(data, m))[..., inner], data[..., inner], atol=1e-3)


def test_half_volume_projections_match_the_full_transform():
    """The kx < 0 side read through Hermitian symmetry equals interpolating the full transform."""
    g = torch.Generator().manual_seed(2)
    n, pad = 20, 2
    m = n * pad
    volume = blobs(n)
    points = SlicePoints.within(n)
    rotations = euler_to_matrix(*random_rotations(6, g).T)
    half = extract_central_slices(fourier_reference(volume, pad), rotations, points, pad)
    from blush_scipion.engine.fourier import fft3_centered
    from blush_scipion.engine.projector import gridding_correction, pad_volume

    full = fft3_centered(pad_volume(volume / gridding_correction(n, pad), m))
    channels = torch.view_as_real(full).permute(3, 0, 1, 2).contiguous()[None]
    k3 = pad * torch.einsum("bji,pj->bpi", rotations[:, :2, :], points.coords.float()) + m // 2
    grid = (k3 * (2 / (m - 1)) - 1).reshape(1, 1, -1, 1, 3)
    out = torch.nn.functional.grid_sample(channels, grid, align_corners=True)[0, :, 0, :, 0]
    expected = torch.complex(out[0], out[1]).reshape(len(rotations), -1)
    inside = points.coords.float().norm(dim=1) < n / 2 - 1  # away from the full grid's one-sided edge
    assert torch.allclose(half[:, inside], expected[:, inside], atol=1e-3 * expected.abs().max())


def test_reads_cut_into_one_part_per_thread_read_the_same(monkeypatch):
    """On the CPU the points are cut into one grid_sample batch entry per thread (its 3D kernel runs
    one thread per entry); the parts, the last one padded, give the one-part values exactly."""
    g = torch.Generator().manual_seed(2)
    n = 64
    reference = fourier_reference(blobs(n) + 0.1 * torch.randn(n, n, n, generator=g))
    rotations = euler_to_matrix(*random_rotations(11, g).T)
    points = SlicePoints.within(n)  # 11 x 1,600-odd points: no multiple of 2 or 3
    sample, parts = torch.nn.functional.grid_sample, []
    monkeypatch.setattr(
        torch.nn.functional,
        "grid_sample",
        lambda x, grid, **kw: parts.append(len(grid)) or sample(x, grid, **kw),
    )
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    whole = extract_central_slices(reference, rotations, points)
    for threads in (2, 3):
        monkeypatch.setattr(torch, "get_num_threads", lambda t=threads: t)
        assert torch.equal(extract_central_slices(reference, rotations, points), whole)
    assert parts == [1, 2, 3]
