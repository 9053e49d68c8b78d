from .viewer_classify2d import BlushClassify2DViewer
from .viewer_localres import BlushLocalResolutionViewer
from .viewer_postprocess import BlushPostprocessViewer
from .viewer_refine3d import BlushRefine3DViewer

__all__ = ["BlushClassify2DViewer", "BlushLocalResolutionViewer", "BlushPostprocessViewer",
           "BlushRefine3DViewer"]
