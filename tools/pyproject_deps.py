"""The pinned requirements of pyproject.toml: print them for `pip install -r`, or check a venv holds them.

    pyproject_deps.py PYPROJECT GROUP…            one requirement a line (GROUP: runtime, dev, …)
    pyproject_deps.py --check PYPROJECT GROUP…    exit 1 naming each pin the running Python lacks or differs

The project itself is not installed: commands run from the checkout (tools/launcher finds it for `chiops`),
so the working tree is always what runs, never a stale copy in site-packages.
"""

import re
import sys
import tomllib
from importlib import metadata

PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^\s;]+)\s*$")


def requirements(path: str, groups: list[str]) -> list[str]:
    with open(path, "rb") as fh:
        project = tomllib.load(fh)["project"]
    lines = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    for group in groups:
        if group != "runtime":
            lines.extend(extras[group])
    return lines


def problems(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        match = PIN.match(line)
        if not match:
            out.append(f"{line}: not pinned with ==")
            continue
        name, _, want = match.groups()
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            out.append(f"{name}: pinned {want}, not installed")
            continue
        # A local build label (torch 2.13.0+cpu) satisfies the pin 2.13.0, as it does for pip.
        if have != want and have.split("+")[0] != want:
            out.append(f"{name}: pinned {want}, installed {have}")
    return out


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--check":
        found = problems(requirements(argv[1], argv[2:]))
        for problem in found:
            print(f"venv: {problem}", file=sys.stderr)
        return 1 if found else 0
    print("\n".join(requirements(argv[0], argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
