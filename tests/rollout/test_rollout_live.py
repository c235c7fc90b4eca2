"""The engine on the real local backend (Ray Serve + Prometheus on this test's own ports, real traffic):
a controller SIGKILLed in the canary step leaves the public route at a strategy weight (never half a state),
`status` says so, `resume` finishes the promotion; a second rollout killed the same way is `abort`ed back to
stable; `rollback --to` restores the first version; the ledger verifies; no client request failed.

The gates' thresholds are lowered here (min_requests/min_feedback) so the windows fit a test: this file proves
the engine's mechanics on the real platform; the gates' statistical power is the gate tests' subject.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client import start_http_server

from model_registry import Registry
from rollout import aliases
from serving.loadgen import ClientMetrics, LoadGenerator
from tests.rollout.platform import ROOT, isolated_vars, playbook_env, run_playbook
from tests.trained_registry import build_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.quiet]

BASE_PORT = 6500
STRATEGY = {
    "steps": [
        {"weight": 0.3},
        # The shipped shape: the first step guards (stops what fails), the last one judges.
        {"analysis": {"window": "20s", "mode": "guard"}},
        {"weight": 0.6},
        {"analysis": {"window": "15s"}},
        {"weight": 1.0},
    ],
    "analysis": {"interval": "5s", "max_window": "150s"},
    # Latency limits as the demo's, for one replica per side on this 2-core machine beside the live load (the
    # staging load test's p99 measured 536-848 ms against the shipped 500 ms, 2026-12-02).
    "thresholds": {
        "min_requests": 40,
        "min_feedback": 40,
        "max_latency_ratio": 2.0,
        "max_p99_latency_ms": 2000,
        # The candidates equal stable; at this traffic their accuracy evidence can end the 150 s cap
        # just short of ruling out 2x (CI 2026-12-02: bound 2.04x, rolled back). Mechanics, not power, here.
        "max_misclassification_ratio": 3.0,
    },
    "staging": {"load_seconds": 3, "slo_p99_ms": 2000},
    "drain": "2s",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    # Three equally good versions (one seed): the operator aborts v3 by choice, so it must reach the canary
    # step (a bad model would be stopped at staging, before there is anything to abort).
    registry = build_registry(
        run_dir / "registry", versions=((0, 8), (0, 8), (0, 8)), aliases={"production": "v1"}
    )
    extra = isolated_vars(BASE_PORT, run_dir, registry)
    extra["rollout_state_dir"] = str(run_dir / "rollout")
    extra["rollout_strategy"] = STRATEGY
    # the service keeps feedback, for the pipeline run to train on
    extra["chiops_feedback_store"] = f"sqlite:///{run_dir}/feedback.db"
    try:
        run_playbook("local_platform.yml", extra)
        # writes rollout_state_dir/settings.json from the inventory, as `start` would use it
        run_playbook("rollout.yml", {**extra, "model_version": "v2", "rollout_action": "plan"})
        yield extra
    finally:
        run_playbook("local_down.yml", extra, check=False)


def shifted(images: np.ndarray, pixels: int = 1) -> np.ndarray:
    """The digits moved `pixels` to the right (zeros come in on the left): forms the models never saw, so
    their feedback is new data and no copy of a test image (which validation would reject as leakage)."""
    out = np.zeros_like(images)
    out[..., pixels:] = images[..., :-pixels]
    return out


@pytest.fixture(scope="module")
def traffic(platform):
    images, labels = Registry(platform["chiops_registry"]).test_split("v1")
    images = shifted(images)
    metrics = ClientMetrics()
    server, _ = start_http_server(
        platform["local_loadgen_metrics_port"], addr="127.0.0.1", registry=metrics.registry
    )
    gen = LoadGenerator(
        f"http://127.0.0.1:{platform['local_serve_http_port']}",
        images,
        labels,
        rate=10,
        duration_s=1500,
        batch=2,
        feedback_delay_s=1.0,
        metrics=metrics,
    )
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", gen.run()), daemon=True)
    thread.start()
    yield gen, result
    gen.stop()
    thread.join(timeout=60)
    server.shutdown()


def cli(platform, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args, "--state-dir", platform["rollout_state_dir"]],
        cwd=ROOT,
        env=playbook_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def state(platform) -> dict:
    path = f"{platform['rollout_state_dir']}/state.json"
    return json.loads(Path(path).read_text()) if os.path.exists(path) else {}


def public(platform) -> dict:
    return httpx.get(f"http://127.0.0.1:{platform['local_serve_http_port']}/version", timeout=10).json()


def start_and_kill_in_the_first_analysis(platform, version: str) -> dict:
    settings = f"{platform['rollout_state_dir']}/settings.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollout", "start", "--settings", settings, "--version", version],
        cwd=ROOT,
        env=playbook_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    try:
        while True:
            s = state(platform)
            if s.get("version") == version and s.get("step") == 3 and s.get("window_start"):
                break  # the canary takes 30 % and its analysis window runs
            assert proc.poll() is None, f"the rollout ended before its canary step:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, f"no canary step after 600 s: {s.get('log')}"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return state(platform)


def test_killed_in_the_canary_step_then_status_and_resume_promote(platform, traffic):
    killed = start_and_kill_in_the_first_analysis(platform, "v2")
    assert killed["status"] == "running" and killed["weight"] == 0.3
    route = public(platform)
    # the route is exactly the persisted step: stable v1 plus the canary v2 at 30 %
    assert route["canary_weight"] == 0.3
    assert route["stable"]["model_version"] == "v1" and route["canary"]["model_version"] == "v2"

    status = cli(platform, "status")
    assert status.returncode == 0, status.stderr
    assert "controller: not running" in status.stdout
    assert "public route: canary weight 0.3" in status.stdout
    assert "`rollout resume` continues" in status.stdout

    resumed = cli(platform, "resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    final = state(platform)
    assert final["status"] == "promoted"
    assert [r["stage"] for r in final["records"]] == ["staging", "canary@30%", "canary@60%", "production"]
    modes = [(r["mode"], r["verdict"]) for r in final["records"][1:3]]
    assert modes == [("guard", "pass"), ("verdict", "pass")]
    route = public(platform)
    assert route["canary_weight"] == 0.0 and route["canary"] is None
    assert route["stable"]["model_version"] == "v2"
    reg = aliases.read(platform["chiops_registry"])["aliases"]
    assert (reg["production"], reg["previous"], reg["canary"]) == ("v2", "v1", None)
    report = json.loads(Path(final["report_dir"], "rollout.json").read_text())
    assert report["outcome"] == "promoted"
    assert os.path.getsize(f"{final['report_dir']}/rollout.png") > 0


def test_killed_again_then_abort_restores_stable(platform, traffic):
    killed = start_and_kill_in_the_first_analysis(platform, "v3")
    assert killed["weight"] == 0.3 and public(platform)["canary"]["model_version"] == "v3"
    aborted = cli(platform, "abort", "--reason", "test")
    assert aborted.returncode == 0, aborted.stdout[-3000:] + aborted.stderr
    assert state(platform)["status"] == "rolled_back"
    route = public(platform)
    assert route["canary_weight"] == 0.0 and route["canary"] is None
    assert route["stable"]["model_version"] == "v2"
    reg = aliases.read(platform["chiops_registry"])["aliases"]
    assert (reg["production"], reg["previous"], reg["canary"], reg["staging"]) == ("v2", "v1", None, None)
    assert cli(platform, "abort").returncode == 2  # nothing active any more


def test_rollback_to_the_first_version_and_the_ledger(platform, traffic):
    settings = f"{platform['rollout_state_dir']}/settings.json"
    back = cli(platform, "rollback", "--settings", settings, "--to", "v1")
    assert back.returncode == 0, back.stdout + back.stderr
    route = public(platform)
    assert route["stable"]["model_version"] == "v1" and route["canary_weight"] == 0.0
    reg = aliases.read(platform["chiops_registry"])["aliases"]
    assert (reg["production"], reg["previous"]) == ("v1", "v2")

    history = cli(platform, "history", "--json")
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)
    weights = [e["changes"]["canary_weight"][1] for e in entries if e["event"] == "weight"]
    # v2: 0.3 (killed in its analysis; resume continues that analysis), 0.6, 1.0, 0.0;
    # v3: 0.3 (killed), abort 0.0; rollback --to 0.0
    assert weights == [0.3, 0.6, 1.0, 0.0, 0.3, 0.0, 0.0]
    assert entries[-1]["event"] == "rollback_to" and entries[-1]["changes"]["target"] == "v1"


def pipeline_run(platform, policy: Path, commit: str) -> subprocess.CompletedProcess:
    settings = f"{platform['rollout_state_dir']}/settings.json"
    store = json.loads(Path(settings).read_text())["backend_settings"]["chiops_feedback_store"]
    argv = [sys.executable, "-m", "pipeline", "run", "--settings", settings]
    argv += ["--config", "training/configs/digits.yaml", "--param", "train.epochs=8"]
    argv += ["--param", "data.duplicates=drop", "--feedback-store", store]
    argv += ["--prometheus", f"http://{platform['prometheus_listen_address']}", "--code-commit", commit]
    argv += ["--policy", str(policy)]
    return subprocess.run(argv, cwd=ROOT, env=playbook_env(), capture_output=True, text=True, timeout=900)


def test_pipeline_run_retrains_on_live_feedback_and_rolls_out(platform, traffic, tmp_path):
    """`pipeline run` on the feedback the platform's service kept: the labels of the shifted traffic are new
    data, the version trained on reference + feedback goes through staging and the canary gates to production,
    and the next run is held by the cooldown the first run's record imposes."""
    registry = Registry(platform["chiops_registry"])
    stable = aliases.read(platform["chiops_registry"])["aliases"]["production"]
    commit = registry.card(stable).get("git_commit") or "unknown"
    policy = tmp_path / "policy.yml"
    policy.write_text(yaml.safe_dump({"min_new_labels": 100, "schedule_s": None}))

    first = pipeline_run(platform, policy, commit)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    runs = Path(platform["rollout_state_dir"]) / "pipeline"
    report = json.loads(next(runs.glob("*/report.json")).read_text())
    assert report["outcome"] == "promoted", report
    assert "new_data" in report["decision"]["triggers"]
    version = report["version"]
    assert aliases.read(platform["chiops_registry"])["aliases"]["production"] == version
    assert public(platform)["stable"]["model_version"] == version
    # the model card records the feedback snapshot it was trained on
    data = {v["kind"]: v for v in registry.card(version)["data"]["versions"]}
    assert data["feedback"]["records"] >= 100
    assert Path(report["feedback_data"]).name == f"feedback-{data['feedback']['sha256'][:16]}.npz"
    assert report["models"]["production"]["version"] == stable
    assert (
        f"| candidate | {version} |" in (Path(report["feedback_data"]).parents[1] / "report.md").read_text()
    )

    second = pipeline_run(platform, policy, commit)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    assert "pipeline: skipped" in second.stdout and "cooldown" in second.stdout, second.stdout
    records = [json.loads(line) for line in (runs / "runs.jsonl").read_text().splitlines()]
    assert [(r["outcome"], r["trained"]) for r in records] == [("promoted", True), ("skipped", False)]


def test_no_client_request_failed(platform, traffic):
    gen, _ = traffic
    time.sleep(3)  # feedback of the last predictions
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in gen.metrics.registry.collect()
        for s in family.samples
        if s.name in ("chiops_client_requests_total", "chiops_client_feedback_total")
    }
    failed = {k: v for k, v in samples.items() if dict(k[1]).get("outcome") != "ok" and v}
    ok = sum(v for k, v in samples.items() if dict(k[1]).get("outcome") == "ok")
    assert ok > 1000 and failed == {}, samples
