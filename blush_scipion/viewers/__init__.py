from .viewer_classify2d import BlushClassify2DViewer
from .viewer_classify3d import BlushClassify3DViewer
from .viewer_denoise import BlushDenoiseViewer
from .viewer_localres import BlushLocalResolutionViewer
from .viewer_postprocess import BlushPostprocessViewer
from .viewer_refine3d import BlushRefine3DViewer
from .viewer_train import BlushTrainViewer

__all__ = [
    "BlushClassify2DViewer",
    "BlushClassify3DViewer",
    "BlushDenoiseViewer",
    "BlushLocalResolutionViewer",
    "BlushPostprocessViewer",
    "BlushRefine3DViewer",
    "BlushTrainViewer",
]
