"""Device choice: ROCm and CUDA builds of PyTorch both expose the GPU as torch.cuda; else the CPU."""

from __future__ import annotations

from typing import Any

import torch

from training.errors import ConfigError


def select_device(preference: str = "auto") -> torch.device:
    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if preference == "cuda":
        raise ConfigError("train.device is 'cuda' but this PyTorch build sees no GPU (ROCm or CUDA)")
    return torch.device("cpu")


def describe_device(device: torch.device) -> dict[str, Any]:
    """What the model card records about where it was trained."""
    info: dict[str, Any] = {"type": device.type, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["backend"] = "rocm" if torch.version.hip else "cuda"
        info["runtime"] = torch.version.hip or torch.version.cuda
    else:
        import platform

        info["name"] = platform.processor() or platform.machine()
        info["backend"] = "cpu"
    return info
