"""Input drift: how far the live images have moved from the data a model was trained on (torch-free).

The feature is an image's ink, its mean pixel value over the 0..16 range. A model's reference is its
registered test split (held out from its training data by the deterministic split, so drawn from the same
distribution), cut into tenths by ink. The replica that serves the model counts each live image into those
bins and exports the reference's share of each bin; Prometheus computes the total variation distance between
the two (monitoring/generate.py, chiops:input_drift:tvd_30m), which the alert and `chiops pipeline` read.

Ink moves with stroke width, scanning contrast and inverted or clipped images; a digit merely moved on its
canvas keeps its ink, so this statistic does not see that kind of shift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

BINS = 10
PIXEL_MAX = 16.0


def ink(images: np.ndarray) -> np.ndarray:
    """Each image's mean pixel value as a fraction of the 0..16 range; (N, 8, 8) or (N, 64) in, (N,) out."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    return np.clip(flat.mean(axis=1) / PIXEL_MAX, 0.0, 1.0)


@dataclass(frozen=True)
class InkProfile:
    """The reference's bin edges (ink deciles) and its share of images in each of the BINS bins."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    @classmethod
    def of(cls, images: np.ndarray) -> InkProfile:
        if len(images) < BINS:
            raise ValueError(f"an ink profile needs at least {BINS} reference images, got {len(images)}")
        values = ink(images)
        edges = tuple(float(e) for e in np.quantile(values, [i / BINS for i in range(1, BINS)]))
        counts = np.bincount(_bin_of(edges, values), minlength=BINS)
        # Ties at an edge leave some bins above or below a tenth; the shares say what they are.
        return cls(edges, tuple(float(c) / len(values) for c in counts))

    def counts(self, images: np.ndarray) -> dict[int, int]:
        """How many of `images` fall in each bin (bins with none left out)."""
        bins, n = np.unique(_bin_of(self.edges, ink(images)), return_counts=True)
        return {int(b): int(c) for b, c in zip(bins, n, strict=True)}


def _bin_of(edges: tuple[float, ...], values: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(edges), values, side="right")


def tvd(reference: InkProfile, counts: Mapping[int, float]) -> float:
    """Total variation distance between the reference's shares and live bin counts (the rule's statistic)."""
    total = sum(counts.values())
    if total <= 0:
        raise ValueError("no live images to compare")
    return 0.5 * sum(abs(counts.get(b, 0) / total - share) for b, share in enumerate(reference.shares))
