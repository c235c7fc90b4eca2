"""Ingest: the bundled UCI digits or a user's NPZ/CSV file, with a content hash of what was read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import DataError

BUNDLED = "sklearn-digits"


@dataclass
class Dataset:
    images: np.ndarray  # float64, ideally (N, 8, 8); validation decides whether it is usable
    labels: np.ndarray  # as read; validation checks they are integers 0..9
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.labels)


def content_hash(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 over shapes and little-endian float64 values, so the hash names the data, not the file
    format."""
    digest = hashlib.sha256()
    digest.update(repr((images.shape, labels.shape)).encode())
    digest.update(np.ascontiguousarray(images, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<f8").tobytes())
    return digest.hexdigest()


def _numeric(array: np.ndarray, what: str, source: str) -> np.ndarray:
    try:
        return np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{source}: {what} are not numeric") from None


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"images", "labels"} - set(npz.files)
            if missing:
                raise DataError(f"{path}: NPZ needs arrays 'images' and 'labels', missing {sorted(missing)}")
            return npz["images"], npz["labels"]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as NPZ ({exc})") from None


def _load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One image a row: 64 pixel values then the label; a non-numeric first line is taken as a header."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from None
    rows = [line for line in lines if line.strip()]
    if rows:
        try:
            [float(v) for v in rows[0].split(",")]
        except ValueError:
            rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: CSV has no data rows")
    widths = {len(r.split(",")) for r in rows}
    if len(widths) != 1:
        raise DataError(f"{path}: CSV rows have different numbers of columns {sorted(widths)}")
    try:
        table = np.array([[float(v) for v in r.split(",")] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path}: CSV has a non-numeric value ({exc})") from None
    pixels, labels = table[:, :-1], table[:, -1]
    side = round(np.sqrt(pixels.shape[1]))
    images = pixels.reshape(len(pixels), side, side) if side * side == pixels.shape[1] else pixels
    return images, labels


def ingest(source: str, base_dir: str | Path | None = None) -> Dataset:
    """Read the data named by `source` (relative paths resolve against base_dir, the config's folder)."""
    if source == BUNDLED:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, labels = bunch.images, bunch.target
    else:
        path = Path(source)
        if not path.is_absolute() and base_dir is not None and not path.exists():
            path = Path(base_dir) / path
        if not path.is_file():
            raise DataError(f"data file {source} does not exist")
        if path.suffix == ".npz":
            images, labels = _load_npz(path)
        elif path.suffix == ".csv":
            images, labels = _load_csv(path)
        else:
            raise DataError(f"data file {path}: unsupported format {path.suffix!r} (use .npz or .csv)")
        source = str(path)
    images = _numeric(images, "images", source)
    labels = _numeric(labels, "labels", source)
    return Dataset(images=images, labels=labels, source=source, sha256=content_hash(images, labels))
