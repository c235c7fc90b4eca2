"""The engine's step logic against the fake backend (a fake clock: every test runs in well under a second of
waiting): outcomes, the evidence loop, requests, and a kill after every single backend call and state write,
each followed by status/abort and by resume."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from rollout import aliases, engine, ledger, runstate, strategy, summary
from tests.rollout.fake_backend import (
    FakeBackend,
    FakeClock,
    Killed,
    Traffic,
    failing_staging,
    passing_staging,
)
from tests.trained_registry import build_registry

FAST = {"analysis": {"window": "60s", "max_window": "180s", "interval": "10s"}, "drain": "1s"}


@pytest.fixture
def tmp_path():
    """On tmpfs where there is one: the engine fsyncs every state write, which a loaded disk makes slow."""
    shm = Path("/dev/shm")
    path = Path(tempfile.mkdtemp(prefix="chiops-engine-", dir=shm if shm.is_dir() else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry") / "registry"
    return build_registry(root, versions=((0, 1), (1, 1)), aliases={"production": "v1"})


@pytest.fixture
def registry(tmp_path, registry_template):
    return str(shutil.copytree(registry_template, tmp_path / "registry"))


class Rig:
    def __init__(
        self, tmp_path, registry, production="v1", overrides=None, staging=passing_staging, **traffic
    ):
        self.tmp = tmp_path
        self.registry = registry
        self.clock = FakeClock()
        self.backend = FakeBackend(production)
        self.store = runstate.Store(tmp_path / "state")
        self.overrides = strategy.merge(FAST, overrides or {})
        self.staging = staging
        self.traffic = Traffic(self.clock, self.backend, **traffic)
        self.lines: list[str] = []
        self.on_sleep = None

    def engine(self, skip_analysis=False, store=None):
        def sleep(seconds):
            self.clock.sleep(seconds)
            if self.on_sleep:
                self.on_sleep()

        return engine.Engine(
            store or self.store,
            self.backend,
            strategy.load(self.overrides, skip_analysis=skip_analysis),
            self.registry,
            engine.Evidence(self.traffic.measure, self.traffic.series),
            staging_check=self.staging,
            clock=self.clock.time,
            sleep=sleep,
            out=self.lines.append,
            textfile=self.tmp / "textfile" / "rollout.prom",
        )

    def settings(self):
        return {"reports_dir": str(self.tmp / "reports"), "strategy": self.overrides}

    def start(self, version="v2", **kw):
        skip = kw.pop("skip_analysis", False)
        return self.engine(skip).start(version, self.settings(), skip_analysis=skip, **kw)

    def aliases(self):
        return aliases.read(self.registry)["aliases"]


def assert_stable_restored(rig, stable="v1"):
    assert rig.backend.versions == {"production": stable}
    assert rig.backend.weight == 0.0
    assert rig.aliases() == {"staging": None, "canary": None, "production": stable, "previous": None}


def test_good_candidate_goes_through_every_step(tmp_path, registry):
    rig = Rig(tmp_path, registry)
    state = rig.start()
    assert state["status"] == "promoted", rig.lines
    assert rig.backend.weights_seen == [0.0, 0.1, 0.5, 1.0, 0.0]
    assert rig.backend.versions == {"production": "v2"}
    assert rig.aliases() == {"staging": None, "canary": None, "production": "v2", "previous": "v1"}
    stages = [r["stage"] for r in state["records"]]
    assert stages == ["staging", "canary@10%", "canary@50%", "production"]
    assert all(r["passed"] for r in state["records"])
    # the candidate took 100 % before production changed, and production changed before the route went back
    calls = rig.backend.calls
    assert calls.index(("set_split", "v1", "v2", 1.0)) < calls.index(("deploy", "production", "v2"))
    assert calls.index(("deploy", "production", "v2")) < calls.index(("set_split", "v2", "v2", 0.0))
    entries = ledger.Ledger(rig.store.ledger_path).verify()
    events = [e["event"] for e in entries]
    assert events[0] == "start" and events[-1] == "finish"
    weight_entries = [e["changes"]["canary_weight"][1] for e in entries if e["event"] == "weight"]
    assert weight_entries == [0.1, 0.5, 1.0, 0.0]
    assert all(e["commit"] for e in entries if e["event"] in ("weight", "deploy"))
    report = json.loads((tmp_path / "reports" / state["id"] / "rollout.json").read_text())
    assert report["outcome"] == "promoted" and len(report["stages"]) == 4
    assert 'stage="promoted"} 1' in (tmp_path / "textfile" / "rollout.prom").read_text()


def test_erroring_candidate_is_rolled_back_at_the_first_step(tmp_path, registry):
    rig = Rig(tmp_path, registry, candidate_error_rate=0.2)
    state = rig.start()
    assert state["status"] == "rolled_back"
    assert "gate failed: canary at 10%" in state["reason"] and "error_rate" in state["reason"]
    assert rig.backend.weights_seen == [0.0, 0.1, 0.0]
    assert_stable_restored(rig)
    assert state["records"][-1]["verdict"] == "fail"


def test_inconclusive_extends_the_window_to_its_cap_then_rolls_back(tmp_path, registry):
    rig = Rig(tmp_path, registry, rate=1.0)  # 0.05 requests/s at the canary: never enough evidence
    state = rig.start()
    assert state["status"] == "rolled_back"
    assert "still inconclusive at the 180 s cap" in state["reason"]
    record = state["records"][-1]
    assert record["verdict"] == "inconclusive"
    assert record["window_end"] - record["window_start"] >= 180
    assert any("window extended" in line for line in rig.lines)
    assert_stable_restored(rig)


def test_inconclusive_then_enough_evidence_passes_within_the_cap(tmp_path, registry):
    # With no 5xx the error-rate gate needs a few hundred canary requests to pass: at 3 requests/s (60 x 5 %)
    # the 60 s window is inconclusive and an extension within the 180 s cap passes.
    steps = [{"weight": 0.05}, {"analysis": {}}, {"weight": 1.0}]
    rig = Rig(tmp_path, registry, overrides={"steps": steps}, rate=60.0)
    state = rig.start()
    assert state["status"] == "promoted", state["reason"]
    first = state["records"][1]
    assert first["mode"] == "verdict"
    assert 60 < first["window_end"] - first["window_start"] <= 180


def test_a_guard_step_goes_on_once_nothing_fails_where_a_verdict_would_wait(tmp_path, registry):
    # The shipped first step guards at 10 %: at 6 requests/s the canary has its minimums (100 requests and
    # 100 feedback) well before the 60 s window, but too few requests for the error-rate gate to pass.
    rig = Rig(tmp_path, registry, rate=60.0)
    state = rig.start()
    assert state["status"] == "promoted", state["reason"]
    guard, verdict = state["records"][1], state["records"][2]
    assert (guard["stage"], guard["mode"], guard["verdict"]) == ("canary@10%", "guard", "pass")
    assert guard["window_end"] - guard["window_start"] == 60
    error_rate = next(g for g in guard["checks"] if g["name"] == "error_rate")
    assert error_rate["verdict"] == "inconclusive" and error_rate["enough_data"]
    assert any("guard at 10% passed after 60 s: no gate shows the candidate worse" in x for x in rig.lines)
    assert (verdict["stage"], verdict["mode"], verdict["verdict"]) == ("canary@50%", "verdict", "pass")
    assert all(g["verdict"] == "pass" for g in verdict["checks"])
    markdown = (tmp_path / "reports" / state["id"] / "rollout.md").read_text()
    assert "| canary@10% (guard) | error_rate | INCONCLUSIVE |" in markdown
    assert "| canary@50% | error_rate | pass |" in markdown
    report = json.loads((tmp_path / "reports" / state["id"] / "rollout.json").read_text())
    results = {(row[1], row[2]): row[-1] for row in summary.rows(report)}
    assert results[("canary@10% (guard)", "error_rate")] == "INCONCLUSIVE"
    assert results[("canary@50%", "error_rate")] == "pass"


def test_first_model_runs_staging_then_production_without_a_split(tmp_path, registry):
    aliases.move(registry, {"production": None}, "test: empty production")
    rig = Rig(tmp_path, registry, production=None)
    state = rig.start("v1")
    assert state["status"] == "promoted"
    assert "first production model" in state["reason"]
    assert not [c for c in rig.backend.calls if c[0] == "set_split"]
    assert rig.backend.versions == {"production": "v1"}
    assert rig.aliases()["production"] == "v1"


def test_failed_staging_never_reaches_the_canary(tmp_path, registry):
    rig = Rig(tmp_path, registry, staging=failing_staging)
    state = rig.start()
    assert state["status"] == "rolled_back" and "staging" in state["reason"]
    assert not [c for c in rig.backend.calls if c[:2] == ("deploy", "canary")]
    assert_stable_restored(rig)


def test_staging_target_stops_after_staging(tmp_path, registry):
    rig = Rig(tmp_path, registry, overrides={"target": "staging"})
    state = rig.start()
    assert state["status"] == "staged"
    assert rig.backend.versions == {"production": "v1", "staging": "v2"}
    assert rig.aliases()["production"] == "v1" and rig.aliases()["staging"] == "v2"


def test_skip_analysis_is_recorded_everywhere(tmp_path, registry):
    rig = Rig(tmp_path, registry, candidate_error_rate=0.5)  # would fail any analysis
    state = rig.start(skip_analysis=True)
    assert state["status"] == "promoted" and state["skip_analysis"] is True
    assert "--skip-analysis" in state["reason"]
    start = ledger.Ledger(rig.store.ledger_path).verify()[0]
    assert start["evidence"]["skip_analysis"] is True and "--skip-analysis" in start["reason"]
    report = json.loads((tmp_path / "reports" / state["id"] / "rollout.json").read_text())
    assert report["skip_analysis"] is True


def test_backend_failure_rolls_back(tmp_path, registry):
    rig = Rig(tmp_path, registry)
    rig.backend.fail_on = "wait_split"
    with pytest.raises(Exception, match="fake failure"):
        rig.start()  # the rollback's own wait_split fails too: the state says rolling_back
    assert rig.store.load()["status"] == "rolling_back"
    rig.backend.fail_on = None
    state = rig.engine().abort("operator retry")
    assert state["status"] == "rolled_back"
    assert_stable_restored(rig)


def test_pause_until_promoted_holds_then_a_promote_request_continues(tmp_path, registry):
    overrides = {"steps": [{"weight": 0.1}, {"analysis": {}}, {"pause": None}, {"weight": 1.0}]}
    rig = Rig(tmp_path, registry, overrides=overrides)
    sleeps = []

    def operator():
        sleeps.append(rig.clock.now)
        if len(sleeps) == 400:  # long after the analysis: the controller is holding in the pause
            assert rig.store.load()["step"] == 4  # 0-based: staging, canary, weight, analysis, pause
            rig.store.request("promote", "operator")

    rig.on_sleep = operator
    state = rig.start()
    assert state["status"] == "promoted"
    assert len(sleeps) >= 400
    reasons = [e["reason"] for e in ledger.Ledger(rig.store.ledger_path).verify()]
    assert "pause ended by promote from operator" in reasons


def test_pause_request_holds_at_the_step_boundary_and_resume_request_continues(tmp_path, registry):
    rig = Rig(tmp_path, registry)
    seen = {"paused_at": None, "n": 0}

    def operator():
        seen["n"] += 1
        state = rig.store.load()
        if seen["n"] == 3:
            rig.store.request("pause", "operator")
        if state["status"] == "paused" and seen["paused_at"] is None:
            seen["paused_at"] = (state["step"], rig.backend.weight)
        if seen["paused_at"] and seen["n"] == 300:
            rig.store.request("resume", "operator")

    rig.on_sleep = operator
    state = rig.start()
    assert state["status"] == "promoted"
    _step, weight = seen["paused_at"]
    assert weight == 0.1  # held at the step reached, no further


def test_promote_full_skips_the_remaining_steps_and_says_so(tmp_path, registry):
    rig = Rig(tmp_path, registry)
    rig.on_sleep = lambda: (
        rig.store.request("promote_full", "operator") if rig.backend.weight == 0.1 else None
    )
    state = rig.start()
    assert state["status"] == "promoted"
    assert 0.5 not in rig.backend.weights_seen
    skip = [e for e in ledger.Ledger(rig.store.ledger_path).verify() if e["event"] == "skip"]
    assert skip and "promote --full by operator" in skip[0]["reason"]


def test_abort_request_rolls_back_the_running_controller(tmp_path, registry):
    rig = Rig(tmp_path, registry)
    rig.on_sleep = lambda: rig.store.request("abort", "operator") if rig.backend.weight == 0.5 else None
    state = rig.start()
    assert state["status"] == "rolled_back" and "aborted" in state["reason"]
    assert_stable_restored(rig)


def test_one_controller_per_rollout(tmp_path, registry):
    rig = Rig(tmp_path, registry)
    rig.store.acquire()
    other = runstate.Store(rig.store.dir)
    assert other.controller_alive()
    with pytest.raises(runstate.Busy):
        rig.engine(store=other).start("v2", rig.settings())
    rig.store.release()
    assert not other.controller_alive()


def test_a_second_start_is_refused_while_one_is_active(tmp_path, registry):
    rig = Rig(tmp_path, registry)
    rig.backend.kill_at = 5
    with pytest.raises(Killed):
        rig.start()
    with pytest.raises(engine.Refused, match=r"resume.*abort"):
        rig.start()


def _full_run_calls(tmp_path, registry) -> int:
    rig = Rig(tmp_path / "reference", registry)
    (tmp_path / "reference").mkdir()
    assert rig.start()["status"] == "promoted"
    return len(rig.backend.calls)


def _killed_rig(tmp_path, registry_template, k, name):
    where = tmp_path / f"{name}{k}"
    where.mkdir()
    reg = str(shutil.copytree(registry_template, where / "registry"))
    rig = Rig(where, reg)
    rig.backend.kill_at = k
    with pytest.raises(Killed):
        rig.start()
    rig.backend.kill_at = None
    return rig


def test_killed_after_every_backend_call_then_abort_restores_stable(tmp_path, registry, registry_template):
    total = _full_run_calls(tmp_path, registry)
    assert total == 16  # staging 3, canary deploy 2, two steps 4, promotion 7
    for k in range(1, total + 1):
        rig = _killed_rig(tmp_path, registry_template, k, "abort")
        state = rig.store.load()
        assert state["status"] == "running"
        assert not rig.store.controller_alive()  # the dead controller left no lock
        # a half state would be weight > 0 without a canary, or a weight the strategy does not have
        assert rig.backend.weight in (0.0, 0.1, 0.5, 1.0)
        rig.backend.check_invariants()
        # the state names every weight the route may be at
        assert rig.backend.weight in (state["weight"], state["weight_pending"])
        final = rig.engine().abort("test")
        assert final["status"] == "rolled_back", (k, final["reason"])
        assert_stable_restored(rig)
        ledger.Ledger(rig.store.ledger_path).verify()


def test_killed_after_every_backend_call_then_resume_finishes(tmp_path, registry, registry_template):
    total = _full_run_calls(tmp_path, registry)
    for k in range(1, total + 1):
        rig = _killed_rig(tmp_path, registry_template, k, "resume")
        final = rig.engine().resume()
        assert final["status"] == "promoted", (k, final["reason"])
        assert rig.backend.versions == {"production": "v2"} and rig.backend.weight == 0.0
        assert rig.aliases() == {"staging": None, "canary": None, "production": "v2", "previous": "v1"}


class KillingStore(runstate.Store):
    """Dies right before (odd n) or right after (even n) the n-th state write."""

    def __init__(self, directory, n):
        super().__init__(directory)
        self.n, self.saves = n, 0

    def save(self, state):
        self.saves += 1
        if self.saves * 2 - 1 == self.n:
            raise Killed("before write")
        super().save(state)
        if self.saves * 2 == self.n:
            raise Killed("after write")


def test_killed_around_every_state_write_then_abort_or_resume(tmp_path, registry_template):
    for n in range(1, 200):
        where = tmp_path / f"save{n}"
        where.mkdir()
        reg = str(shutil.copytree(registry_template, where / "registry"))
        rig = Rig(where, reg)
        try:
            state = rig.engine(store=KillingStore(rig.store.dir, n)).start("v2", rig.settings())
        except Killed:
            pass
        else:
            assert state["status"] == "promoted"
            assert n > 50
            break
        rig.backend.check_invariants()
        saved = rig.store.load()
        if saved is None:  # killed before the first write: nothing happened
            assert rig.backend.calls == []
            continue
        if saved["status"] == "promoted":  # killed after its last transition (the report)
            assert rig.backend.versions == {"production": "v2"} and rig.backend.weight == 0.0
            continue
        if n % 4 in (0, 1):
            assert rig.engine().abort("test")["status"] == "rolled_back"
            assert_stable_restored(rig)
        else:
            assert rig.engine().resume()["status"] == "promoted"
            assert rig.backend.versions == {"production": "v2"} and rig.backend.weight == 0.0
    else:
        pytest.fail("the rollout never completed within 200 kill points")


@pytest.mark.parametrize(
    ("analysis", "message"),
    [
        ({"mode": "guard"}, "the last analysis before the promotion is a guard"),
        ({"mode": "sometimes"}, "mode must be one of verdict, guard"),
        ({"windw": "60s"}, "unknown analysis setting(s): windw"),
    ],
)
def test_a_strategy_that_a_guard_would_promote_or_that_misspells_is_refused(analysis, message):
    steps = [{"weight": 0.1}, {"analysis": analysis}, {"weight": 1.0}]
    with pytest.raises(strategy.StrategyError) as info:
        strategy.load({"steps": steps})
    assert message in str(info.value)
    # a guard before a verdict is the shipped shape
    guarded = [{"weight": 0.1}, {"analysis": analysis}, {"weight": 0.5}, {"analysis": {}}, {"weight": 1.0}]
    if analysis == {"mode": "guard"}:
        assert [a.mode for a in strategy.load({"steps": guarded}).analyses] == ["guard", "verdict"]
