"""The rollout CLI as a user runs it (subprocesses): plan on every shipped inventory, exit codes, the ledger's
tamper detection and what `rollback --to` resolves to."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from rollout import aliases, ledger, rollback_to
from tests.rollout.platform import ROOT, playbook_env, run_playbook
from tests.trained_registry import build_registry

INVENTORIES = sorted(p.name for p in (ROOT / "inventories").iterdir() if (p / "group_vars").is_dir())


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry") / "registry"
    return build_registry(root, versions=((0, 1), (1, 1), (2, 1)), aliases={"production": "v1"})


@pytest.fixture
def registry(tmp_path, registry_template):
    return shutil.copytree(registry_template, tmp_path / "registry")


def rollout(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args], cwd=cwd, env=playbook_env(), capture_output=True, text=True
    )


def test_every_shipped_inventory_is_covered():
    assert set(INVENTORIES) == {"local", "production", "staging", "canary"}


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_plan_on_every_shipped_inventory(inventory):
    proc = rollout("plan", "--inventory", f"inventories/{inventory}", "--version", "v2")
    if inventory == "canary":
        # shares production's cluster: a second controller of production's route would be unsafe
        assert proc.returncode == 1
        assert "refused" in proc.stderr and "inventories/production" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "nothing is touched" in out
    assert "staging checks" in out and "backend.deploy(staging, v2)" in out
    assert "offline_eval" in out and "load_test" in out
    if inventory == "staging":
        assert "stops after staging" in out
        assert "at weight" not in out and "promote" not in out.split("stops after staging")[0]
        return
    # production hosts only [production], yet staging and the canary steps run (in its own namespaces)
    assert "backend.set_split(<production>, v2, 0.1)" in out
    assert out.count("guard at weight 0.1") == 1 and out.count("analysis at weight 0.5") == 1
    assert "a failed gate → roll back; once each side has the minimum evidence" in out
    assert "gates: error_rate, latency" in out or "gates: error_rate" in out
    assert "min_requests" in out and "min_feedback" in out
    assert "backend.deploy(production, v2)" in out
    assert out.index("analysis at weight 0.5") < out.index("promote: production serves the candidate")


def test_plan_with_skip_analysis_says_so_and_has_no_gates():
    proc = rollout("plan", "--inventory", "inventories/local", "--version", "v2", "--skip-analysis")
    assert proc.returncode == 0, proc.stderr
    assert "--skip-analysis" in proc.stdout and "at weight" not in proc.stdout


def test_plan_through_the_playbook_touches_nothing_but_its_settings(tmp_path, registry):
    before = (registry / "index.json").read_text()
    state_dir = tmp_path / "rollout"
    proc = run_playbook(
        "rollout.yml",
        {
            "model_version": "v2",
            "rollout_action": "plan",
            "chiops_registry": str(registry),
            "chiops_run_dir": str(tmp_path / "run"),
            "rollout_state_dir": str(state_dir),
        },
    )
    assert "backend.deploy(staging, v2)" in proc.stdout
    assert "stable v1" in proc.stdout
    assert (registry / "index.json").read_text() == before
    assert sorted(p.name for p in state_dir.iterdir()) == ["settings.json"]
    settings = json.loads((state_dir / "settings.json").read_text())
    assert settings["backend"] == "local"
    assert settings["backend_settings"]["chiops_registry"] == str(registry)
    assert oct((state_dir / "settings.json").stat().st_mode & 0o777) == "0o600"


def test_usage_errors_exit_2_with_the_reason(tmp_path):
    assert rollout().returncode == 2
    proc = rollout("start", "--settings", str(tmp_path / "missing.json"), "--version", "v2")
    assert proc.returncode == 2 and "cannot read settings" in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"backend": "local", "registry": "x", "strategy": {"steps": [{"weight": 1.0}]}})
    )
    proc = rollout("start", "--settings", str(bad), "--version", "v2", "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 2 and "no canary weight below 1.0" in proc.stderr
    ungated = tmp_path / "ungated.json"
    steps = [{"weight": 0.1}, {"weight": 0.5}, {"analysis": {}}, {"weight": 1.0}]
    ungated.write_text(json.dumps({"backend": "local", "registry": "x", "strategy": {"steps": steps}}))
    proc = rollout("start", "--settings", str(ungated), "--version", "v2", "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 2 and "without an analysis step" in proc.stderr
    proc = rollout("abort", "--state-dir", str(tmp_path / "none"))
    assert proc.returncode == 2 and "no rollout" in proc.stderr
    proc = rollout("plan", "--version", "v2")
    assert proc.returncode == 2 and "exactly one of" in proc.stderr


def test_status_of_no_rollout_and_start_of_an_unregistered_version(tmp_path, registry):
    proc = rollout("status", "--state-dir", str(tmp_path / "none"))
    assert proc.returncode == 0 and "no rollout" in proc.stdout
    settings = tmp_path / "settings.json"
    backend = {
        "chiops_registry": str(registry),
        "chiops_run_dir": str(tmp_path / "run"),
        "local_ray_dashboard_port": 1,
        "local_serve_http_port": 1,
        "local_ray_token_file": str(tmp_path / "token"),
        "prometheus_listen_address": "127.0.0.1:1",
    }
    settings.write_text(
        json.dumps({"backend": "local", "registry": str(registry), "backend_settings": backend})
    )
    proc = rollout(
        "start", "--settings", str(settings), "--version", "v9", "--state-dir", str(tmp_path / "s")
    )
    assert proc.returncode == 1 and "v9 is not registered" in proc.stderr
    proc = rollout(
        "start", "--settings", str(settings), "--version", "v1", "--state-dir", str(tmp_path / "s")
    )
    assert proc.returncode == 1 and "already serves production" in proc.stderr


def _ledger(tmp_path) -> ledger.Ledger:
    book = ledger.Ledger(tmp_path / "rollout" / "ledger.jsonl")
    book.append("alias", "r1", {"production": [None, "v1"]}, "first model")
    book.append(
        "weight", "r2", {"canary_weight": [0.0, 0.1]}, "step", evidence={"verdict": "pass"}, commit="abc"
    )
    book.append("alias", "r2", {"production": ["v1", "v2"], "previous": [None, "v1"]}, "gates passed")
    return book


def test_history_verifies_the_chain_and_names_the_first_tampered_entry(tmp_path):
    book = _ledger(tmp_path)
    proc = rollout("history", "--state-dir", str(book.path.parent))
    assert proc.returncode == 0, proc.stderr
    assert "3 entries; hash chain verified" in proc.stdout and "commit abc" in proc.stdout

    lines = book.path.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["reason"] = "nobody looked"
    book.path.write_text("\n".join([lines[0], json.dumps(edited, sort_keys=True), lines[2]]) + "\n")
    proc = rollout("history", "--state-dir", str(book.path.parent))
    assert proc.returncode == 1 and "entry 2 (line 2) was modified" in proc.stderr

    book.path.write_text("\n".join([lines[0], lines[2]]) + "\n")  # an entry removed
    proc = rollout("history", "--state-dir", str(book.path.parent))
    assert proc.returncode == 1 and "line 2 has seq 3, expected 2" in proc.stderr

    rehashed = json.loads(lines[1])
    rehashed["reason"] = "rewritten with a fresh hash"
    rehashed["hash"] = ledger._digest(rehashed)  # a forger who recomputes one hash breaks the next link
    book.path.write_text("\n".join([lines[0], json.dumps(rehashed, sort_keys=True), lines[2]]) + "\n")
    proc = rollout("history", "--state-dir", str(book.path.parent))
    assert proc.returncode == 1 and "entry 3 (line 3) does not link" in proc.stderr


def test_rollback_to_resolves_versions_times_and_previous_from_the_ledger(tmp_path, registry):
    registry = str(registry)
    clock = iter([1000.0, 2000.0, 3000.0])
    book = ledger.Ledger(tmp_path / "ledger.jsonl", clock=lambda: next(clock))
    book.append("alias", "r1", {"production": [None, "v1"]}, "first")
    book.append("weight", "r2", {"canary_weight": [0.0, 0.1]}, "step")
    book.append("alias", "r2", {"production": ["v1", "v2"], "previous": [None, "v1"]}, "promoted")
    aliases.move(registry, {"production": "v2", "previous": "v1"}, "test")
    entries = book.verify()
    assert rollback_to.resolve(entries, registry, "v1") == "v1"
    assert rollback_to.resolve(entries, registry, "previous") == "v1"
    assert rollback_to.resolve(entries, registry, "1970-01-01T00:40:00Z") == "v1"  # 2400 s: v1 served
    assert rollback_to.resolve(entries, registry, "1970-01-01T00:50:00Z") == "v2"  # 3000 s: v2 promoted
    with pytest.raises(rollback_to.NotFound, match="no production version"):
        rollback_to.resolve(entries, registry, "1970-01-01T00:10:00Z")
    # a version seen only as the old value of a production move served production too
    only_old = [{"event": "alias", "changes": {"production": ["v0", "v1"]}}]
    assert ledger.production_versions(only_old) == ["v0", "v1"]
    with pytest.raises(rollback_to.NotFound, match="never served production"):
        rollback_to.resolve(entries, registry, "v3")
    with pytest.raises(rollback_to.NotFound, match="neither a registered version"):
        rollback_to.resolve(entries, registry, "yesterday")
