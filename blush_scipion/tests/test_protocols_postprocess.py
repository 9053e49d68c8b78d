"""Post-processing and local resolution in a real Scipion project: half maps with a known FSC,
imported as a map with half maps, through post-process and then local resolution inside its mask."""

import pytest
import torch

pytest.importorskip("pyworkflow")

from pwem.objects import FSC, SetOfFSCs, Volume, VolumeMask  # noqa: E402
from pwem.protocols import ProtImportVolumes  # noqa: E402
from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from blush_scipion.engine.blush.halfmaps import simulate_half_maps  # noqa: E402
from blush_scipion.engine.density import density_from_model  # noqa: E402
from blush_scipion.engine.mrc import write_map  # noqa: E402
from blush_scipion.protocols import ProtBlushLocalResolution, ProtBlushPostprocess  # noqa: E402

from .conftest import MODEL  # noqa: E402
from .pictures import assert_drawn, assert_view_drawn  # noqa: E402

N, APIX, RESOLUTION = 64, 1.5, 6.0  # the halves' FSC over the whole box falls to 0.143 at 6 A


class TestBlushPostprocessProtocols(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        truth = density_from_model(MODEL, N, APIX, bfactor=40)
        halves = simulate_half_maps(truth, APIX, RESOLUTION, torch.Generator().manual_seed(0))
        cls.paths = [cls.proj.getTmpPath(name) for name in ("half1.mrc", "half2.mrc", "average.mrc")]
        for path, volume in zip(cls.paths, (*halves, (halves[0] + halves[1]) / 2)):
            write_map(path, volume, APIX)

    def _import(self, half_maps: bool):
        prot = self.newProtocol(
            ProtImportVolumes,
            filesPath=self.paths[2],
            samplingRate=APIX,
            setHalfMaps=half_maps,
            half1map=self.paths[0],
            half2map=self.paths[1],
        )
        self.launchProtocol(prot)
        return prot.outputVolume

    def test_postprocess_then_local_resolution(self):
        volume = self._import(half_maps=True)
        post = self.newProtocol(ProtBlushPostprocess, inputVolume=volume)
        self.launchProtocol(post)
        self.assertIsInstance(post.outputVolume, Volume)
        self.assertAlmostEqual(post.outputVolume.getSamplingRate(), APIX)
        self.assertTrue(post.outputVolume.hasHalfMaps())
        self.assertIsInstance(post.outputMask, VolumeMask)
        self.assertIsInstance(post.outputFSC, FSC)
        self.assertIsInstance(post.outputFSCs, SetOfFSCs)
        self.assertEqual(post.outputFSCs.getSize(), 4)
        # the mask lifts the resolution above the whole box's 6 A; Nyquist is 3 A
        summary = post.summary()
        resolution = float(summary[0].split("Final resolution ")[1].split(" Å")[0])
        self.assertTrue(3.0 < resolution < RESOLUTION, summary)
        self.assertAlmostEqual(float(post.outputFSC.calculateResolution(0.143)), resolution, delta=0.5)
        self.assertIn("fitted to the Guinier plot", summary[0])
        self.assertTrue(post.methods())
        graph = self.proj.getSourceGraph(refresh=True)
        self.assertIsNotNone(graph.getNode(post.outputVolume.strId()))
        assert_drawn(post._getExtraPath("fsc.png"), post._getExtraPath("guinier.png"), min_width=300)

        # the mask and a B-factor given: the engine takes both as they are
        given = self.newProtocol(
            ProtBlushPostprocess,
            inputVolume=volume,
            solventMask=post.outputMask,
            doAutoBfactor=False,
            bfactor=-50,
            lowPassA=5,
        )
        self.launchProtocol(given)
        self.assertIn("B-factor -50.0 Å² as given; low-passed at 5.00 Å", given.summary()[0])
        self.assertEqual(given.summary()[1], "Mask: the one given.")
        assert_drawn(given._getExtraPath("guinier.png"), min_width=300)

        local = self.newProtocol(
            ProtBlushLocalResolution, inputVolume=post.outputVolume, solventMask=post.outputMask
        )
        self.launchProtocol(local)
        self.assertIsInstance(local.outputLocalResolution, Volume)
        self.assertAlmostEqual(local.outputLocalResolution.getSamplingRate(), APIX)
        self.assertIsInstance(local.outputVolume, Volume)
        median = float(local.summary()[0].split("median ")[1].split(" Å")[0])
        self.assertTrue(3.0 < median < RESOLUTION + 2, local.summary())
        assert_drawn(local._getExtraPath("slices.png"), min_width=300)

        # the Tk viewers draw the same plots headless
        from blush_scipion.viewers import BlushLocalResolutionViewer, BlushPostprocessViewer

        for viewer, prot in ((BlushPostprocessViewer, post), (BlushLocalResolutionViewer, local)):
            assert_view_drawn(
                viewer(project=self.proj)._visualize(prot)[0],
                self.proj.getTmpPath(f"viewer_{prot.getObjId()}.png"),
                min_width=300,
            )

    def test_validate_refuses_a_map_without_half_maps(self):
        plain = self._import(half_maps=False)
        for protocol in (ProtBlushPostprocess, ProtBlushLocalResolution):
            errors = self.newProtocol(protocol, inputVolume=plain).validate()
            self.assertTrue(any("no half maps" in e for e in errors), errors)
        given = self.newProtocol(
            ProtBlushPostprocess,
            inputVolume=self._import(half_maps=True),
            doAutoBfactor=True,
            autobLowresA=5,
            autobHighresA=8,
            lowPassA=-5,
        )
        errors = given.validate()
        self.assertTrue(any("finer" in e for e in errors), errors)
        self.assertTrue(any("Low-pass" in e for e in errors), errors)
