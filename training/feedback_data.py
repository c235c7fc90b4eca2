"""Feedback as training data: a snapshot of the feedback store is a data version (content hash + provenance).

Training never reads the live store: a snapshot is written once (an NPZ named by its content hash and a JSON
of where it came from) and a config names it as ``data.feedback``, so a run can be repeated on the same data.
The feedback joins the training split only; the test split stays the reference one, so a model trained on
feedback is compared with production on the same test images (champion/challenger), and a feedback image
that is also a test image is leakage.

    python -m training.feedback_data --store sqlite:///var/chiops/feedback.db --out data/feedback
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data import Dataset, content_hash
from training.errors import DataError
from training.validate import (
    Report,
    check_duplicates,
    check_finite,
    check_labels,
    check_leakage,
    check_shape,
    check_value_range,
)


@dataclass(frozen=True)
class Snapshot:
    dataset: Dataset
    provenance: dict[str, Any]


def snapshot(store_url: str) -> Snapshot:
    """Every live record of the store (serving.feedback_store.live_records), in prediction-id order, so the
    same records always give the same hash."""
    from serving.feedback_store import StoreUnavailable, live_records, open_store

    try:
        records = live_records(open_store(store_url))
    except (StoreUnavailable, ValueError) as exc:
        raise DataError(f"cannot read the feedback store: {exc}") from None
    if not records:
        raise DataError(f"the feedback store {store_url} holds no live feedback yet")
    images = np.stack([r.pixels() for r in records]).astype(np.float64)
    labels = np.array([r.label for r in records], dtype=np.float64)
    sha = content_hash(images, labels)
    provenance = {
        "kind": "feedback",
        "store": store_url,
        "sha256": sha,
        "records": len(records),
        "received_from": min(r.received_at for r in records),
        "received_to": max(r.received_at for r in records),
        "model_versions": dict(sorted(Counter(r.model_version for r in records).items())),
        "environments": dict(sorted(Counter(r.environment for r in records).items())),
    }
    return Snapshot(Dataset(images, labels, f"feedback:{store_url}", sha), provenance)


def write_snapshot(snap: Snapshot, out_dir: str | Path) -> Path:
    """feedback-<hash>.npz (+ .json provenance); rewriting the same snapshot leaves the same files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"feedback-{snap.dataset.sha256[:16]}.npz"
    if not path.exists():
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=snap.dataset.images, labels=snap.dataset.labels)
        tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(snap.provenance, indent=2, sort_keys=True) + "\n")
    return path


def load_snapshot(path: Path) -> Snapshot:
    from training.data import ingest

    dataset = ingest(str(path))
    meta = path.with_suffix(".json")
    provenance = json.loads(meta.read_text()) if meta.is_file() else {"kind": "feedback"}
    if provenance.get("sha256") not in (None, dataset.sha256):
        raise DataError(f"{path}: content hash {dataset.sha256} is not the {provenance['sha256']} of {meta}")
    return Snapshot(dataset, {**provenance, "path": str(path), "sha256": dataset.sha256})


def validate_feedback(feedback: Dataset, test_images: np.ndarray, data_config: dict[str, Any]) -> Report:
    """The reference data's checks, on a batch that need not hold every digit; plus leakage into the test
    split.

    (Class balance is checked on the training split it joins, see training/pipeline.py.)
    """
    shape = check_shape(feedback)
    if not shape.ok:
        return Report([shape])
    return Report(
        [
            shape,
            check_finite(feedback),
            check_value_range(feedback),
            check_labels(feedback, require_all=False),
            check_duplicates(feedback, data_config["duplicates"]),
            check_leakage({"test": test_images, "feedback": feedback.images}),
        ]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.feedback_data", description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="feedback store URL (sqlite:///path or postgresql://…)")
    p.add_argument("--out", required=True, help="directory for feedback-<hash>.npz and its provenance")
    a = p.parse_args(argv)
    try:
        snap = snapshot(a.store)
    except DataError as exc:
        print(f"training.feedback_data: {exc}", file=sys.stderr)
        return 1
    path = write_snapshot(snap, a.out)
    print(f"{path} ({snap.provenance['records']} records, sha256 {snap.dataset.sha256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
