"""Deterministic stratified train/val/test split (same seed and data → same split on any machine)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split


@dataclass
class Part:
    images: np.ndarray  # float32 (N, 8, 8), raw 0..16
    labels: np.ndarray  # int64 (N,)
    indices: np.ndarray  # rows of the ingested data set

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Splits:
    train: Part
    val: Part
    test: Part
    feedback: dict | None = None  # provenance of a feedback snapshot joined to train (training/pipeline.py)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def stratified_split(images: np.ndarray, labels: np.ndarray, val: float, test: float, seed: int) -> Splits:
    labels = labels.astype(np.int64)
    rows = np.arange(len(labels))
    rest, test_rows = train_test_split(rows, test_size=test, stratify=labels, random_state=seed)
    train_rows, val_rows = train_test_split(
        rest, test_size=val / (1 - test), stratify=labels[rest], random_state=seed
    )

    def part(idx: np.ndarray) -> Part:
        idx = np.sort(idx)
        return Part(images[idx].astype(np.float32), labels[idx], idx)

    return Splits(part(train_rows), part(val_rows), part(test_rows))
