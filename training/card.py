"""Model cards as training writes them: card.json (what tools read) and card.md (what people read), from one
dict. The contract (required fields, the markdown) is model_registry.card."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from model_registry.card import REQUIRED_FIELDS, REQUIRED_METRICS, missing_fields, render_markdown, utc_now

__all__ = [
    "REQUIRED_FIELDS",
    "REQUIRED_METRICS",
    "git_commit",
    "missing_fields",
    "render_markdown",
    "utc_now",
    "write_card",
]


def git_commit(repo: Path | None = None) -> str:
    """HEAD of the source tree (with -dirty for uncommitted changes); CHIOPS_GIT_COMMIT when it was copied
    to a node without .git (the training playbook passes the controller's commit)."""
    if os.environ.get("CHIOPS_GIT_COMMIT"):
        return os.environ["CHIOPS_GIT_COMMIT"]
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def write_card(out_dir: Path, card: dict[str, Any]) -> None:
    (out_dir / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out_dir / "card.md").write_text(render_markdown(card))
