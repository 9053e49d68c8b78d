"""Training the denoiser: after a short CPU run it beats the noisy half map on a held-out model,
and its saved weights reload into the same network; its validation loss, on a fixed set apart from
the training samples, is logged and falls as it learns."""

import json
import math
from dataclasses import replace

import torch
from safetensors import safe_open

from blush_scipion.engine.blush.model import BlushUNet
from blush_scipion.engine.blush.training import (
    VALIDATION_VIEWS_KEY,
    StepBatches,
    TrainSettings,
    batches,
    model_sampler,
    model_truth,
    train,
    training_sample,
    validation_set,
)
from blush_scipion.engine.blush.weights import load_state
from blush_scipion.engine.distributed import World

from .conftest import DATA


def small(**settings) -> TrainSettings:
    """A small network at 3 A: depth 2, width 4, 16^3 blocks, unless `settings` say otherwise."""
    return TrainSettings(
        **{"depth": 2, "width": 4, "block": 16, "voxel_min": 3.0, "voxel_max": 3.0, **settings}
    )


def test_short_training_beats_the_noisy_input_on_a_held_out_model(tmp_path):
    s = small(width=8, block=32, steps=150, batch_size=2, learning_rate=3e-3)
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

    s = small(width=8, block=32)
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
    s = small(steps=4, batch_size=2)
    sample = model_sampler([DATA / "4gcnA.pdb.gz"], s)
    records = [
        train(sample, s, tmp_path / f"w{n}.safetensors", ["4gcnA"], log=lambda *a: None, workers=n)
        for n in (1, 2)
    ]
    assert records[0]["losses"] == records[1]["losses"] and len(records[0]["losses"]) == 4
    first = next(iter(batches(sample, s, workers=2)))
    # step 0's batch, made here: the same up to rounding (workers run one thread, this process may run more)
    assert torch.allclose(first[0][0], StepBatches(sample, s)[0][0][0], atol=1e-5)


def quiet(*args):
    pass


def test_validation_loss_is_logged_at_its_steps_and_falls_as_the_network_learns(tmp_path):
    """Step 0 (before training), every --validate-every steps and the last; finite; and over a
    short run that learns, the loss on the fixed set falls (seen: to 0.35-0.67 of step 0's over
    seeds 0-5; a network that learnt nothing would stay near 1)."""
    s = small(steps=40, learning_rate=3e-3, validate_every=15)
    lines: list[str] = []
    record = train(
        model_sampler([DATA / "adk_closed.pdb.gz"], s),
        s,
        tmp_path / "w.safetensors",
        ["adk"],
        log=lines.append,
    )
    validation = record["validation"]
    assert [v["step"] for v in validation] == [0, 15, 30, 40]
    assert all(math.isfinite(v["loss"]) and v["loss"] > 0 for v in validation)
    assert validation[-1]["loss"] < 0.8 * validation[0]["loss"], validation
    # the log beside the weights holds them too; a line for each, with the progress line where they meet
    assert json.loads((tmp_path / "w.safetensors.json").read_text())["validation"] == validation
    assert lines[0].startswith("step      0/40: validation") and "(8 samples)" in lines[0]
    assert any(line == f"step     15/40: validation {validation[1]['loss']:.4f}" for line in lines)
    assert any(line.startswith("step     30/40: loss") and "validation" in line for line in lines)


def test_validation_set_is_fixed_and_apart_from_the_training_samples(tmp_path):
    """Drawn from keys no training step uses: the same set whatever the steps and however many
    ranks share it, none of its samples among the training's (either recipe: one stream, or a seed
    per sample), and drawing it leaves the training as it was."""
    s = small(steps=4, batch_size=2)
    sample = model_sampler([DATA / "4gcnA.pdb.gz"], s)
    held_out = validation_set(sample, s)
    assert len(held_out) == s.validation_samples == 8

    def same(a: list, b: list) -> bool:
        return len(a) == len(b) and all(torch.equal(x, y) for u, v in zip(a, b) for x, y in zip(u, v))

    assert same(validation_set(sample, replace(s, steps=4000)), held_out)
    shares = [validation_set(sample, s, World(rank, 2)) for rank in (0, 1)]
    assert same(shares[0], held_out[0::2]) and same(shares[1], held_out[1::2])
    trained = [x for step in batches(sample, s) for x in step] + [
        x for step in range(s.steps) for x in StepBatches(sample, s)[step]
    ]
    assert len(trained) == 16
    assert all((v[0] - x[0]).abs().max() > 0.1 for v in held_out for x in trained)

    runs = [
        train(sample, replace(s, validation_samples=n), tmp_path / f"w{n}.safetensors", ["4gcnA"], log=quiet)
        for n in (0, 8)
    ]
    assert runs[0]["losses"] == runs[1]["losses"] and runs[0]["validation"] == []
    assert [v["step"] for v in runs[1]["validation"]] == [0, 1, 2, 3, 4]  # 4 steps: a progress line each


def test_2d_validation_views_leave_the_training_views_as_they_were(tmp_path):
    """The 2D denoiser makes a view on first use, its direction from the drawing sample's stream
    (one process, no workers); the validation set takes views of its own (VALIDATION_VIEWS_KEY), so
    the training is the one without validation."""
    s = small(steps=3, batch_size=2, dim=2)
    models = [DATA / "4gcnA.pdb.gz"]
    runs = [
        train(
            model_sampler(models, s),
            replace(s, validation_samples=n),
            tmp_path / f"w{n}.safetensors",
            ["4gcnA"],
            log=quiet,
            validation_sample=model_sampler(models, s, views_seeded=True, views_key=VALIDATION_VIEWS_KEY),
        )
        for n in (0, 8)
    ]
    assert runs[0]["losses"] == runs[1]["losses"] and len(runs[1]["validation"]) == 4


def test_cli_validates_on_held_out_models_and_refuses_trained_ones(tmp_path):
    """--validation-models: the set from models never trained on, recorded as such; one that is
    also trained on, or with --pairs, is a one-line error."""
    from .test_cli import blush

    small = ["--depth", 2, "--width", 4, "--block", 16, "--voxel-min", 3, "--voxel-max", 3, "--steps", 3]
    adk, gcn = DATA / "adk_closed.pdb.gz", DATA / "4gcnA.pdb.gz"
    args = ["train", "--models", adk, "--out", tmp_path / "w.safetensors", *small]
    run = blush(*args, "--validation-models", gcn, "--validation-samples", 2, "--validate-every", 2)
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads((tmp_path / "w.safetensors.json").read_text())
    assert [v["step"] for v in record["validation"]] == [0, 2, 3]
    assert record["validation_sources"] == [str(gcn)] and record["settings"]["validation_samples"] == 2
    assert "step      0/3: validation" in run.stdout
    run = blush(*args, "--validation-models", DATA)  # a folder holding adk_closed
    assert (
        run.returncode != 0 and "adk_closed: also trained on" in run.stderr and "Traceback" not in run.stderr
    )
    run = blush("train", "--pairs", gcn, gcn, "--out", tmp_path / "p.safetensors", "--validation-models", gcn)
    assert run.returncode != 0 and "--validation-models goes with --models" in run.stderr
