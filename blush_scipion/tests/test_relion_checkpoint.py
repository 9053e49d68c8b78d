"""RELION's blush_v1.0.ckpt read as plain tensors into our BlushUNet(layout="relion")."""

import gzip
import os
from collections import OrderedDict

import pytest
import torch
from torch import nn

from blush_scipion.engine.blush.denoiser import load_denoiser
from blush_scipion.engine.blush.model import BlushUNet
from blush_scipion.engine.blush.relion_checkpoint import (
    RELION_BLUSH_V1_SHA256,
    is_relion_checkpoint,
    relion_metadata,
    relion_state_dict,
)
from blush_scipion.engine.blush.weights import WeightsError, sha256_of


# A reference of RELION's BlushModel written from its documented layout, with its parameter names:
# inc, down[0..depth-1] (max-pool then double conv), up[0..depth-1] (x2 trilinear up-sampling,
# align_corners=True, concatenation [skip, up], double conv in -> in/2 -> out), outc (1x1x1).
class _DoubleConv(nn.Module):
    def __init__(self, c_in, c_out, c_mid=None):
        super().__init__()
        c_mid = c_mid or c_out
        self.double_conv = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv3d(c_in, c_mid, 3, padding=1),
                norm1=nn.InstanceNorm3d(c_mid, affine=True),
                act1=nn.SiLU(),
                conv2=nn.Conv3d(c_mid, c_out, 3, padding=1),
                norm2=nn.InstanceNorm3d(c_out, affine=True),
                act2=nn.SiLU(),
            )
        )

    def forward(self, x):
        return self.double_conv(x)


