"""The Blush denoiser: model (3D U-Net), block-wise inference, safe weight loading."""
