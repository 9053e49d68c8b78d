"""3D classification in a real Scipion project: particles of two different proteins, imported, classified
into two classes against the known truth; the classes' maps, poses, plots and viewer, and pwem's subset
tools on the SetOfClasses3D."""

import itertools
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("pyworkflow")

from pwem.objects import SetOfClasses3D, SetOfVolumes, Volume  # noqa: E402
from pwem.protocols import ProtImportVolumes, ProtUserSubSet  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from blush_scipion.convert import pose_from_matrix  # noqa: E402
from blush_scipion.engine.fourier import low_pass  # noqa: E402
from blush_scipion.engine.mrc import read_map, write_map  # noqa: E402
from blush_scipion.engine.particles import Particles, concatenate  # noqa: E402
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model  # noqa: E402
from blush_scipion.protocols import ProtBlushClassify3D, ProtBlushImportParticles  # noqa: E402

from .conftest import DATA  # noqa: E402
from .pictures import assert_drawn, assert_view_drawn  # noqa: E402

N, BOX, APIX = 150, 40, 3.0  # particles per structure; box 120 Å
STRUCTURES = ("adk_closed", "4gcnA")  # 23.5 and 14 kDa


class TestBlushClassify3D(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        sim = cls.proj.getTmpPath("sim")
        sets, truths = [], []
        for i, name in enumerate(STRUCTURES):
            settings = SimulationSettings(n_particles=N, box=BOX, pixel_size=APIX, snr=0.3, seed=10 + i)
            simulate_from_model(DATA / f"{name}.pdb.gz", settings, f"{sim}/{name}")
            sets.append(Particles.read(f"{sim}/{name}/particles.star"))
            truths.append(read_map(f"{sim}/{name}/truth.mrc")[0])
        cls.mixed = f"{sim}/mixed.star"  # the first N particles are adk_closed, the rest 4gcnA
        concatenate(sets).write(cls.mixed)
        # a consensus-like start that favours neither class: the two truths averaged and blurred
        cls.start = f"{sim}/start.mrc"
        write_map(cls.start, low_pass((truths[0] + truths[1]) / 2, 30.0, APIX), APIX)

    def _inputs(self):
        imp = self.newProtocol(ProtBlushImportParticles, starFile=self.mixed)
        self.launchProtocol(imp)
        vol = self.newProtocol(ProtImportVolumes, filesPath=self.start, samplingRate=APIX)
        self.launchProtocol(vol)
        return imp.outputParticles, vol.outputVolume

    def _classify(self, **values):
        """Two classes from the mixed particles and the blurred start."""
        particles, start = self._inputs()
        prot = self.newProtocol(
            ProtBlushClassify3D,
            inputParticles=particles,
            referenceVolume=start,
            numberOfClasses=2,
            initialLowPassFilterA=30,
            maskDiameterA=100,
            **values,
        )
        self.launchProtocol(prot)
        return prot

    def test_two_structures_separate_and_subsets_work(self):
        prot = self._classify(numberOfIterations=8)
        classes = prot.outputClasses
        self.assertIsInstance(classes, SetOfClasses3D)
        self.assertEqual(classes.getSize(), 2)
        sizes = {cls.getObjId(): cls.getSize() for cls in classes}
        self.assertEqual(sum(sizes.values()), 2 * N)
        self.assertGreater(min(sizes.values()), 0.25 * 2 * N)  # both classes populated

        # science: the classes are the two structures (best of the two label permutations)
        assigned = {}
        for cls in classes:
            self.assertTrue(cls.hasAlignmentProj())
            volume = cls.getRepresentative()
            self.assertTrue(os.path.exists(volume.getFileName()))
            self.assertAlmostEqual(volume.getSamplingRate(), APIX)
            self.assertEqual(read_map(volume.getFileName())[0].shape, (BOX,) * 3)
            for particle in cls:
                self.assertTrue(particle.hasTransform())
                assigned[particle.getObjId()] = cls.getObjId()
        ids = np.array(sorted(assigned))
        found = np.array([assigned[i] for i in ids])
        truth = np.where(ids <= N, 1, 2)  # import keeps the STAR's order: ids 1..N are adk_closed
        accuracy = max(
            float(np.mean(found == np.array(perm)[truth - 1])) for perm in itertools.permutations([1, 2])
        )
        self.assertGreaterEqual(accuracy, 0.85, f"classification accuracy {accuracy:.2f}")
        # the poses are the engine's: one particle's Scipion matrix gives back its run_data.star angles
        first = classes.getFirstItem().getFirstItem()
        row = Particles.read(prot._getExtraPath("run_data.star")).table.iloc[first.getObjId() - 1]
        np.testing.assert_allclose(
            pose_from_matrix(first.getTransform().getMatrix())[3:],
            (row["rlnOriginXAngst"] / APIX, row["rlnOriginYAngst"] / APIX),
            atol=1e-4,
        )

        volumes = prot.outputVolumes
        self.assertIsInstance(volumes, SetOfVolumes)
        self.assertEqual(volumes.getSize(), 2)
        summary = prot.summary()
        self.assertTrue(
            any(line.startswith("class 1:") and "%" in line and "Å" in line for line in summary), summary
        )
        self.assertTrue(any("standard prior" in line for line in summary), summary)
        self.assertTrue(prot.methods() and "[Scheres2012]" in prot.methods()[0])
        self.assertEqual(prot._citations(), ["Scheres2012"])
        graph = self.proj.getSourceGraph(refresh=True)
        self.assertIsNotNone(graph.getNode(classes.strId()))

        # plots as PNGs in extra/, and the Tk viewer's figures rendered headless
        from blush_scipion.viewers import BlushClassify3DViewer

        assert_drawn(
            *(prot._getExtraPath(name) for name in ("classes.png", "progress.png", "angles.png")),
            min_width=300,
        )
        views = BlushClassify3DViewer(project=self.proj)._visualize(prot)
        self.assertEqual(len(views), 3)
        assert_view_drawn(views[0], self.proj.getTmpPath("classes3d_viewer.png"))

        # pwem's subset tools, as its metadata viewer calls them: a text file of the chosen class ids
        chosen = max(sizes, key=sizes.get)
        selection = self.proj.getTmpPath("selection.txt")
        with open(selection, "w") as f:
            f.write(f"{chosen}\n")
        subset = self.newProtocol(
            ProtUserSubSet, inputObject=classes, sqliteFile=f"{selection},", outputClassName="SetOfParticles"
        )
        self.launchProtocol(subset)
        self.assertEqual(subset.outputParticles.getSize(), sizes[chosen])
        self.assertTrue(subset.outputParticles.hasAlignmentProj())
        self.assertTrue(subset.outputParticles.hasCTF())
        one_class = self.newProtocol(
            ProtUserSubSet, inputObject=classes, sqliteFile=f"{selection},", outputClassName="SetOfClasses3D"
        )
        self.launchProtocol(one_class)
        self.assertEqual([c.getSize() for c in one_class.outputClasses3D], [sizes[chosen]])
        maps = self.newProtocol(
            ProtUserSubSet, inputObject=classes, sqliteFile=f"{selection},", outputClassName="SetOfVolumes"
        )
        self.launchProtocol(maps)
        (volume,) = list(maps.outputRepresentatives)
        self.assertIsInstance(volume, Volume)
        self.assertEqual(volume.getFileName(), classes[chosen].getRepresentative().getFileName())

    def test_blush_on_two_processes(self):
        """Blush regularisation, and the form's MPI count as torch.distributed ranks (never mpirun)."""
        prot = self._classify(numberOfIterations=2, angularSamplingDeg=0, useBlush=True, numberOfMpi=2)
        self.assertEqual(sum(c.getSize() for c in prot.outputClasses), 2 * N)
        for k in (1, 2):
            self.assertTrue(os.path.exists(prot._getExtraPath(f"run_class{k:03d}_blush.mrc")))
        with open(prot._getExtraPath("summary.json")) as f:
            summary = json.load(f)
        self.assertEqual((summary["blush"], summary["ranks"], summary["iterations"]), (True, 2, 2))
        self.assertEqual(summary["settings"]["healpix_order"], 1)  # the form's first choice, 30 deg
        with open(prot.getStdoutLog()) as f:
            log = f.read()
        self.assertIn("--nproc-per-node=2", log)
        self.assertNotIn("mpirun", log)
        self.assertIn("Kimanius2024", prot._citations())
        self.assertTrue(any("Blush regularisation" in line for line in prot.summary()))
        self.assertIn("[Kimanius2024]", prot.methods()[0])

    def test_validate_refuses_mismatched_inputs(self):
        particles, _ = self._inputs()
        small = self.proj.getTmpPath("small.mrc")
        write_map(small, torch.zeros(32, 32, 32), APIX)
        vol = self.newProtocol(ProtImportVolumes, filesPath=small, samplingRate=APIX)
        self.launchProtocol(vol)
        prot = self.newProtocol(
            ProtBlushClassify3D,
            inputParticles=particles,
            referenceVolume=vol.outputVolume,
            numberOfClasses=2 * N + 1,
            symmetryGroup="X7",
        )
        errors = prot.validate()
        self.assertTrue(any("32 px" in e for e in errors), errors)
        self.assertTrue(any(f"{2 * N + 1} classes" in e for e in errors), errors)
        self.assertTrue(any("X7" in e for e in errors), errors)
        waiting = self.newProtocol(ProtBlushClassify3D)
        # pyworkflow adds its own "cannot be EMPTY" lines; ours says the run waits for its input
        self.assertIn("Input not ready: particles and a reference map are needed.", waiting.validate())


def test_placed_under_3d_classify_in_the_project_window():
    from pyworkflow import Config
    from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig

    from .test_scipion_ui import SPA_VIEW, protocol_paths

    views = ProtocolTreeConfig.load(
        Config.getDomain(), os.path.join(Config.SCIPION_LOCAL_CONFIG, Config.SCIPION_PROTOCOLS)
    )
    placed = protocol_paths(views[SPA_VIEW])
    assert placed["ProtBlushClassify3D"] == ("3D", "Classify")
    assert placed["ProtBlushRefine3D"] == ("3D", "Refine")