class _Up(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=True)
        self.conv = _DoubleConv(c_in, c_out, c_in // 2)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], 1))


class RelionReference(nn.Module):
    def __init__(self, depth=5, width=16):
        super().__init__()
        self.depth = depth
        self.inc = _DoubleConv(2, width)
        self.down_pool = nn.MaxPool3d(2)
        self.down = nn.ModuleList(
            [_DoubleConv(width * 2**i, width * 2 ** (i + 1)) for i in range(depth - 1)]
            + [_DoubleConv(width * 2 ** (depth - 1), width * 2**depth // 2)]
        )
        self.up = nn.ModuleList(
            [_Up(width * 2 ** (depth - i), width * 2 ** (depth - 1 - i) // 2) for i in range(depth - 1)]
            + [_Up(width * 2, width)]
        )
        self.outc = nn.Conv3d(width, 2, 1)

    def forward(self, grid, local_std):
        std = grid.std((-1, -2, -3), keepdim=True)
        mean = grid.mean((-1, -2, -3), keepdim=True)
        standard = (grid - mean) / (std + 1e-12)
        h = self.inc(torch.stack([standard, local_std], 1))
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(self.down_pool(h))
        for up, skip in zip(self.up, reversed(skips)):
            h = up(h, skip)
        h = self.outc(h)
        return (standard - h[:, 0]) * (std + 1e-12) + mean, h[:, 1]


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _reference(depth=2, width=4, seed=0):
    torch.manual_seed(seed)
    ref = RelionReference(depth, width).eval()
    with torch.no_grad():
        for p in ref.parameters():  # norms too, so a misplaced tensor shows
            p.copy_(torch.randn_like(p) * 0.3)
    return ref


def _checkpoint(ref, source="raise SystemExit('never executed')"):
    # as RELION's compose_model.py writes it (block_size parsed as a float there)
    return {
        "model_state_dict": ref.state_dict(),
        "model_definition": source,
        "block_size": 64.0,
        "voxel_size": 1.5,
        "no_mask": False,
    }


def _save(state, path, gz=False):
    torch.save(state, path)
    if gz:
        gz_path = path.with_name(path.name + ".gz")
        gz_path.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
        path.unlink()
        return gz_path
    return path


def test_full_v1_shapes_fit_our_relion_layout():
    ref = RelionReference(5, 16)
    sd = ref.state_dict()
    assert is_relion_checkpoint({"model_state_dict": sd})
    assert relion_metadata(sd) == {"depth": 5, "width": 16, "layout": "relion"}
    net = BlushUNet(5, 16, layout="relion")
    net.load_state_dict(relion_state_dict({"model_state_dict": sd}))  # strict: same set, same shapes
    assert [e[0].out_channels for e in net.encoders] == [16, 32, 64, 128, 256]
    assert [d[3].out_channels for d in net.decoders] == [128, 64, 32, 16, 16]
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in ref.parameters())


def test_tensors_land_in_their_places():
    ref = _reference()
    sd = ref.state_dict()
    ours = relion_state_dict(sd)
    assert torch.equal(ours["encoders.0.0.weight"], sd["inc.double_conv.conv1.weight"])
    assert torch.equal(ours["encoders.1.4.bias"], sd["down.0.double_conv.norm2.bias"])
    assert torch.equal(ours["bottleneck.1.weight"], sd["down.1.double_conv.norm1.weight"])
    assert torch.equal(ours["decoders.1.3.weight"], sd["up.1.conv.double_conv.conv2.weight"])
    assert torch.equal(ours["head.bias"], sd["outc.bias"])
    w, skip = sd["up.0.conv.double_conv.conv1.weight"], 8  # [skip, up] -> [up, skip]
    assert torch.equal(ours["decoders.0.0.weight"], torch.cat([w[:, skip:], w[:, :skip]], 1))
    with pytest.raises(ValueError, match="unexpected up.0.up.weight"):
        relion_state_dict({**sd, "up.0.up.weight": torch.zeros(1)})  # the ConvTranspose variant


@pytest.mark.parametrize("gz", [False, True])
def test_relion_checkpoint_loads_and_matches_relion_forward(tmp_path, gz):
    ref = _reference()
    marker = tmp_path / "executed"
    path = _save(_checkpoint(ref, f"open({str(marker)!r}, 'w').write('x')"), tmp_path / "blush_v1.0.ckpt", gz)
    d = load_denoiser(path, sha256=sha256_of(path))
    assert not marker.exists()  # the stored model source is never run
    assert d.net.layout == "relion" and d.net.depth == 2
    assert (d.voxel_min, d.voxel_max, d.block) == (1.5, 1.5, 64)
    g = torch.Generator().manual_seed(1)
    grid = torch.randn(2, 16, 16, 16, generator=g) * 3 + 1
    local_std = torch.rand(2, 16, 16, 16, generator=g) * 2
    with torch.no_grad():
        want_map, want_logit = ref(grid, local_std)
        got_map, got_logit = d.net(torch.stack([grid, local_std], 1))
    assert torch.allclose(got_map, want_map, atol=1e-4, rtol=1e-4)
    assert torch.allclose(got_logit, want_logit, atol=1e-4, rtol=1e-4)


def test_relion_checkpoint_needs_a_sha256(tmp_path):
    plain = _save(_checkpoint(_reference()), tmp_path / "v1.0.ckpt")
    with pytest.raises(WeightsError, match=r"v1.0.ckpt: a RELION Blush checkpoint with no sha256"):
        load_denoiser(plain)
    gz = _save(_checkpoint(_reference()), tmp_path / "blush_v1.0.ckpt", gz=True)
    with pytest.raises(
        WeightsError, match=f"blush_v1.0.ckpt.gz: sha256 .* not that of RELION's.*{RELION_BLUSH_V1_SHA256}"
    ):
        load_denoiser(gz)
    with pytest.raises(WeightsError, match="does not match"):
        load_denoiser(gz, sha256="0" * 64)


@pytest.mark.parametrize("extra", [Payload(), os.system])
def test_relion_checkpoint_with_pickled_callables_is_refused(tmp_path, extra):
    state = _checkpoint(_reference())
    state["model_class"] = extra
    path = _save(state, tmp_path / "blush_v1.0.ckpt", gz=True)
    with pytest.raises(WeightsError, match="blush_v1.0.ckpt.gz: refused"):
        load_denoiser(path, sha256=sha256_of(path))


def test_our_checkpoints_keep_their_names_and_layout(tmp_path):
    net = BlushUNet(depth=2, width=4)
    assert net.layout == "symmetric" and "decoders.0.0.weight" in net.state_dict()
    assert [d[3].out_channels for d in net.decoders] == [8, 4]
    path = tmp_path / "ours.ckpt"
    torch.save({"model_state_dict": net.state_dict(), "depth": 2, "width": 4, "voxel_size": 2.0}, path)
    d = load_denoiser(path)
    assert d.net.layout == "symmetric"
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(d.net(x)[0], net.eval()(x)[0])
