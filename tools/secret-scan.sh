#!/usr/bin/env bash
# Secret scan for `make lint`: detect-secrets (pinned in pyproject.toml) over the working tree and over every
# blob any commit of any ref ever held, so a secret committed and then deleted still fails the lint.
# A finding that is not a secret is allowed by its hashed_secret in tools/secret-scan-allow.txt, with a reason.
# Exit 0 clean, 1 findings (each printed with file, line and type; for history also the commit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
allow=tools/secret-scan-allow.txt
work=$(mktemp -d /tmp/chiops-secret-scan.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Tracked and untracked-but-not-ignored files of the working tree, as they are on disk now.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -f "$f" ] && [ ! -L "$f" ] && printf '%s\n' "$f"
done > "$work/tree.txt"
xargs -d '\n' -a "$work/tree.txt" detect-secrets scan > "$work/tree.json"

# Every blob of the history, written out under its first path so filename-based heuristics still apply.
mkdir "$work/history"
git rev-list --all --objects \
  | git cat-file --batch-check='%(objecttype) %(objectname) %(rest)' \
  | awk '$1 == "blob" && $3 != "" && !seen[$2]++ {print $2, $3}' > "$work/blobs.txt"
while read -r sha path; do
  mkdir -p "$work/history/$sha"
  mkdir -p "$(dirname "$work/history/$sha/$path")"
  git cat-file blob "$sha" > "$work/history/$sha/$path"
done < "$work/blobs.txt"
(cd "$work/history" && detect-secrets scan --all-files . > "$work/history.json")

python3 - "$work/tree.json" "$work/history.json" "$allow" <<'PY'
import json, re, subprocess, sys

tree, history, allow_file = sys.argv[1:]
allowed = set()
with open(allow_file) as fh:
    for line in fh:
        token = line.split("#", 1)[0].strip()
        if token:
            allowed.add(token)
findings = []
for label, path in (("tree", tree), ("history", history)):
    with open(path) as fh:
        results = json.load(fh)["results"]
    for filename, secrets in sorted(results.items()):
        for s in secrets:
            if s["hashed_secret"] in allowed:
                continue
            where = filename
            if label == "history":
                sha, _, name = filename.lstrip("./").partition("/")
                commits = subprocess.run(
                    ["git", "log", "--all", "--format=%h", f"--find-object={sha}"],
                    capture_output=True, text=True, check=True,
                ).stdout.split()
                where = f"{name} (blob {sha[:12]}, commits {' '.join(commits[-3:]) or '?'})"
            findings.append(f"{label}: {where}:{s['line_number']}: {s['type']} (hashed_secret {s['hashed_secret']})")
for f in findings:
    print(f"secret-scan: {f}", file=sys.stderr)
if findings:
    print(f"secret-scan: {len(findings)} finding(s); remove the secret (and rewrite history), or, if it is not "
          f"one, add its hashed_secret to {allow_file} with the reason", file=sys.stderr)
    sys.exit(1)
print("secret-scan: no secrets in the tree or the history")
PY
