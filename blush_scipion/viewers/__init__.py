from .viewer_classify2d import BlushClassify2DViewer
from .viewer_refine3d import BlushRefine3DViewer

__all__ = ["BlushClassify2DViewer", "BlushRefine3DViewer"]
