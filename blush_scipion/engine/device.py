"""The one type the engine's public functions take for a device: a torch.device or its name."""

from __future__ import annotations

from typing import Union

import torch

# "cpu", "cuda", "cuda:1" or a torch.device; the functions pass it to torch.device() or tensor.to()
Device = Union[str, torch.device]
