"""Every role reads as one author wrote it: a README, an argument spec, checks in tasks/validate.yml run
before anything changes (after the distribution's values are loaded, where a role has them), and internal
registered variables named with a leading underscore."""

from __future__ import annotations

import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p.parents[1] for p in ROOT.glob("roles/*/tasks/main.yml"))


def _tasks(path: pathlib.Path) -> list[dict]:
    return yaml.safe_load(path.read_text()) or []


def _walk(tasks):
    for task in tasks:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _walk(task.get(key, []))


def test_roles_were_found():
    assert len(ROLES) >= 9


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_readme_spec_and_validates_first(role):
    assert (role / "README.md").is_file()
    assert "main" in yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert (role / "tasks" / "validate.yml").is_file()
    first = _tasks(role / "tasks" / "main.yml")[:2]
    if "ansible.builtin.include_vars" in first[0]:  # distribution values, geerlingguy's way: one first_found
        assert "first_found" in first[0]["ansible.builtin.include_vars"]
        first = first[1:]
    assert first[0].get("ansible.builtin.import_tasks") == "validate.yml", first[0]


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_registered_variables_are_internal(role):
    registered = [
        (path.name, task["register"])
        for path in sorted((role / "tasks").glob("*.yml"))
        for task in _walk(_tasks(path))
        if "register" in task
    ]
    assert [r for r in registered if not r[1].startswith("_")] == []
