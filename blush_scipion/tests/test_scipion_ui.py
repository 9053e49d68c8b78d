"""The plugin as Scipion's project window presents it: the protocol tree, citations, form help."""

import os

import pytest

pyworkflow = pytest.importorskip("pyworkflow")

from pyworkflow import Config  # noqa: E402

SPA_VIEW = "Protocols SPA"  # the view the project window opens on


def our_protocols() -> dict:
    """Every protocol class Scipion's domain finds in this plugin, by class name."""
    return {
        name: cls
        for name, cls in Config.getDomain().getProtocols().items()
        if cls.__module__.startswith("blush_scipion.")
    }


def protocol_paths(node, path=()) -> dict:
    """Class name -> the section texts above it, for every visible protocol below `node`."""
    found = {}
    for child in node:
        if not child.visible:
            continue
        if child.tag == "protocol":
            found[child.value] = path
        found.update(protocol_paths(child, path + (child.text,)))
    return found


def test_every_protocol_sits_in_the_spa_view_of_the_project_window():
    # as ProtocolsView._loadProtocols builds the tree the window shows
    from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig

    views = ProtocolTreeConfig.load(
        Config.getDomain(), os.path.join(Config.SCIPION_LOCAL_CONFIG, Config.SCIPION_PROTOCOLS)
    )
    placed = protocol_paths(views[SPA_VIEW])
    ours = our_protocols()
    assert len(ours) >= 6
    assert sorted(set(ours) - set(placed)) == []
    assert placed["ProtBlushRefine3D"] == ("3D", "Refine")
    assert placed["ProtBlushClassify2D"] == ("2D", "Classify")
    assert placed["ProtBlushImportParticles"] == ("Imports",)
    assert placed["ProtBlushPostprocess"] == ("3D", "Postprocess")
    assert placed["ProtBlushLocalResolution"] == ("3D", "Analysis", "Resolution")
    assert "ProtImportParticles" in placed  # pwem's own tree survives the merge


@pytest.mark.parametrize("name", sorted(our_protocols()))
def test_every_protocol_cites_references_found_in_the_plugin_bibtex(name):
    protocol = our_protocols()[name]()
    for citations in (protocol.getCitations(), protocol.getPackageCitations()):
        assert citations, name
        # pyworkflow shows a key it cannot resolve as the bare key instead of a link
        assert all(text.startswith("[[") for text in citations.values()), citations


@pytest.mark.parametrize("name", sorted(our_protocols()))
def test_every_form_parameter_has_help(name):
    # pyworkflow's own parameters (run name, host, threads...) come with help too, so none is skipped
    params = list(our_protocols()[name]()._definition.iterAllParams())
    assert len(params) > 2
    assert [key for key, param in params if not (param.help.get() or "").strip()] == []


@pytest.mark.parametrize("name", sorted(our_protocols()))
def test_the_methods_tab_shows_a_new_runs_name_whole(name):
    from pyworkflow.utils import HYPER_ITALIC, parseHyperText

    run_name = our_protocols()[name].getClassLabel()  # a new run's name (Project.newProtocol)
    header = f"> _{run_name}_"  # as the Methods tab heads each run (ProtocolsView._fillMethod)
    tags = []  # what the tab's TaggedText marks up
    parseHyperText(header, lambda match, tag: tags.append((tag, match.group(tag))))
    assert tags == [(HYPER_ITALIC, run_name)]
    assert run_name.startswith("Blush for Scipion - ")
