"""Training the denoiser: after a short CPU run it beats the noisy half map on a held-out model,
and its saved weights reload into the same network."""

import torch
from safetensors import safe_open

from blush_scipion.engine.blush.model import BlushUNet
from blush_scipion.engine.blush.training import (
    StepBatches,
    TrainSettings,
    batches,
    model_sampler,
    model_truth,
    train,
    training_sample,
)
from blush_scipion.engine.blush.weights import load_state

from .conftest import DATA


def test_short_training_beats_the_noisy_input_on_a_held_out_model(tmp_path):
    s = TrainSettings(
        depth=2, width=8, block=32, voxel_min=3.0, voxel_max=3.0, steps=150, batch_size=2, learning_rate=3e-3
    )
    train(
        model_sampler([DATA / "adk_closed.pdb.gz"], s),
        s,
        tmp_path / "w.safetensors",
        ["adk_closed"],
        log=lambda *a: None,
    )
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


def test_fine_tuning_on_half_map_pairs_learns_their_shared_signal(tmp_path):
    """Noise2noise from an untrained network: one half in, the other as target. After a short
    CPU run it denoises the half map better than the raw half does (against the truth)."""
    from blush_scipion.engine.blush.denoiser import load_denoiser
    from blush_scipion.engine.blush.features import denoiser_inputs, standardise
    from blush_scipion.engine.blush.halfmaps import simulate_half_maps
    from blush_scipion.engine.blush.inference import particle_mask
    from blush_scipion.engine.blush.training import save_weights
    from blush_scipion.engine.density import density_from_model
    from blush_scipion.engine.mrc import write_map

    from .test_cli import blush

    s = TrainSettings(depth=2, width=8, block=32, voxel_min=3.0, voxel_max=3.0)
    save_weights(BlushUNet(2, 8), s, tmp_path / "init.safetensors")
    truth = density_from_model(DATA / "4gcnA.pdb.gz", 40, 3.0)
    half1, half2 = simulate_half_maps(truth, 3.0, 9.0, torch.Generator().manual_seed(0))
    write_map(tmp_path / "h1.mrc", half1, 3.0)
    write_map(tmp_path / "h2.mrc", half2, 3.0)
    run = blush(
        "train",
        "--pairs",
        tmp_path / "h1.mrc",
        tmp_path / "h2.mrc",
        "--init",
        tmp_path / "init.safetensors",
        "--out",
        tmp_path / "tuned.safetensors",
        "--steps",
        120,
        "--lr",
        3e-3,
        "--diameter",
        80,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    tuned = load_denoiser(tmp_path / "tuned.safetensors")
    assert (tuned.voxel_min, tuned.block) == (3.0, 32)
    mask = particle_mask(40, 80 / 3.0)[4:36, 4:36, 4:36]
    _, mean, std = standardise(half1)
    inputs = denoiser_inputs(half1, particle_mask(40, 80 / 3.0))[:, 4:36, 4:36, 4:36]
    target = ((truth - mean) / std)[4:36, 4:36, 4:36]
    with torch.no_grad():
        denoised = tuned.net(inputs[None])[0][0]
    err_net = float(((denoised - target) ** 2 * mask).sum())
    err_input = float(((inputs[0] - target) ** 2 * mask).sum())
    assert err_net < 0.8 * err_input, (err_net, err_input)


def test_batches_made_by_worker_processes_do_not_depend_on_their_number(tmp_path):
    """`blush train --workers N`: each step's batch comes from its own seed, so one worker and
    two give the same training, step for step."""
    s = TrainSettings(depth=2, width=4, block=16, voxel_min=3.0, voxel_max=3.0, steps=4, batch_size=2)
    sample = model_sampler([DATA / "4gcnA.pdb.gz"], s)
    records = [
        train(sample, s, tmp_path / f"w{n}.safetensors", ["4gcnA"], log=lambda *a: None, workers=n)
        for n in (1, 2)
    ]
    assert records[0]["losses"] == records[1]["losses"] and len(records[0]["losses"]) == 4
    first = next(iter(batches(sample, s, workers=2)))
    # step 0's batch, made here: the same up to rounding (workers run one thread, this process may run more)
    assert torch.allclose(first[0][0], StepBatches(sample, s)[0][0][0], atol=1e-5)
