"""The Blush denoiser: model (3D U-Net), block-wise inference, safe weight loading."""

# A: the coarsest half-map resolution the shipped weights were trained on (training.TrainSettings).
# refine3d starts Blush's references there (--blush-from-resolution): coarser maps are outside what
# the denoiser has seen, and there it let a pseudo-symmetric particle's mirror views mix
TRAINED_RESOLUTION_MAX = 15.0
