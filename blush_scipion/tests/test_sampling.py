"""sampling.py against HEALPix's closed forms (Gorski et al. 2005, ApJ 622:759) and RELION's conventions.

HEALPix of order k has Nside = 2^k and 12 Nside^2 equal-area pixels on 4 Nside - 1 rings of constant
latitude; RING ordering numbers them north to south, eastwards within a ring. RELION's angular step
at order k is 360 / (6 * 2^k) = 60 / 2^k degrees, and it samples psi at that same step.
"""

import math

import pytest
import torch

from blush_scipion.engine.rotation import angular_distance
from blush_scipion.engine.sampling import (
    angular_step,
    grid_rotations,
    healpix_directions,
    local_rotations,
    orientation_grid,
    translation_grid,
)

ORDERS = range(5)  # up to 3072 directions: the pairwise distances below stay well under a second


def ring_centres(nside: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HEALPix pixel centres built ring by ring from the ring formulas: (z = cos colatitude, phi)."""
    z, phi = [], []
    for i in range(1, 4 * nside):  # ring i counted from the north pole
        if i < nside:  # north polar cap: 4 i pixels
            zi, count, first = 1 - i**2 / (3 * nside**2), 4 * i, math.pi / (4 * i)
        elif i <= 3 * nside:  # equatorial belt: 4 Nside pixels, every other ring shifted half a pixel
            count = 4 * nside
            zi, first = 4 / 3 - 2 * i / (3 * nside), (math.pi / (4 * nside) if (i - nside) % 2 == 0 else 0.0)
        else:  # south polar cap, mirror of the north one
            k = 4 * nside - i
            zi, count, first = -(1 - k**2 / (3 * nside**2)), 4 * k, math.pi / (4 * k)
        z += [zi] * count
        phi += [first + j * 2 * math.pi / count for j in range(count)]
    return torch.tensor(z, dtype=torch.float64), torch.tensor(phi, dtype=torch.float64)


def unit_vectors(rot: torch.Tensor, tilt: torch.Tensor) -> torch.Tensor:
    r, t = torch.deg2rad(rot.double()), torch.deg2rad(tilt.double())
    return torch.stack([t.sin() * r.cos(), t.sin() * r.sin(), t.cos()], dim=1)


def nearest_neighbour_degrees(v: torch.Tensor) -> torch.Tensor:
    d = torch.rad2deg((v @ v.T).clamp(-1, 1).acos())
    d.fill_diagonal_(math.inf)
    return d.min(dim=1).values


@pytest.mark.parametrize("order", ORDERS)
def test_pixel_count_and_step_are_healpix_and_relion_numbers(order):
    nside = 2**order
    rot, tilt = healpix_directions(order)
    assert len(rot) == len(tilt) == 12 * nside**2 == 12 * 4**order
    assert angular_step(order) == pytest.approx(60.0 / 2**order)
    # the step is the side of an equal-area pixel, give or take the pixels' shapes
    assert angular_step(order) == pytest.approx(math.degrees(math.sqrt(4 * math.pi / len(rot))), rel=0.03)


def test_relion_sampling_ladder():
    # relion_refine's --healpix_order 0..5 and the angular steps its GUI lists for them
    assert [angular_step(k) for k in range(6)] == [60.0, 30.0, 15.0, 7.5, 3.75, 1.875]
    assert [len(healpix_directions(k)[0]) for k in range(4)] == [12, 48, 192, 768]


def test_order_zero_base_pixels():
    # the 12 base pixels: 4 centred on z = 2/3 at phi = 45 + 90 j, 4 on the equator at phi = 90 j,
    # 4 on z = -2/3 at phi = 45 + 90 j
    rot, tilt = healpix_directions(0)
    polar = math.degrees(math.acos(2 / 3))
    expected_tilt = [polar] * 4 + [90.0] * 4 + [180 - polar] * 4
    expected_rot = [45, 135, 225, 315, 0, 90, 180, 270, 45, 135, 225, 315]
    torch.testing.assert_close(tilt.double(), torch.tensor(expected_tilt).double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(rot.double(), torch.tensor(expected_rot).double(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("order", ORDERS)
def test_centres_follow_the_ring_formulas_in_ring_order(order):
    z, phi = ring_centres(2**order)
    rot, tilt = healpix_directions(order)
    torch.testing.assert_close(torch.cos(torch.deg2rad(tilt.double())), z, atol=1e-6, rtol=0)
    torch.testing.assert_close(rot.double(), torch.rad2deg(phi), atol=1e-4, rtol=0)
    assert (rot >= 0).all() and (rot < 360).all() and (tilt >= 0).all() and (tilt <= 180).all()
    assert (tilt[1:] >= tilt[:-1] - 1e-4).all(), "RING order runs north to south"


@pytest.mark.parametrize("order", ORDERS)
def test_directions_are_unique_unit_vectors_spread_evenly(order):
    rot, tilt = healpix_directions(order)
    v = unit_vectors(rot, tilt)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(len(v), dtype=torch.float64))
    nn = nearest_neighbour_degrees(v)
    step = angular_step(order)
    assert nn.min() > 0.5 * step, "two directions (nearly) coincide"
    assert nn.min() > 0.8 * nn.mean() and nn.max() < 1.1 * nn.mean(), (nn.min(), nn.mean(), nn.max())
    assert nn.mean() == pytest.approx(step, rel=0.1)
    # equal areas: the centres' mean is the sphere's centre, and they are mirror-symmetric about the equator
    assert v.mean(dim=0).abs().max() < 1e-6
    torch.testing.assert_close(v[:, 2].sort().values, (-v[:, 2]).sort().values, atol=1e-6, rtol=0)


@pytest.mark.parametrize("order", [1, 3])
def test_every_direction_lies_within_a_step_of_a_centre(order):
    g = torch.Generator().manual_seed(order)
    u = torch.randn(5000, 3, generator=g, dtype=torch.float64)
    u /= u.norm(dim=1, keepdim=True)
    v = unit_vectors(*healpix_directions(order))
    farthest = torch.rad2deg((u @ v.T).max(dim=1).values.clamp(-1, 1).acos()).max()
    assert farthest < angular_step(order)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_orientation_grid_is_directions_times_psi_steps(order):
    rot, tilt = healpix_directions(order)
    step = angular_step(order)
    n_psi = round(360 / step)
    assert n_psi == 6 * 2**order
    eulers = orientation_grid(order)
    assert eulers.shape == (12 * 4**order * n_psi, 3)
    assert len(torch.unique(eulers, dim=0)) == len(eulers)
    grid = eulers.reshape(len(rot), n_psi, 3)
    torch.testing.assert_close(grid[:, :, 0], rot[:, None].expand(-1, n_psi))
    torch.testing.assert_close(grid[:, :, 1], tilt[:, None].expand(-1, n_psi))
    psi = torch.arange(n_psi, dtype=torch.float32) * step
    torch.testing.assert_close(grid[:, :, 2], psi.expand(len(rot), -1))
    assert (psi < 360).all()


def test_grid_rotations_view_along_the_healpix_directions():
    order = 1
    eulers = orientation_grid(order)
    mats = grid_rotations(eulers)
    eye = torch.eye(3).expand(len(mats), 3, 3)
    torch.testing.assert_close(mats @ mats.transpose(1, 2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(mats), torch.ones(len(mats)), atol=1e-5, rtol=0)
    # RELION: the third row of A is the projection direction (rot, tilt); psi spins about it
    directions = unit_vectors(eulers[:, 0], eulers[:, 1])
    torch.testing.assert_close(mats[:, 2].double(), directions, atol=1e-6, rtol=0)
    # distinct grid points are distinct rotations, at least about a step apart
    d = angular_distance(mats.double()[:, None], mats.double()[None])
    d.fill_diagonal_(math.inf)
    assert d.min() > 0.5 * angular_step(order)


@pytest.mark.parametrize(
    ("offset_range", "step", "count"),
    [
        (0.0, 1.0, 1),
        (1.0, 1.0, 5),
        (math.sqrt(2), 1.0, 9),
        (3.0, 1.0, 29),
        (5.0, 1.0, 81),
        (6.0, 2.0, 29),
        (2.0, 0.5, 49),  # Gauss's circle problem: lattice points in a disc of radius 0, 1, sqrt 2, 3, 5, 3, 4
    ],
)
def test_translation_grid(offset_range, step, count):
    xy = translation_grid(offset_range, step)
    assert xy.shape == (count, 2)
    assert (xy[0] == 0).all(), "no shift first"
    r = xy.norm(dim=1)
    assert (r <= offset_range + 1e-5).all()
    assert (r[1:] >= r[:-1] - 1e-6).all(), "ordered by distance"
    units = xy / step
    torch.testing.assert_close(units, units.round(), atol=1e-5, rtol=0)
    assert len(torch.unique(xy, dim=0)) == count
    # symmetric under x -> -x and x <-> y, as the disc is
    as_set = {tuple(p) for p in units.round().int().tolist()}
    assert as_set == {(-x, y) for x, y in as_set} == {(y, x) for x, y in as_set}


@pytest.mark.parametrize(("half_width", "count"), [(0, 1), (1, 7), (2, 33)])
def test_local_rotations(half_width, count):
    step = 2.0
    mats = local_rotations(step, half_width)
    assert mats.shape == (count, 3, 3)  # lattice points in a ball of radius half_width
    torch.testing.assert_close(mats[0], torch.eye(3))
    angles = angular_distance(mats.double(), torch.eye(3, dtype=torch.float64).expand(count, 3, 3))
    assert (angles <= half_width * step + 1e-3).all()
    assert (angles[1:] >= angles[:-1] - 1e-3).all(), "ordered by angle"
    if half_width:
        assert angles[1:].min() == pytest.approx(step, abs=1e-3)
