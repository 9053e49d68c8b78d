"""Screenshots of Scipion's project window with this plugin's protocols in the "Protocols SPA" tree, taken
from the real GUI (pyworkflow's ProjectWindow) under a virtual display:

    .venv/bin/python docs/screenshots.py [--out docs]

writes docs/scipion_spa_tree.png (the tree opened at our sections, our protocols highlighted, a saved
chain of our runs in the graph) and docs/scipion_form_classify3d.png (the 3D classification form over
the project window). Needs Xvfb
(`apt-get install xvfb`) and ImageMagick's `import`; it re-runs itself under `xvfb-run`, in a throwaway
Scipion set-up (a temporary folder: nothing of the user's or the repository's .scipion is touched).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

SCREEN = (1400, 900)
WINDOW = f"{SCREEN[0]}x{SCREEN[1]}+0+0"  # the project window fills the screen
UNDER_XVFB = "BLUSH_SCREENSHOTS_XVFB"
SPA_VIEW = "Protocols SPA"
# the tree's sections on the way to our protocols, opened for the picture (the others stay closed)
OPEN = {
    ("Imports",),
    ("2D",),
    ("2D", "Classify"),
    ("3D",),
    ("3D", "Classify"),
    ("3D", "Refine"),
    ("3D", "Postprocess"),
    ("3D", "Analysis"),
    ("3D", "Analysis", "Resolution"),
    ("Tools",),
}
MAX_BYTES = 300_000


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="folder for the PNGs")
    args = p.parse_args()
    out = os.path.abspath(args.out)
    if os.environ.get(UNDER_XVFB) != "1":  # a virtual display of known size, never the user's desktop
        for tool in ("xvfb-run", "import"):
            if shutil.which(tool) is None:
                sys.exit(f"{tool} not found: apt-get install xvfb imagemagick")
        screen = f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24"
        env = dict(os.environ, **{UNDER_XVFB: "1"})
        sys.exit(
            subprocess.call(
                ["xvfb-run", "-a", "-s", screen, sys.executable, os.path.abspath(__file__), "--out", out],
                env=env,
            )
        )
    take(tempfile.mkdtemp(prefix="blush_screenshots_"), out)


def take(root: str, out: str) -> None:
    # a private Scipion set-up, read once when pyworkflow is first imported: the user's variables set aside
    for key in [k for k in os.environ if k.startswith("SCIPION_")]:
        del os.environ[key]
    os.environ["HOME"] = root  # pyworkflow's GUI settings and matplotlib's cache stay in the throwaway folder
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from blush_scipion.headless import configure_scipion

    configure_scipion(root)

    import tkinter as tk

    from pyworkflow.gui.project import ProjectWindow
    from pyworkflow.project import Manager

    from blush_scipion.protocols import ProtBlushClassify3D

    project = Manager().createProject("blush_screenshots")
    save_workflow(project)
    project.settings.setProtocolView(SPA_VIEW)
    project.saveSettings()
    window = ProjectWindow(project.getPath())

    def view():
        return window.getViewWidget()

    def open_our_sections():
        protocols = view()
        tree = protocols.protTree
        known = protocols.domain.getProtocols()
        ours = []
        for item, node in protocols.protTreeItems.items():
            # the path below the view's own root item ("Protocols SPA")
            above = _ancestors(tree, item)
            path = tuple(tree.item(parent, "text") for parent in above[1:]) + (node.text,)
            if node.tag != "protocol":
                tree.item(item, open=not above or path in OPEN)
            elif getattr(known.get(node.value.split(".")[-1]), "__module__", "").startswith("blush_scipion."):
                ours.append(item)
                tree.item(item, tags=(*tree.item(item, "tags"), "ours"))
        tree.tag_configure("ours", background="#ffe7a0")  # our protocols highlighted
        tree.selection_set(())
        # the protocols pane wide enough for our labels ("Blush for Scipion - ...")
        paned = next(w for w in protocols.winfo_children() if isinstance(w, tk.PanedWindow))
        paned.sash_place(0, 450, 0)
        tree.column("#0", width=440)

    def shoot_tree():
        window.root.geometry(WINDOW)  # show() centred it
        open_our_sections()
        window.root.update()
        capture(os.path.join(out, "scipion_spa_tree.png"))
        # the form opens in a nested main loop: its picture is taken from a timer set before
        window.root.after(2500, guarded(shoot_form))
        prot = project.newProtocol(ProtBlushClassify3D)
        view()._openProtocolForm(prot)

    def shoot_form():
        form = next(w for w in window.root.winfo_children() if isinstance(w, tk.Toplevel))
        form.geometry("+470+140")  # beside the tree, not over it
        window.root.update()
        capture(os.path.join(out, "scipion_form_classify3d.png"))
        shutil.rmtree(root, ignore_errors=True)
        os._exit(0)  # the project window's timers and threads need no orderly end here

    def guarded(step):
        """A failing step ends the run (Tk would print it and wait on forever)."""

        def run():
            try:
                step()
            except Exception:
                import traceback

                traceback.print_exc()
                shutil.rmtree(root, ignore_errors=True)
                os._exit(1)

        return run

    window.root.after(3000, guarded(shoot_tree))
    window.show()


def save_workflow(project) -> None:
    """A facility's chain of our protocols, saved (not run) so that the runs graph shows it."""
    from blush_scipion import protocols as p

    def step(cls, **inputs):
        prot = project.newProtocol(cls)
        for name, (source, output) in inputs.items():
            getattr(prot, name).set(source)
            getattr(prot, name).setExtended(output)
        project.saveProtocol(prot)
        return prot

    imported = step(p.ProtBlushImportParticles)
    step(p.ProtBlushClassify2D, inputParticles=(imported, "outputParticles"))
    refine = step(p.ProtBlushRefine3D, inputParticles=(imported, "outputParticles"))
    step(p.ProtBlushPostprocess, inputVolume=(refine, "outputVolume"))
    step(p.ProtBlushLocalResolution, inputVolume=(refine, "outputVolume"))


def _ancestors(tree, item) -> list:
    """The tree items above `item`, outermost first."""
    chain = []
    while item := tree.parent(item):
        chain.insert(0, item)
    return chain


def capture(path: str) -> None:
    """The virtual screen (the project window and what is open over it) as a PNG, made smaller if over
    MAX_BYTES."""
    subprocess.run(["import", "-window", "root", path], check=True)
    if os.path.getsize(path) > MAX_BYTES:
        from PIL import Image

        with Image.open(path) as image:
            image.convert("RGB").quantize(colors=128).save(path, optimize=True)
    print(f"{path}: {os.path.getsize(path) // 1000} KB")


if __name__ == "__main__":
    main()
