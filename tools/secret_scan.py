"""Secret scan for `make lint`: detect-secrets (pinned in pyproject.toml) over the working tree and over every
blob any commit of any ref ever held, so a secret committed and later deleted still fails the lint.

A finding that is not a secret is allowed by its hashed_secret in tools/secret-scan-allow.txt, with a reason.
Blobs never change, so each blob's result is cached in ~/.cache/chiops/secret-scan-<detect-secrets version>.
Exit 0 clean, 1 findings (file, line, type; for history the commits), 2 not run from a git checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOW = ROOT / "tools" / "secret-scan-allow.txt"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def scan(directory: Path, files: list[str]) -> dict[str, list[dict]]:
    """detect-secrets' results for these files (relative to directory), by file."""
    results: dict[str, list[dict]] = {}
    for start in range(0, len(files), 200):  # keep argv short
        out = subprocess.run(
            ["detect-secrets", "scan", *files[start : start + 200]],
            cwd=directory,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results.update(json.loads(out)["results"])
    return results


def allowed() -> set[str]:
    tokens = (line.split("#", 1)[0].strip() for line in ALLOW.read_text().splitlines())
    return {t for t in tokens if t}


def tree_findings(allow: set[str]) -> list[str]:
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    files = [f for f in listed if f and (ROOT / f).is_file() and not (ROOT / f).is_symlink()]
    return [
        f"tree: {name}:{s['line_number']}: {s['type']} (hashed_secret {s['hashed_secret']})"
        for name, found in sorted(scan(ROOT, files).items())
        for s in found
        if s["hashed_secret"] not in allow
    ]


def history_blobs() -> dict[str, str]:
    """Every blob of every ref, with the first path it was committed under."""
    listing = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objecttype) %(objectname) %(rest)"],
        cwd=ROOT,
        input=git("rev-list", "--all", "--objects"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    blobs: dict[str, str] = {}
    for line in listing.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "blob" and parts[2] and parts[1] not in blobs:
            blobs[parts[1]] = parts[2]
    return blobs


def history_findings(allow: set[str]) -> list[str]:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chiops"
    cache = base / f"secret-scan-{metadata.version('detect-secrets')}"
    cache.mkdir(parents=True, exist_ok=True)
    blobs = history_blobs()
    todo = {sha: path for sha, path in blobs.items() if not (cache / f"{sha}.json").exists()}
    if todo:
        print(
            f"secret-scan: scanning {len(todo)} new blob(s) of {len(blobs)} in the history", file=sys.stderr
        )
        with tempfile.TemporaryDirectory(prefix="chiops-secret-scan.") as tmp:
            files = []
            for sha, path in todo.items():
                # Under its committed path, so detect-secrets' filename heuristics apply as in the tree.
                target = Path(tmp) / sha / path
                target.parent.mkdir(parents=True, exist_ok=True)
                blob = subprocess.run(
                    ["git", "cat-file", "blob", sha], cwd=ROOT, capture_output=True, check=True
                )
                target.write_bytes(blob.stdout)
                files.append(f"{sha}/{path}")
            results = scan(Path(tmp), files)
        for sha in todo:
            found = [s for name, hits in results.items() if name.startswith(f"{sha}/") for s in hits]
            (cache / f"{sha}.json").write_text(json.dumps(found))
    out = []
    for sha, path in sorted(blobs.items(), key=lambda kv: kv[1]):
        for s in json.loads((cache / f"{sha}.json").read_text()):
            if s["hashed_secret"] in allow:
                continue
            commits = git("log", "--all", "--format=%h", f"--find-object={sha}").split()
            out.append(
                f"history: {path} (blob {sha[:12]}, commits {' '.join(commits[-3:])}):{s['line_number']}: "
                f"{s['type']} (hashed_secret {s['hashed_secret']})"
            )
    return out


def main() -> int:
    if not (ROOT / ".git").exists():
        print(f"secret-scan: {ROOT} is not a git checkout", file=sys.stderr)
        return 2
    allow = allowed()
    findings = tree_findings(allow) + history_findings(allow)
    for finding in findings:
        print(f"secret-scan: {finding}", file=sys.stderr)
    if findings:
        print(
            f"secret-scan: {len(findings)} finding(s): remove the secret (and rewrite the history), "
            "or, if it is "
            f"not one, add its hashed_secret to {ALLOW.relative_to(ROOT)} with the reason",
            file=sys.stderr,
        )
        return 1
    print("secret-scan: no secrets in the tree or the history")
    return 0


if __name__ == "__main__":
    sys.exit(main())
