"""The denoiser's model, block-wise inference without seams, and safe loading of weights."""

import gzip
import os

import pytest
import torch

from blush_scipion.engine.blush.inference import block_starts, infer_blocks
from blush_scipion.engine.blush.model import BlushUNet
from blush_scipion.engine.blush.weights import WeightsError, load_state, model_state_dict, sha256_of


def test_unet_shapes_and_the_v1_layout():
    net = BlushUNet(depth=5, width=16)
    widths = [enc[0].out_channels for enc in net.encoders]
    assert widths == [16, 32, 64, 128, 256] and net.bottleneck[0].out_channels == 256
    denoised, logit = BlushUNet(depth=2, width=4)(torch.randn(2, 2, 16, 16, 16))
    assert denoised.shape == logit.shape == (2, 16, 16, 16)


def test_zero_head_returns_its_input():
    net = BlushUNet(depth=2, width=4)
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)
    x = torch.randn(1, 2, 16, 16, 16)
    assert torch.allclose(net(x)[0], x[:, 0], atol=1e-5)


class LocalSmoothing(torch.nn.Module):
    """A network with a 3^3 receptive field: its block-wise result must equal the whole map's."""

    def forward(self, x):
        kernel = torch.ones(1, 1, 3, 3, 3) / 27
        return torch.nn.functional.conv3d(x[:, :1], kernel, padding=1)[:, 0]


def test_blockwise_inference_has_no_seams():
    g = torch.Generator().manual_seed(0)
    vol = torch.randn(2, 96, 96, 96, generator=g)  # larger than one 64^3 block
    whole = LocalSmoothing()(vol[None])[0]
    blocks = infer_blocks(LocalSmoothing(), vol, block=64, stride=20)
    inner = (slice(2, -2),) * 3  # away from the map's own zero-padded border
    assert torch.allclose(blocks[inner], whole[inner], atol=1e-5)


def test_masked_out_blocks_are_skipped():
    calls = []

    class Counting(LocalSmoothing):
        def forward(self, x):
            calls.append(len(x))
            return super().forward(x)

    vol = torch.randn(2, 96, 96, 96)
    mask = torch.zeros(96, 96, 96)
    mask[28:68, 28:68, 28:68] = 1
    infer_blocks(Counting(), vol, mask=mask, block=64, stride=20)
    total_blocks = len(block_starts(96, 64, 20)) ** 3
    assert 0 < sum(calls) < total_blocks


class Payload:
    """Anything a checkpoint could carry that is not a tensor: unpickling it would run code."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    state = {
        "model_state_dict": BlushUNet(depth=2, width=4).state_dict(),
        "voxel_size": 1.5,
        "hook": Payload(),
    }
    path = tmp_path / "blush_v1.0.ckpt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="blush_v1.0.ckpt.*refused"):
        load_state(path)
    with gzip.open(tmp_path / "blush_v1.0.ckpt.gz", "wb") as f:
        f.write(path.read_bytes())
    with pytest.raises(WeightsError, match="refused"):
        load_state(tmp_path / "blush_v1.0.ckpt.gz")


def test_plain_checkpoint_loads_into_our_model_with_a_sha256_check(tmp_path):
    net = BlushUNet(depth=2, width=4)
    path = tmp_path / "plain.ckpt"
    torch.save(
        {
            "model_state_dict": net.state_dict(),
            "voxel_size": 1.5,
            "block_size": 64,
            "model_source": "import os; os.system('never run')",
        },
        path,
    )
    state = load_state(path, sha256=sha256_of(path))
    assert state["model_source"].startswith("import os")  # read as text, never executed
    other = BlushUNet(depth=2, width=4)
    other.load_state_dict(model_state_dict(state))
    x = torch.randn(1, 2, 16, 16, 16)
    assert torch.allclose(other(x)[0], net(x)[0])
    with pytest.raises(WeightsError, match="sha256"):
        load_state(path, sha256="0" * 64)
