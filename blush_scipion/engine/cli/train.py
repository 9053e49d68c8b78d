"""Train (or re-train) the Blush denoiser on half-map pairs simulated from atomic models: random
resolution (FSC 0.143 between --res-min and --res-max), misalignment blur, random blocks and
rotations. Writes the weights (safetensors, with voxel size and shape as metadata) and a JSON
log of the settings and the loss per step beside them."""
from __future__ import annotations

from pathlib import Path

from ..blush.training import TrainSettings, train

MODEL_SUFFIXES = (".pdb", ".pdb.gz", ".cif", ".cif.gz", ".ent", ".ent.gz")


def add_args(p):
    d = TrainSettings()
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--models", nargs="+", required=True, help="atomic models, or folders of them")
    p.add_argument("--exclude", nargs="*", default=[],
                   help="model names to leave out (file names without extension), e.g. a validation split")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (%(default)s)")
    p.add_argument("--batch", type=int, default=d.batch_size, help="blocks per step (%(default)s)")
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate, cosine decay (%(default)s)")
    p.add_argument("--depth", type=int, default=d.depth, help="U-Net pooling steps (%(default)s)")
    p.add_argument("--width", type=int, default=d.width, help="channels of the first level (%(default)s)")
    p.add_argument("--block", type=int, default=d.block, help="block size in voxels (%(default)s)")
    p.add_argument("--voxel-min", type=float, default=d.voxel_min,
                   help="finest voxel size the denoiser works at, A (%(default)s)")
    p.add_argument("--voxel-max", type=float, default=d.voxel_max,
                   help="coarsest voxel size, A; samples are drawn in between (%(default)s)")
    p.add_argument("--res-min", type=float, default=d.resolution_min, help="best half-map resolution, A (%(default)s)")
    p.add_argument("--res-max", type=float, default=d.resolution_max, help="worst half-map resolution, A (%(default)s)")
    p.add_argument("--device", default=d.device, help="cpu or cuda:N (%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (%(default)s)")


def main(args):
    models = []
    for path in map(Path, args.models):
        models += sorted(p for p in path.iterdir() if p.name.endswith(MODEL_SUFFIXES)) if path.is_dir() else [path]
    models = [m for m in models if m.name.split(".")[0] not in set(args.exclude)]
    if not models:
        raise ValueError(f"no atomic models in {' '.join(args.models)}")
    if args.block % 2 ** args.depth:
        raise ValueError(f"--block {args.block} must be divisible by 2^depth = {2 ** args.depth}")
    s = TrainSettings(depth=args.depth, width=args.width, block=args.block, voxel_min=args.voxel_min, voxel_max=args.voxel_max,
                      steps=args.steps, batch_size=args.batch, learning_rate=args.lr, resolution_min=args.res_min,
                      resolution_max=args.res_max, seed=args.seed, device=args.device)
    if args.voxel_max < args.voxel_min:
        raise ValueError(f"--voxel-max {args.voxel_max} is below --voxel-min {args.voxel_min}")
    record = train(models, s, args.out)
    print(f"trained on {len(models)} models in {record['seconds']:.0f} s -> {args.out}")
