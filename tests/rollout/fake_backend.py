"""Test doubles for the engine's step-logic unit tests ONLY (the live tests use the real local backend).

FakeBackend keeps what a platform would serve (environment → version, public canary weight) and checks, after
every call, that the public route is never in a half state. `kill_at` makes the N-th call (counted over all
backend calls) die like a SIGKILL right after the platform applied it; Killed is a BaseException, so no
`except Exception` in the engine can swallow it.
"""

from __future__ import annotations

import dataclasses
import math

from rollout.backend import BackendError, Change
from rollout.gates import Side
from serving.metric_names import LATENCY_BOUNDARIES_MS


class Killed(BaseException):
    pass


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeBackend:
    name = "fake"

    def __init__(self, production: str | None, kill_at: int | None = None, fail_on: str | None = None):
        self.versions: dict[str, str] = {"production": production} if production else {}
        self.weight = 0.0
        self.calls: list[tuple] = []
        self.kill_at = kill_at
        self.fail_on = fail_on
        self.weights_seen: list[float] = [0.0]

    def _call(self, *call) -> None:
        self.calls.append(call)
        if self.fail_on and call[0] == self.fail_on:
            raise BackendError(f"fake failure in {call[0]}")

    def _after(self) -> None:
        self.check_invariants()
        if self.kill_at is not None and len(self.calls) == self.kill_at:
            raise Killed(f"killed after call {self.kill_at}: {self.calls[-1]}")

    def check_invariants(self) -> None:
        if self.weight > 0:
            assert "canary" in self.versions, f"weight {self.weight} with no canary: {self.versions}"
            assert "production" in self.versions, "a public split without production"
        assert 0.0 <= self.weight <= 1.0

    def deploy(self, environment, version) -> Change:
        self._call("deploy", environment, version)
        self.versions[environment] = version
        self._after()
        return Change(f"fake deploy {environment}={version}", commit=f"c{len(self.calls):04d}")

    def set_split(self, stable, candidate, weight) -> Change:
        self._call("set_split", stable, candidate, weight)
        if candidate is None and weight:
            raise BackendError("weight without candidate")
        self.versions["production"] = stable
        if candidate is None:
            self.versions.pop("canary", None)
        else:
            self.versions["canary"] = candidate
        self.weight = weight
        self.weights_seen.append(weight)
        self._after()
        return Change(f"fake split {weight}", commit=f"c{len(self.calls):04d}")

    def wait_serving(self, environment, version, timeout_s, progress) -> None:
        self._call("wait_serving", environment, version)
        if self.versions.get(environment) != version:
            raise BackendError(f"{environment} serves {self.versions.get(environment)}, not {version}")
        self._after()

    def wait_split(self, weight, timeout_s, progress) -> None:
        self._call("wait_split", weight)
        if self.weight != weight:
            raise BackendError(f"route at {self.weight}, not {weight}")
        self._after()

    def remove(self, environment) -> Change:
        self._call("remove", environment)
        if environment == "canary" and self.weight > 0:
            raise BackendError("canary still has traffic")
        self.versions.pop(environment, None)
        self._after()
        return Change(f"fake remove {environment}")

    def url(self, environment) -> str:
        return f"http://fake/{environment}"

    def prometheus_url(self) -> str:
        return "http://fake-prometheus"


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    return 0.5 * (1 + math.erf(math.log(x / median) / (sigma * math.sqrt(2))))


@dataclasses.dataclass
class Traffic:
    """Evidence as Prometheus would count it: per side, requests per second x the side's share of the
    route."""

    clock: FakeClock
    backend: FakeBackend
    rate: float = 100.0
    candidate_error_rate: float = 0.0
    candidate_accuracy: float = 1.0
    stable_accuracy: float = 0.986

    def measure(self, env: str, version: str, window: str, now: float) -> Side:
        seconds = float(window.rstrip("s"))
        share = self.backend.weight if env == "canary" else 1 - self.backend.weight
        requests = self.rate * share * seconds
        error_rate = self.candidate_error_rate if env == "canary" else 0.0
        accuracy = self.candidate_accuracy if env == "canary" else self.stable_accuracy
        feedback = requests * 2
        return Side(
            environment=env,
            model_version=version,
            requests=requests,
            errors=round(requests * error_rate),
            p99_latency_ms=40.0,
            feedback=feedback,
            feedback_correct=round(feedback * accuracy),
            predictions={str(c): requests * 2 / 10 for c in range(10)},
            # the same log-normal latency (median 12 ms, sigma 0.5) on both sides
            latency_buckets={
                **{b: requests * _lognormal_cdf(b, 12.0, 0.5) for b in LATENCY_BOUNDARIES_MS},
                math.inf: requests,
            },
        )

    def series(self, env, version, start, end) -> dict:
        return {"error_rate": [], "p99_latency_ms": [], "accuracy": []}


def passing_staging(url, champion_url, registry, version, settings):
    return True, {
        "stage": "staging",
        "passed": True,
        "reasons": [],
        "checks": [{"name": "smoke", "passed": True, "measured": {}, "threshold": {}, "reason": "fake"}],
    }


def failing_staging(url, champion_url, registry, version, settings):
    return False, {
        "stage": "staging",
        "passed": False,
        "reasons": ["offline_eval: fake failure"],
        "checks": [
            {"name": "offline_eval", "passed": False, "measured": {}, "threshold": {}, "reason": "fake"}
        ],
    }
