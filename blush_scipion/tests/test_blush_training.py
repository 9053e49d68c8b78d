"""Training the denoiser: after a short CPU run it beats the noisy half map on a held-out model,
and its saved weights reload into the same network."""
import torch
from safetensors import safe_open

from blush_scipion.engine.blush.model import BlushUNet
from blush_scipion.engine.blush.training import TrainSettings, model_truth, train, training_sample
from blush_scipion.engine.blush.weights import load_state

from .conftest import DATA


def test_short_training_beats_the_noisy_input_on_a_held_out_model(tmp_path):
    s = TrainSettings(depth=2, width=8, block=32, voxel_min=3.0, voxel_max=3.0, steps=150, batch_size=2, learning_rate=3e-3)
    train([DATA / "adk_closed.pdb.gz"], s, tmp_path / "w.safetensors", log=lambda *a: None)
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        assert f.metadata()["voxel_size"] == "3.0"
    net = BlushUNet(2, 8)
    net.load_state_dict(load_state(tmp_path / "w.safetensors"))
    held_out = model_truth(DATA / "4gcnA.pdb.gz", 3.0, 32)  # validate split: never trained on
    g = torch.Generator().manual_seed(123)
    err_net, err_input = 0.0, 0.0
    with torch.no_grad():
        for _ in range(8):
            inputs, target, mask, _ = training_sample(*held_out, s, g)
            denoised = net(inputs[None])[0][0]
            err_net += float(((denoised - target) ** 2 * mask).sum())
            err_input += float(((inputs[0] - target) ** 2 * mask).sum())
    assert err_net < 0.8 * err_input, (err_net, err_input)
