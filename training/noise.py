"""Label noise for building honestly worse candidates: it corrupts the labels a model learns from
(train and val, i.e. the team's own labelling), never the test split the card is measured on."""

from __future__ import annotations

from typing import Any

import numpy as np

NUM_CLASSES = 10


def apply_label_noise(labels: np.ndarray, noise: dict[str, Any], seed: int) -> tuple[np.ndarray, int]:
    """Return (noisy labels, number flipped). 'uniform': each label flips with probability `rate` to another
    digit; 'pairs': each label of a listed digit flips with probability `rate` to its partner (confusions a
    tired keyer makes, e.g. 7→1)."""
    kind, rate = noise["kind"], float(noise["rate"])
    if kind == "none" or rate == 0:
        return labels.copy(), 0
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    flip = rng.random(len(labels)) < rate
    if kind == "uniform":
        shift = rng.integers(1, NUM_CLASSES, size=len(labels))
        noisy[flip] = (labels[flip] + shift[flip]) % NUM_CLASSES
    else:
        pairs = {int(k): int(v) for k, v in noise["pairs"].items()}
        for i in np.flatnonzero(flip):
            noisy[i] = pairs.get(int(labels[i]), labels[i])
    return noisy, int((noisy != labels).sum())
