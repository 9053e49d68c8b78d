"""The Scipion plugin: discovered through its entry point, and usable in a real Scipion project."""

import pytest

pyworkflow = pytest.importorskip("pyworkflow")

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from .conftest import MODEL  # noqa: E402


def test_scipion_discovers_the_plugin_and_its_references():
    import pwem

    plugins = pwem.Domain.getPlugins()
    assert "blush_scipion" in plugins
    plugin = pwem.Domain.getPlugin("blush_scipion")
    assert plugin.Plugin.getProgram().endswith("blush")
    from pyworkflow.utils import parseBibTex

    from blush_scipion import bibtex

    refs = parseBibTex(bibtex.__doc__)
    assert {"Kimanius2024", "Scheres2012"} <= set(refs)
    assert refs["Kimanius2024"]["doi"] == "10.1038/s41592-024-02304-8"


class TestHeadlessProject(BaseTest):
    """A project on disk (SQLite) runs a protocol in a subprocess on our simulated map."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_import_simulated_map(self):
        from pwem.protocols import ProtImportVolumes

        from blush_scipion.engine.density import density_from_model
        from blush_scipion.engine.mrc import write_map

        path = self.proj.getTmpPath("truth.mrc")
        write_map(path, density_from_model(MODEL, 48, 2.5), 2.5)
        prot = self.newProtocol(ProtImportVolumes, filesPath=path, samplingRate=2.5)
        self.launchProtocol(prot)
        volume = prot.outputVolume
        self.assertEqual(volume.getDim(), (48, 48, 48))
        self.assertAlmostEqual(volume.getSamplingRate(), 2.5)
