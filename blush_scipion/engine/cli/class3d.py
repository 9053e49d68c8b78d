"""3D classification (as relion_refine's Class3D: no half sets): EM over classes x HEALPix
orientations x translations with a Gaussian noise model per optics group, class priors and an
offset prior; K references from the one given, low-passed, made different in the first iteration
by random subsets of particles; tau2 regularisation from each class's power spectrum (T = 4).
Writes run_class001.mrc ... run_classKKK.mrc, run_data.star (rlnClassNumber, poses,
rlnMaxValueProbDistribution), run_model.star (class distribution, per-class resolution and
spectra), summary.json and RELION's run_itNNN_* files per iteration; --continue resumes.
With --blush each class's next reference is its regularised map denoised by the Blush U-Net
(RELION 5's classification: no spectral trailing); run_classKKK_blush.mrc holds them beside the
regularised maps. Runs under torchrun or srun as refine3d does.

    blush class3d --particles particles.star --ref start.mrc --k 4 --out Class3D/job001 --blush"""

from __future__ import annotations

from ..classify3d import Class3DSettings, classify3d
from .options import add_run_flags, add_settings
from .refine3d import run_on_reference


def add_args(p):
    p.add_argument("--particles", required=True, help="RELION STAR file of particles with CTF")
    p.add_argument("--ref", required=True, help="initial reference map (.mrc), same box and pixel size")
    p.add_argument("--out", required=True, help="output directory")
    add_run_flags(p)
    add_settings(p, Class3DSettings, group="classification")


def main(args):
    run_on_reference(classify3d, Class3DSettings, args)
