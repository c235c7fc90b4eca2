"""The pinned environment is what the docs say it is."""

import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def all_requirements():
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.extend(extra)
    return reqs


def test_every_python_dependency_is_pinned_exactly():
    loose = [r for r in all_requirements() if not re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[\w.]+", r)]
    assert loose == [], f"pin these with ==: {loose}"


def test_installed_versions_match_the_pins():
    mismatched = []
    for req in all_requirements():
        name, version = re.sub(r"\[.*\]", "", req).split("==")
        installed = metadata.version(name)
        if installed.split("+")[0] != version:
            mismatched.append(f"{name}: pinned {version}, installed {installed}")
    assert mismatched == []


def test_requirements_yml_names_the_collections_bundled_with_the_pinned_ansible():
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    assert {c["name"] for c in wanted} >= {
        "ansible.posix",
        "community.general",
        "containers.podman",
        "kubernetes.core",
    }
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    for collection in wanted:
        namespace, name = collection["name"].split(".")
        manifest = site / "site-packages" / "ansible_collections" / namespace / name / "MANIFEST.json"
        bundled = json.loads(manifest.read_text())["collection_info"]["version"]
        assert bundled == collection["version"], collection["name"]


def test_packages_import_and_inventories_exist():
    import chi_scripts
    import serving
    import training

    assert all(m.__file__.startswith(str(ROOT)) for m in (chi_scripts, serving, training))
    for env in ("local", "staging", "canary", "production"):
        assert (ROOT / "inventories" / env / "group_vars" / "all" / "main.yml").is_file(), env


def test_ci_runs_exactly_make_test():
    commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1].strip() == "exec make test"
