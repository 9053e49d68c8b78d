from .viewer_refine3d import BlushRefine3DViewer

__all__ = ["BlushRefine3DViewer"]
