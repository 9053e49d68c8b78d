from .protocol_classify2d import ProtBlushClassify2D
from .protocol_classify3d import ProtBlushClassify3D
from .protocol_denoise import ProtBlushDenoise
from .protocol_import_particles import ProtBlushImportParticles
from .protocol_localres import ProtBlushLocalResolution
from .protocol_postprocess import ProtBlushPostprocess
from .protocol_refine3d import ProtBlushRefine3D
from .protocol_train import ProtBlushTrain
from .protocol_validate_fsc import ProtBlushValidateFsc

__all__ = [
    "ProtBlushClassify2D",
    "ProtBlushClassify3D",
    "ProtBlushDenoise",
    "ProtBlushImportParticles",
    "ProtBlushLocalResolution",
    "ProtBlushPostprocess",
    "ProtBlushRefine3D",
    "ProtBlushTrain",
    "ProtBlushValidateFsc",
]
