"""tools/secret_scan.py (make lint) fails on a secret in the tree and on one only the history still holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Assembled at run time so this file itself holds no key-shaped string.
FAKE_AWS_KEY = "AKIA" + "Z7Q2" * 4


def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    (r / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "secret_scan.py", r / "tools")
    (r / "tools" / "secret-scan-allow.txt").write_text("# none\n")
    subprocess.run(["git", "init", "-q", str(r)], check=True)
    return r


def commit(r: Path, message: str) -> None:
    subprocess.run(["git", "-C", str(r), "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(r),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-qm",
            message,
        ],
        check=True,
    )


def scan(r: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return subprocess.run(
        [sys.executable, str(r / "tools" / "secret_scan.py")], env=env, capture_output=True, text=True
    )


def test_tree_then_history_then_allowed(tmp_path):
    r = repo(tmp_path)
    (r / "settings.py").write_text(f'aws_access_key_id = "{FAKE_AWS_KEY}"\n')
    commit(r, "add a key")
    in_tree = scan(r, tmp_path)
    assert in_tree.returncode == 1
    assert "tree: settings.py:1: AWS Access Key" in in_tree.stderr

    (r / "settings.py").write_text("aws_access_key_id = None  # from the environment\n")
    commit(r, "remove the key")
    only_history = scan(r, tmp_path)
    assert only_history.returncode == 1
    assert "tree:" not in only_history.stderr
    assert "history: settings.py" in only_history.stderr and "AWS Access Key" in only_history.stderr

    hashed = only_history.stderr.split("hashed_secret ")[1].split(")")[0]
    (r / "tools" / "secret-scan-allow.txt").write_text(f"{hashed}  # a documentation example\n")
    assert scan(r, tmp_path).returncode == 0
