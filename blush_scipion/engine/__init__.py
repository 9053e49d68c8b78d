"""The Blush engine: cryo-EM reconstruction and refinement in PyTorch.

Nothing below this package imports Scipion; it runs from its own command line (`blush`).
Conventions throughout: volumes are indexed [z, y, x] and images [y, x]; the real-space centre is
at index n // 2 (RELION's); Fourier transforms are unnormalised forward (torch's "backward" norm);
half-transforms (rfft) keep kx >= 0 with ky centred at index n // 2.
"""
