"""Print the pinned requirements of pyproject.toml, one per line, for `pip install -r`.

The project itself is not installed: commands run from the repository root, so the working tree (or a
git worktree) is always what runs, never a stale copy in site-packages.
"""

import sys
import tomllib


def main(path: str, *groups: str) -> None:
    with open(path, "rb") as fh:
        project = tomllib.load(fh)["project"]
    lines = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    for group in groups:
        if group == "runtime":
            continue
        lines.extend(extras[group])
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], *sys.argv[2:])
