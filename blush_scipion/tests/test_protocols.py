"""The plugin's protocols in a real Scipion project: import, 3D refine (with Blush), denoise, FSC
validation."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pyworkflow")

from pwem.protocols import ProtImportVolumes  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from blush_scipion.convert import matrix_from_pose, pose_from_matrix  # noqa: E402
from blush_scipion.engine.fourier import low_pass  # noqa: E402
from blush_scipion.engine.fsc import fourier_shell_correlation, resolution_at  # noqa: E402
from blush_scipion.engine.mrc import read_map, write_map  # noqa: E402
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model  # noqa: E402
from blush_scipion.protocols import (
    ProtBlushClassify2D,
    ProtBlushDenoise,
    ProtBlushImportParticles,  # noqa: E402
    ProtBlushRefine3D,
    ProtBlushTrain,
    ProtBlushValidateFsc,
)

from .conftest import DATA  # noqa: E402
from .pictures import assert_drawn, assert_view_drawn  # noqa: E402


def test_pose_matrix_round_trip():
    for pose in [(10.0, 50.0, -120.0, 1.5, -2.0), (-170.0, 120.0, 33.0, 0.0, 0.25)]:
        back = pose_from_matrix(matrix_from_pose(*pose))
        m1, m2 = matrix_from_pose(*pose), matrix_from_pose(*back)
        np.testing.assert_allclose(m1, m2, atol=1e-6)
        np.testing.assert_allclose(back[3:], pose[3:], atol=1e-6)


class TestBlushProtocols(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.sim = cls.proj.getTmpPath("sim")
        simulate_from_model(
            DATA / "adk_closed.pdb.gz",
            SimulationSettings(n_particles=400, box=40, pixel_size=3.0, snr=0.5, seed=4),
            cls.sim,
        )
        truth, _ = read_map(f"{cls.sim}/truth.mrc")
        write_map(f"{cls.sim}/start.mrc", low_pass(truth, 30.0, 3.0), 3.0)

    def _import_volume(self, path):
        prot = self.newProtocol(ProtImportVolumes, filesPath=path, samplingRate=3.0)
        self.launchProtocol(prot)
        return prot.outputVolume

    def _import_particles(self, star: str = "particles.star"):
        imp = self.newProtocol(ProtBlushImportParticles, starFile=f"{self.sim}/{star}")
        self.launchProtocol(imp)
        return imp.outputParticles

    def _refine(self, particles, start, iterations: int, blush: bool):
        prot = self.newProtocol(
            ProtBlushRefine3D,
            inputParticles=particles,
            referenceVolume=start,
            maxIterations=iterations,
            maskDiameterA=90,
            useBlush=blush,
        )
        self.launchProtocol(prot)
        return prot

    def _classify2d(self, particles, **form):
        """2D classification of `particles` into 3 classes in a 90 A mask, launched; `form`: the rest."""
        prot = self.newProtocol(
            ProtBlushClassify2D, inputParticles=particles, numberOfClasses=3, maskDiameterA=90, **form
        )
        self.launchProtocol(prot)
        return prot

    def test_import_refine_validate(self):
        parts = self._import_particles()
        self.assertEqual(parts.getSize(), 400)
        self.assertTrue(parts.hasCTF())
        self.assertAlmostEqual(parts.getSamplingRate(), 3.0)
        self.assertAlmostEqual(parts.getAcquisition().getVoltage(), 300.0)
        self.assertFalse(parts.hasAlignmentProj())

        self.assertTrue(self._import_particles("truth.star").hasAlignmentProj())

        start = self._import_volume(f"{self.sim}/start.mrc")
        refine = self._refine(parts, start, iterations=6, blush=True)
        volume = refine.outputVolume
        self.assertTrue(
            any("Blush regularisation from iteration" in line for line in refine.summary()), refine.summary()
        )
        self.assertIn("Kimanius2024", refine._citations())
        self.assertTrue(os.path.exists(refine.outputVolumeBlush.getFileName()))
        self.assertTrue(volume.hasHalfMaps())
        self.assertEqual(refine.outputParticles.getSize(), 400)
        self.assertTrue(refine.outputParticles.hasAlignmentProj())
        x, y = refine.outputFSC.getData()
        self.assertEqual(len(x), 21)
        truth, apix = read_map(f"{self.sim}/truth.mrc")
        refined, _ = read_map(volume.getFileName())
        self.assertLess(resolution_at(fourier_shell_correlation(refined, truth), 0.5, 40, apix), 15.0)
        # post-processed in the same run: a sharpened map, its mask, and a mask-corrected FSC finer than
        # the gold standard's unmasked one (the mask takes the solvent's noise out), both sane
        sharpened = refine.outputVolumePostprocessed
        self.assertTrue(
            sharpened.hasHalfMaps() and os.path.exists(refine.outputMaskPostprocess.getFileName())
        )
        gold = float(refine.outputFSC.calculateResolution())
        final = json.loads(Path(refine._getExtraPath("postprocess", "summary.json")).read_text())[
            "resolution_angstrom"
        ]
        self.assertLess(final, gold + 0.5)  # the mask-corrected FSC reaches at least as far
        self.assertGreaterEqual(final, 2 * apix - 0.01)  # and never past Nyquist
        self.assertEqual(len(refine.outputFSCPostprocess.getData()[0]), 21)
        self.assertTrue(any("Post-processed" in line for line in refine.summary()), refine.summary())
        self.assertTrue(os.path.exists(refine._getExtraPath("postprocess", "guinier.png")))
        self.assertTrue(any("Gold-standard resolution" in line for line in refine.summary()))
        # relations: the outputs derive from the inputs
        graph = self.proj.getSourceGraph(refresh=True)
        self.assertIsNotNone(graph.getNode(volume.strId()))

        # viewers: the protocol wrote its plots as PNGs, and the Tk viewer renders headless too
        from blush_scipion.viewers import BlushRefine3DViewer

        assert_drawn(
            *(refine._getExtraPath(name) for name in ("fsc.png", "progress.png", "slices.png", "angles.png")),
            min_width=300,
        )
        standard = self._refine(parts, start, iterations=3, blush=False)
        viewer = BlushRefine3DViewer(project=self.proj)
        self.assertEqual([r.getObjId() for r in viewer._companions(refine)], [standard.getObjId()])
        # Blush beside the standard prior
        assert_view_drawn(viewer._visualize(refine)[0], self.proj.getTmpPath("viewer.png"))

        denoise = self.newProtocol(ProtBlushDenoise, inputVolume=volume, maskDiameterA=90)
        self.launchProtocol(denoise)
        denoised, _ = read_map(denoise.outputVolume.getFileName())
        self.assertLess(resolution_at(fourier_shell_correlation(denoised, truth), 0.5, 40, apix), 15.0)
        self.assertTrue(any("denoised with" in line for line in denoise.summary()))

        train = self.newProtocol(ProtBlushTrain, maskDiameterA=90, steps=4)
        train.inputVolumes.append(volume)
        self.launchProtocol(train)
        self.assertTrue(os.path.exists(train.outputWeights.getFileName()))
        self.assertTrue(any("Fine-tuned on 1 half-map pair" in line for line in train.summary()))

        h1, h2 = (self._import_volume(p) for p in volume.getHalfMaps().split(","))
        val = self.newProtocol(ProtBlushValidateFsc, halfMap1=h1, halfMap2=h2)
        self.launchProtocol(val)
        res = float(val.outputFSC.calculateResolution(0.143))
        self.assertLess(res, 15.0)

    def test_classify2d_with_blush(self):
        particles = self._import_particles()
        prot = self._classify2d(particles, numberOfIterations=4, useBlush=True)
        classes = prot.outputClasses
        self.assertLessEqual(classes.getSize(), 3)
        self.assertEqual(sum(c.getSize() for c in classes), 400)
        for cls in classes:
            index, path = cls.getRepresentative().getLocation()
            self.assertTrue(os.path.exists(path) and 1 <= index <= 3)
            first = cls.getFirstItem()
            self.assertTrue(first.hasTransform())
        self.assertIn("Kimanius2024", prot._citations())
        self.assertTrue(any("Blush for 2D" in line for line in prot.summary()))
        self.assertTrue(prot.methods())
        graph = self.proj.getSourceGraph(refresh=True)
        self.assertIsNotNone(graph.getNode(classes.strId()))
        from blush_scipion.viewers import BlushClassify2DViewer

        assert_drawn(prot._getExtraPath("classes.png"), prot._getExtraPath("progress.png"))
        views = BlushClassify2DViewer(project=self.proj)._visualize(prot)
        assert_view_drawn(views[0], self.proj.getTmpPath("classes_viewer.png"))
        too_many = self.newProtocol(ProtBlushClassify2D, inputParticles=particles, numberOfClasses=401)
        self.assertTrue(any("401 classes" in e for e in too_many.validate()))

    def test_classify2d_on_two_processes(self):
        """The form's MPI count becomes torch.distributed ranks under torchrun (never mpirun)."""
        particles = self._import_particles()
        prot = self._classify2d(particles, numberOfIterations=3, numberOfMpi=2)
        self.assertEqual(sum(c.getSize() for c in prot.outputClasses), 400)
        log = Path(prot.getStdoutLog()).read_text()
        self.assertIn("--nproc-per-node=2", log)
        self.assertNotIn("mpirun", log)

    def test_classify2d_with_mini_batches(self):
        particles = self._import_particles()
        prot = self._classify2d(particles, useGradientAlg=True, numberOfVDAMBatches=6)
        self.assertEqual(sum(c.getSize() for c in prot.outputClasses), 400)
        summary = json.loads(Path(prot._getExtraPath("summary.json")).read_text())
        sizes = [h["particles"] for h in summary["history"]]
        self.assertEqual((sizes[0], sizes[-1], sorted(sizes)), (200, 400, sizes))  # growing, then all of them
        self.assertIn("Kimanius2021", prot._citations())
        self.assertTrue(any("mini-batches" in line for line in prot.methods()))

    def test_validate_refuses_mismatched_inputs(self):
        particles = self._import_particles()
        small = self.proj.getTmpPath("small.mrc")
        write_map(small, torch.zeros(32, 32, 32), 3.0)
        wrong = self._import_volume(small)
        refine = self.newProtocol(
            ProtBlushRefine3D,
            inputParticles=particles,
            referenceVolume=wrong,
            symmetryGroup="X7",
            blushFromResolution=-5,
        )
        errors = refine.validate()
        self.assertTrue(any("32 px" in e for e in errors), errors)
        self.assertTrue(any("X7" in e for e in errors), errors)
        self.assertTrue(any("Blush from resolution" in e for e in errors), errors)
        no_halves = self.newProtocol(ProtBlushDenoise, inputVolume=wrong)
        self.assertTrue(any("no half maps" in e for e in no_halves.validate()))
        bad = self.newProtocol(ProtBlushImportParticles, starFile=self.proj.getTmpPath("missing.star"))
        self.assertTrue(bad.validate())
