"""`make demo` end to end (the product's main job): v1 to production, v2 promoted through two gated weight
steps, v3 caught at canary and rolled back, zero failed client requests (/predict and /feedback), reports and
the verified ledger written, and nothing left running."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.rollout.platform import ROOT, playbook_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.quiet]

DEMO = ROOT / "runs" / "local" / "demo"
LOCAL_PORTS = (6390, 8270, 8010, 9391, 9392, 9393)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(1500)
def test_make_demo():
    busy = [p for p in LOCAL_PORTS if port_open(p)]
    if busy:
        pytest.fail(
            f"ports of the local backend already in use ({busy}): stop it first (playbooks/local_down.yml)"
        )
    env = playbook_env()
    env.pop("KEEP", None)
    proc = subprocess.run(
        [str(ROOT / "tools" / "demo.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1450
    )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]

    summary = json.loads((DEMO / "summary.json").read_text())
    outcomes = {r["model_version"]: r for r in summary["rollouts"]}
    assert outcomes["v1"]["outcome"] == "promoted"
    assert outcomes["v2"]["outcome"] == "promoted"
    assert [s["stage"] for s in outcomes["v2"]["stages"]] == [
        "staging",
        "canary@50%",
        "canary@80%",
        "production",
    ]
    assert all(all(s["checks"].values()) for s in outcomes["v2"]["stages"])
    assert [s["verdict"] for s in outcomes["v2"]["stages"][1:3]] == ["pass", "pass"]
    v3 = outcomes["v3"]
    assert v3["outcome"] == "rolled_back"
    assert [s["stage"] for s in v3["stages"]] == ["staging", "canary@50%"]
    assert all(v3["stages"][0]["checks"].values()), "v3 must pass staging and be caught at canary"
    assert v3["stages"][1]["checks"]["online_accuracy"] is False
    assert summary["client_failed_requests"] == 0
    assert summary["client_requests"] > 500
    for version in ("v2", "v3"):
        report = DEMO / f"report-{version}"
        for name in ("rollout.json", "rollout.md", "rollout.png", "canary-50pct.json", "staging.json"):
            assert (report / name).stat().st_size > 0, f"{report / name} missing"
    assert "client-side failed requests across the demo (/predict and /feedback): 0 of" in proc.stdout
    assert "v2 steps: staging pass → canary@50% pass → canary@80% pass → production pass" in proc.stdout

    # the ledger of the demo verifies and shows both weight steps of v2 and v3's rollback
    history = subprocess.run(
        [sys.executable, "-m", "rollout", "history", "--json", "--state-dir", str(DEMO / "rollout")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)
    weights = [e["changes"]["canary_weight"][1] for e in entries if e["event"] == "weight"]
    assert weights == [0.5, 0.8, 1.0, 0.0, 0.5, 0.0]
    assert [e["changes"]["status"] for e in entries if e["event"] == "finish"] == [
        "promoted",
        "promoted",
        "rolled_back",
    ]

    # the registry ends with v2 in production and v1 as previous
    index = json.loads((DEMO / "registry" / "index.json").read_text())
    assert (index["aliases"]["production"], index["aliases"]["previous"], index["aliases"]["canary"]) == (
        "v2",
        "v1",
        None,
    )
    # nothing left running
    assert [p for p in LOCAL_PORTS if port_open(p)] == []
    assert not any((ROOT / "runs" / "local" / "pids").glob("*.pid"))
