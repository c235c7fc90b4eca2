"""The training loop: fixed seeds, deterministic kernels, early stopping on validation loss."""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from training.split import Part


def set_determinism(seed: int, threads: int, strict: bool = True) -> None:
    """Same seed, same device, same thread count → the same weights. The thread count is fixed because CPU
    reductions split work per thread, and a different split rounds differently. On GPUs `strict=False` only
    warns where an op lacks a deterministic kernel (ROCm's coverage differs from CUDA's) instead of
    failing."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS/hipBLAS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=not strict)
    torch.backends.cudnn.benchmark = False


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Move each image by up to max_shift pixels (zero fill): writers do not centre digits exactly."""
    if max_shift == 0:
        return x
    n, size = x.shape[0], x.shape[-1]
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)).to(x.device)
    rows = (dy[:, None] + torch.arange(size, device=x.device)[None, :])[:, None, :, None].expand(
        n, 1, size, size + 2 * max_shift
    )
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(size, device=x.device)[None, :])[:, None, None, :].expand(
        n, 1, size, size
    )
    return out.gather(3, cols)


def to_tensor(part: Part, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(part.images).unsqueeze(1).to(device)
    y = torch.from_numpy(part.labels).to(device)
    return x, y


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    seconds: float
    samples_seen: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.seconds if self.seconds else 0.0


def fit(
    model: nn.Module,
    train: Part,
    val: Part,
    train_config: dict[str, Any],
    device: torch.device,
    seed: int,
    progress: Callable[[str], None] = lambda _msg: None,
) -> TrainResult:
    """Adam on cross-entropy; stops after `patience` epochs without a better val loss and keeps the best
    weights."""
    model.to(device)
    x_train, y_train = to_tensor(train, device)
    x_val, y_val = to_tensor(val, device)
    optimiser = torch.optim.Adam(
        model.parameters(), lr=train_config["lr"], weight_decay=train_config["weight_decay"]
    )
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(seed)
    batch = train_config["batch_size"]
    shift = train_config["augment_shift"]
    best_loss, best_epoch, best_state, history = float("inf"), 0, None, []
    seen = 0
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, train_config["epochs"] + 1):
        model.train()
        perm = torch.randperm(len(train), generator=order).to(device)
        total = 0.0
        for i in range(0, len(train), batch):
            idx = perm[i : i + batch]
            optimiser.zero_grad()
            loss = loss_fn(model(random_shift(x_train[idx], shift, order)), y_train[idx])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = float(loss_fn(logits, y_val))
            val_acc = float((logits.argmax(1) == y_val).float().mean())
        history.append(
            {"epoch": epoch, "train_loss": total / len(train), "val_loss": val_loss, "val_accuracy": val_acc}
        )
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        if epoch % 5 == 0 or epoch == 1:
            progress(
                f"epoch {epoch}: train loss {total / len(train):.4f}, "
                f"val loss {val_loss:.4f}, val acc {val_acc:.4f}"
            )
        if epoch - best_epoch >= train_config["patience"]:
            progress(f"early stop at epoch {epoch}: no better val loss since epoch {best_epoch}")
            break
    seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(epoch, best_epoch, best_loss, seconds, seen, history)
