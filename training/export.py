"""Export: TorchScript (what serving loads, no training code needed) and the state dict."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from training.model import DigitsCNN


def export_model(model: DigitsCNN, out_dir: Path) -> dict[str, Path]:
    model = model.to("cpu").eval()
    with warnings.catch_warnings():
        # TorchScript is deprecated upstream, but it is the registry contract: serving loads model.ts
        # without any training code, and torch 2.13 still supports it fully.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    paths = {"model.ts": out_dir / "model.ts", "state_dict.pt": out_dir / "state_dict.pt"}
    scripted.save(str(paths["model.ts"]))
    torch.save(model.state_dict(), paths["state_dict.pt"])
    return paths


def load_torchscript(source: str | Path | bytes) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # see export_model
        if isinstance(source, bytes):
            return torch.jit.load(io.BytesIO(source), map_location="cpu").eval()
        return torch.jit.load(str(source), map_location="cpu").eval()


@torch.no_grad()
def predict_classes(module: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.asarray(images, dtype=np.float32)).reshape(-1, 1, 8, 8)
    return module(x).argmax(1).numpy()


def save_test_split(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """The contract's test_split.npz: images (N, 8, 8) float32 0..16, labels (N,) int64."""
    np.savez(path, images=np.asarray(images, dtype=np.float32), labels=np.asarray(labels, dtype=np.int64))
