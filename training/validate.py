"""Data validation: every check runs and reports before any training, each naming the problem it found."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training.data import Dataset

NUM_CLASSES = 10
PIXEL_MAX = 16.0


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}

    def to_text(self) -> str:
        return "\n".join(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.message}" for c in self.checks)


def image_keys(images: np.ndarray) -> list[bytes]:
    """Exact-content keys of images (what 'the same image' means for duplicates and leakage)."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1), dtype="<f8")
    return [row.tobytes() for row in flat]


def check_shape(ds: Dataset) -> Check:
    im, lb = ds.images, ds.labels
    problems = []
    if im.ndim != 3 or im.shape[1:] != (8, 8):
        problems.append(f"images must have shape (N, 8, 8), got {im.shape}")
    if lb.ndim != 1:
        problems.append(f"labels must have shape (N,), got {lb.shape}")
    elif len(lb) != len(im):
        problems.append(f"{len(im)} images but {len(lb)} labels")
    if len(lb) == 0:
        problems.append("no samples")
    if problems:
        return Check(
            "shape", False, "; ".join(problems), {"images": list(im.shape), "labels": list(lb.shape)}
        )
    return Check("shape", True, f"{len(im)} images of 8x8")


def check_finite(ds: Dataset) -> Check:
    bad_images = int((~np.isfinite(ds.images)).reshape(len(ds.images), -1).any(axis=1).sum())
    bad_labels = int((~np.isfinite(ds.labels)).sum())
    if bad_images or bad_labels:
        return Check(
            "finite",
            False,
            f"NaN/inf values: {bad_images} images and {bad_labels} labels contain NaN or inf",
            {"images": bad_images, "labels": bad_labels},
        )
    return Check("finite", True, "no NaN or inf")


def check_value_range(ds: Dataset) -> Check:
    finite = ds.images[np.isfinite(ds.images)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if low < 0 or high > PIXEL_MAX:
        outside = int(((finite < 0) | (finite > PIXEL_MAX)).sum())
        return Check(
            "value_range",
            False,
            f"pixel values must lie in 0..16, found {outside} outside (min {low:g}, max {high:g})",
            {"min": low, "max": high, "outside": outside},
        )
    return Check("value_range", True, f"pixels in [{low:g}, {high:g}]")


def check_labels(ds: Dataset, require_all: bool = True) -> Check:
    """``require_all=False`` for a batch (e.g. feedback) that joins data holding every digit."""
    lb = ds.labels[np.isfinite(ds.labels)]
    non_int = int((lb != np.round(lb)).sum())
    unknown = sorted({float(v) for v in lb if v not in range(NUM_CLASSES)})
    missing = sorted(set(range(NUM_CLASSES)) - {int(v) for v in lb if v in range(NUM_CLASSES)})
    problems = []
    if non_int:
        problems.append(f"{non_int} labels are not integers")
    if unknown:
        problems.append(f"labels outside the label set 0..9: {[f'{v:g}' for v in unknown[:10]]}")
    if missing and require_all:
        problems.append(f"digits with no sample: {missing}")
    if problems:
        return Check(
            "label_set",
            False,
            "label set: " + "; ".join(problems),
            {"unknown": unknown[:10], "missing": missing},
        )
    return Check("label_set", True, "labels are the digits 0..9" + (", all present" if require_all else ""))


def check_class_balance(ds: Dataset, max_imbalance: float, min_per_class: int) -> Check:
    lb = ds.labels[np.isin(ds.labels, np.arange(NUM_CLASSES))].astype(np.int64)
    counts = np.bincount(lb, minlength=NUM_CLASSES)
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if present.size else float("inf")
    details = {"counts": counts.tolist(), "ratio": ratio}
    problems = []
    if ratio > max_imbalance:
        problems.append(f"largest class is {ratio:.1f}x the smallest (allowed {max_imbalance:g}x)")
    small = [d for d in range(NUM_CLASSES) if 0 < counts[d] < min_per_class]
    if small:
        problems.append(f"digits {small} have fewer than {min_per_class} samples")
    if problems:
        return Check("class_balance", False, "class balance: " + "; ".join(problems), details)
    return Check("class_balance", True, f"class counts {counts.min()}..{counts.max()}", details)


def duplicate_groups(images: np.ndarray) -> list[list[int]]:
    groups: dict[bytes, list[int]] = {}
    for i, key in enumerate(image_keys(images)):
        groups.setdefault(key, []).append(i)
    return [idx for idx in groups.values() if len(idx) > 1]


def check_duplicates(ds: Dataset, policy: str) -> Check:
    groups = duplicate_groups(ds.images)
    if not groups:
        return Check("duplicates", True, "no exact-duplicate images")
    conflicting = [g for g in groups if len({float(ds.labels[i]) for i in g}) > 1]
    extra = sum(len(g) - 1 for g in groups)
    details = {
        "groups": len(groups),
        "extra_copies": extra,
        "conflicting": len(conflicting),
        "first": groups[0],
    }
    if conflicting:
        return Check(
            "duplicates",
            False,
            (
                f"exact-duplicate images with different labels: {len(conflicting)} groups "
                f"(e.g. rows {conflicting[0]})"
            ),
            details,
        )
    if policy == "drop":
        return Check(
            "duplicates", True, f"{extra} exact-duplicate images will be dropped (policy drop)", details
        )
    return Check(
        "duplicates",
        False,
        f"exact-duplicate images: {extra} extra copies in {len(groups)} groups (e.g. rows {groups[0]}); "
        "set data.duplicates: drop to keep one of each",
        details,
    )


def validate_dataset(ds: Dataset, data_config: dict[str, Any]) -> Report:
    """Every check on the whole data set; later checks only run when the shape makes them meaningful."""
    shape = check_shape(ds)
    if not shape.ok:
        return Report([shape, Check("other checks", False, "not run: the shape is wrong")])
    return Report(
        [
            shape,
            check_finite(ds),
            check_value_range(ds),
            check_labels(ds),
            check_class_balance(ds, data_config["max_class_imbalance"], data_config["min_per_class"]),
            check_duplicates(ds, data_config["duplicates"]),
        ]
    )


def drop_duplicates(ds: Dataset) -> Dataset:
    """Keep the first of each exact-duplicate group (only called when labels agree, see check_duplicates)."""
    drop = {i for group in duplicate_groups(ds.images) for i in group[1:]}
    keep = np.array([i for i in range(len(ds)) if i not in drop], dtype=np.int64)
    return Dataset(ds.images[keep], ds.labels[keep], ds.source, ds.sha256)


def check_leakage(splits: dict[str, np.ndarray]) -> Check:
    """The same image must not appear in two splits (it would inflate validation and test scores)."""
    seen: dict[bytes, str] = {}
    leaks: dict[str, int] = {}
    for name, images in splits.items():
        for key in set(image_keys(images)):
            if key in seen and seen[key] != name:
                pair = f"{seen[key]}/{name}"
                leaks[pair] = leaks.get(pair, 0) + 1
            else:
                seen[key] = name
    if leaks:
        text = ", ".join(f"{n} images in both {pair}" for pair, n in leaks.items())
        return Check("leakage", False, f"leakage between splits: {text}", leaks)
    return Check("leakage", True, "no image appears in two splits")
