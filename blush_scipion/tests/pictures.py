"""The check the protocol and viewer tests make of what was drawn: a picture, not a blank one."""

from PIL import Image


def assert_drawn(*paths, min_width: int = 0) -> None:
    """Each PNG at least `min_width` px wide, with more than ten grey levels (not a blank image)."""
    for path in paths:
        with Image.open(path) as image:
            assert image.size[0] > min_width, f"{path}: {image.size[0]} px wide"
            assert len(set(image.convert("L").getdata())) > 10, f"{path} is blank"


def assert_view_drawn(view, path, min_width: int = 0) -> None:
    """A viewer's figure, saved to `path`, is drawn."""
    view.savefig(path)
    assert_drawn(path, min_width=min_width)
