"""The Molecule scenarios share one base config, and each scenario states only what is its own.

Molecule merges every scenario's molecule.yml over `.config/molecule/config.yml` (tools/molecule-all.sh passes
it with --base-config); the merge below is Molecule's own function, and `molecule list` proves Molecule loads
each one.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from molecule.util import merge_dicts

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = ROOT / ".config" / "molecule" / "config.yml"
SCENARIOS = sorted(ROOT.glob("roles/*/molecule/default/molecule.yml"))


def _load(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _restated(base, own, path=()) -> list[str]:
    """Keys of `own` whose value is what the base config already gives."""
    if not isinstance(base, dict) or not isinstance(own, dict):
        return [".".join(path)] if base == own else []
    return [hit for key in own.keys() & base.keys() for hit in _restated(base[key], own[key], (*path, key))]


def test_there_are_scenarios_and_the_runner_passes_the_base_config():
    assert len(SCENARIOS) >= 8
    assert '--base-config "$base_config"' in (ROOT / "tools" / "molecule-all.sh").read_text()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.parts[-4])
def test_scenario_states_only_its_own_settings(scenario):
    own = _load(scenario)
    assert _restated(_load(BASE), own) == []
    for platform in own.get("platforms", []):
        # The host's containers.conf.d drop-in sets runc and the ulimits for every podman call.
        assert "ulimits" not in platform
        assert "--runtime=runc" not in platform.get("extra_opts", [])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.parts[-4])
def test_merged_scenario_runs_the_shared_sequence(scenario):
    merged = merge_dicts(_load(BASE), _load(scenario))
    assert merged["scenario"]["test_sequence"] == _load(BASE)["scenario"]["test_sequence"]
    assert {"converge", "idempotence", "verify"} <= set(merged["scenario"]["test_sequence"])
    assert merged["verifier"]["name"] == "ansible"
    if merged["driver"]["name"] == "podman":
        for platform in merged["platforms"]:
            assert platform["image"].startswith("localhost/") and platform["pre_build_image"] is True
    else:  # runs on the controller itself: Molecule must neither create nor destroy it
        assert merged["driver"]["options"]["managed"] is False


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.parts[-4])
def test_molecule_loads_the_merged_scenario(scenario):
    merged = merge_dicts(_load(BASE), _load(scenario))
    bin_dir = pathlib.Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "molecule", "--base-config", str(BASE), "list", "--format", "plain"],
        cwd=scenario.parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for platform in merged["platforms"]:
        line = next(x for x in proc.stdout.splitlines() if x.split()[:1] == [platform["name"]])
        assert merged["driver"]["name"] in line.split(), line
