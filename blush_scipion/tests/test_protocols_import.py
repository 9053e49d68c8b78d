"""The particle import keeps its stacks in the project (symbolic links by default, copies on request):
copies survive the source folder moving away, links survive the project moving."""

import os
import shutil
import tempfile

import numpy as np
import pytest

pytest.importorskip("pyworkflow")

from pyworkflow.project import Manager  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from blush_scipion.engine.mrc import StackReader, read_stack, write_stack  # noqa: E402
from blush_scipion.engine.particles import Particles  # noqa: E402
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model  # noqa: E402
from blush_scipion.protocols import ProtBlushClassify2D, ProtBlushImportParticles  # noqa: E402
from blush_scipion.protocols.protocol_import_particles import project_names  # noqa: E402

from .conftest import MODEL  # noqa: E402


def test_project_names_are_unique_in_one_folder():
    names = project_names(["/d/x/s.mrcs", "/d/y/s.mrcs", "/e/t.mrcs", "/e/t.mrcs"])
    assert names == {"/d/x/s.mrcs": "x_s.mrcs", "/d/y/s.mrcs": "y_s.mrcs", "/e/t.mrcs": "t.mrcs"}
    clash = project_names(["/d/x/s.mrcs", "/d/y/s.mrcs", "/f/x_s.mrcs"])
    assert len(set(clash.values())) == 3


class TestBlushImportInProject(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.scratch = tempfile.mkdtemp(prefix="blush_import_")
        sim = os.path.join(cls.scratch, "sim")
        settings = SimulationSettings(n_particles=50, box=32, pixel_size=3.0, snr=1.0, seed=5)
        simulate_from_model(MODEL, settings, sim)
        # two stacks of one name in two folders, and two optics groups, to keep apart on import
        p = Particles.read(f"{sim}/particles.star")
        images = read_stack(f"{sim}/particles.mrcs")
        cls.master = os.path.join(cls.scratch, "master")
        for folder, rows in (("a", slice(0, 30)), ("b", slice(30, 50))):
            os.makedirs(f"{cls.master}/{folder}")
            write_stack(f"{cls.master}/{folder}/particles.mrcs", images[rows], 3.0)
        table = p.table.assign(
            rlnImageName=[f"{i + 1:06d}@a/particles.mrcs" for i in range(30)]
            + [f"{i + 1:06d}@b/particles.mrcs" for i in range(20)],
            rlnOpticsGroup=[1] * 30 + [2] * 20,
        )
        optics = (
            p.optics.loc[[0, 0]]
            .reset_index(drop=True)
            .assign(rlnOpticsGroup=[1, 2], rlnOpticsGroupName=["g1", "g2"])
        )
        Particles(table, optics, cls.master).write(f"{cls.master}/particles.star")
        cls.table = table
        cls.images = images.numpy()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.scratch, ignore_errors=True)

    def _source(self, name):
        """A fresh copy of the master data set (the tests move theirs away)."""
        folder = os.path.join(self.scratch, name)
        shutil.copytree(self.master, folder)
        return folder

    def _check(self, parts, root):
        """The set holds the STAR's particles (optics groups, CTF, pixel size) and its images, read
        from files named relative to the project at `root`."""
        self.assertEqual(parts.getSize(), 50)
        self.assertAlmostEqual(parts.getSamplingRate(), 3.0)
        self.assertAlmostEqual(parts.getAcquisition().getVoltage(), 300.0)
        self.assertTrue(parts.hasCTF())
        reader = StackReader()
        for i, item in enumerate(parts.iterItems(orderBy="id")):
            row = self.table.iloc[i]
            self.assertEqual(item._rlnOpticsGroup.get(), row["rlnOpticsGroup"])
            self.assertAlmostEqual(item.getCTF().getDefocusU(), row["rlnDefocusU"], places=2)
            index, path = item.getLocation()
            self.assertFalse(os.path.isabs(path), path)
            np.testing.assert_array_equal(
                reader.read(os.path.join(root, path), np.array([index - 1]))[0], self.images[i]
            )
        reader.close()

    def _stacks(self, prot):
        paths = {item.getFileName() for item in prot.outputParticles}
        self.assertEqual(len(paths), 2)
        for path in paths:
            self.assertEqual(os.path.dirname(path), prot._getExtraPath())
        return sorted(paths)

    def _classify(self, project, parts):
        prot = project.newProtocol(
            ProtBlushClassify2D,
            inputParticles=parts,
            numberOfClasses=2,
            numberOfIterations=1,
            maskDiameterA=80,
        )
        project.launchProtocol(prot, wait=True)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertEqual(sum(c.getSize() for c in prot.outputClasses), 50)

    def test_copies_survive_the_source_moving_away(self):
        source = self._source("copied")
        imp = self.newProtocol(ProtBlushImportParticles, starFile=f"{source}/particles.star", copyFiles=True)
        self.launchProtocol(imp)
        for path in self._stacks(imp):
            self.assertTrue(os.path.isfile(path) and not os.path.islink(path), path)
        self.assertTrue(any("copied into" in line for line in imp.summary()))
        os.rename(source, source + "_moved")

        project = Manager().loadProject(self.projName)
        self.addCleanup(os.chdir, self.proj.path)
        parts = project.getProtocol(imp.getObjId()).outputParticles
        self._check(parts, project.path)
        self._classify(project, parts)

    def test_links_by_default_survive_the_project_moving(self):
        source = self._source("linked")
        imp = self.newProtocol(ProtBlushImportParticles, starFile=f"{source}/particles.star")
        self.launchProtocol(imp)
        stacks = self._stacks(imp)
        for path, folder in zip(stacks, "ab", strict=True):
            self.assertTrue(os.path.islink(path), path)
            self.assertEqual(os.path.realpath(path), os.path.realpath(f"{source}/{folder}/particles.mrcs"))

        moved = self.projName + "_moved"
        manager = Manager()
        manager.deleteProject(moved)
        shutil.copytree(self.proj.path, manager.getProjectPath(moved), symlinks=True)
        self.addCleanup(manager.deleteProject, moved)
        self.addCleanup(os.chdir, self.proj.path)
        project = manager.loadProject(moved)
        parts = project.getProtocol(imp.getObjId()).outputParticles
        self._check(parts, project.path)
        self._classify(project, parts)

    def test_validate_names_missing_stacks_in_one_line(self):
        lonely = os.path.join(self.scratch, "lonely")
        os.makedirs(lonely)
        shutil.copy(f"{self.master}/particles.star", lonely)
        errors = self.newProtocol(ProtBlushImportParticles, starFile=f"{lonely}/particles.star").validate()
        self.assertEqual(len(errors), 1, errors)
        self.assertNotIn("\n", errors[0])
        self.assertIn("not found (2 of 2 missing)", errors[0])
