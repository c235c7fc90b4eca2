"""How often the canary gates decide wrongly at the shipped defaults, over simulated traffic.

Drives the real rollout.gates.decide with rollout.gates.Thresholds() (the shipped defaults) on seeded
simulated
traffic shaped like the demo's: a load generator sends `rps` /predict requests a second of `batch` images, the
router sends each to the canary with probability `weight`, each request gets a status (5xx with the model's
error rate) and a latency (log-normal), each image of an answered request a prediction (correct with the
model's
accuracy) and a feedback `feedback_delay_s` later. Prometheus sees the counters as of its last scrape,
latencies
bucketed exactly like the service's histogram (serving/metric_names.LATENCY_BOUNDARIES_MS, `le` inclusive).

The engine decides at `window_s`, then every `step_s` while the verdict is inconclusive, and rolls back
when it is
still inconclusive at `max_window_s`. Beyond that cap the simulation keeps looking (every 120 s, up to
`horizon_s`) only to report how much evidence a verdict would have needed.

    PYTHONPATH=. python bench/bench_gates.py [--trials 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import re
import sys
import time

import numpy as np

from rollout import gates
from serving.metric_names import LATENCY_BOUNDARIES_MS

BOUNDS = np.asarray(LATENCY_BOUNDARIES_MS, dtype=float)
CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Model:
    error_rate: float = 0.005
    latency_median_ms: float = 12.0
    latency_sigma: float = 0.5
    accuracy: float = 0.986


@dataclasses.dataclass(frozen=True)
class Traffic:
    rps: float = 10.0
    weight: float = 0.1
    batch: int = 2
    feedback_delay_s: float = 2.0
    scrape_s: float = 5.0
    window_s: float = 90.0
    step_s: float = 15.0
    max_window_s: float = 240.0
    horizon_s: float = 1800.0
    horizon_step_s: float = 120.0

    def looks(self) -> list[float]:
        times, t = [], self.window_s
        while t <= self.max_window_s + 1e-9:
            times.append(t)
            t += self.step_s
        t = times[-1] + self.horizon_step_s
        while t <= self.horizon_s + 1e-9:
            times.append(t)
            t += self.horizon_step_s
        return times


@dataclasses.dataclass
class Served:
    """Every request one side answered over the horizon, in arrival order."""

    environment: str
    version: str
    times: np.ndarray  # request arrival, s
    errors: np.ndarray  # bool per request
    bucket: np.ndarray  # histogram bucket index per request (len(BOUNDS) = +Inf)
    image_times: np.ndarray  # answer time of each predicted image
    predicted: np.ndarray  # predicted class per image
    correct: np.ndarray  # bool per image

    def side(self, at: float, delay: float) -> gates.Side:
        """What Prometheus shows for the window [0, at]: counters as scraped at `at`."""
        n = int(np.searchsorted(self.times, at, side="right"))
        per_bucket = np.bincount(self.bucket[:n], minlength=len(BOUNDS) + 1)
        cumulative = np.cumsum(per_bucket)
        buckets = {float(b): float(c) for b, c in zip(BOUNDS, cumulative[:-1], strict=True)}
        buckets[math.inf] = float(cumulative[-1])
        answered = int(np.searchsorted(self.image_times, at, side="right"))
        with_feedback = int(np.searchsorted(self.image_times, at - delay, side="right"))
        classes = np.bincount(self.predicted[:answered], minlength=CLASSES)
        return gates.Side(
            environment=self.environment,
            model_version=self.version,
            requests=float(n),
            errors=float(self.errors[:n].sum()),
            p99_latency_ms=None,
            feedback=float(with_feedback),
            feedback_correct=float(self.correct[:with_feedback].sum()),
            predictions={str(c): float(v) for c, v in enumerate(classes) if v},
            latency_buckets=buckets,
        )


def serve(
    rng: np.random.Generator, environment: str, version: str, model: Model, times: np.ndarray, batch: int
) -> Served:
    n = len(times)
    errors = rng.random(n) < model.error_rate
    latency = rng.lognormal(math.log(model.latency_median_ms), model.latency_sigma, n)
    # Prometheus' le is inclusive: a request of exactly b ms counts in the bucket with upper bound b.
    bucket = np.searchsorted(BOUNDS, latency, side="left")
    answered = times[~errors]
    image_times = np.repeat(answered, batch)
    truth = rng.integers(0, CLASSES, len(image_times))
    correct = rng.random(len(image_times)) < model.accuracy
    wrong = (truth + rng.integers(1, CLASSES, len(image_times))) % CLASSES
    predicted = np.where(correct, truth, wrong)
    return Served(environment, version, times, errors, bucket, image_times, predicted, correct)


def trial(
    rng: np.random.Generator, candidate: Model, stable: Model, traffic: Traffic, t: gates.Thresholds
) -> tuple[str, float, float, list[str]]:
    """(verdict by the cap, time of the first verdict or inf, canary requests then, gates open at the cap)."""
    times = np.arange(1, int(traffic.horizon_s * traffic.rps) + 1) / traffic.rps
    to_canary = rng.random(len(times)) < traffic.weight
    cand = serve(rng, "canary", "v2", candidate, times[to_canary], traffic.batch)
    stab = serve(rng, "production", "v1", stable, times[~to_canary], traffic.batch)
    open_at_cap: list[str] = []
    for look in traffic.looks():
        scraped = math.floor(look / traffic.scrape_s) * traffic.scrape_s
        c = cand.side(scraped, traffic.feedback_delay_s)
        decision = gates.decide(c, stab.side(scraped, traffic.feedback_delay_s), t)
        if look <= traffic.max_window_s + 1e-9:
            open_at_cap = [g.name for g in decision.gates if g.verdict == "inconclusive"]
        if decision.verdict != "inconclusive":
            by_cap = decision.verdict if look <= traffic.max_window_s + 1e-9 else "inconclusive"
            return by_cap, look, c.requests, [] if by_cap != "inconclusive" else open_at_cap
    return "inconclusive", math.inf, math.inf, open_at_cap


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    candidate: Model
    stable: Model
    traffic: Traffic
    target: str  # "rejected<=0.02": fail + inconclusive at the cap; "pass<=0.05"; "pass>=0.95"; "fail>=0.95"


BASE = Model()
DEFAULT = Traffic()  # rollout_gates.yml: canary_weight 0.1, window 90 s, cap 240 s, watch every 15 s
DEMO = Traffic(weight=0.2, window_s=60.0)  # demo_canary_weight 0.2, demo_analysis_window 60 s
DEMO_V1 = Model(error_rate=0.0, accuracy=0.9861)  # digits.yaml (docs/training.md)
DEMO_V2 = Model(error_rate=0.0, accuracy=1.0)  # digits_v2.yaml
DEMO_V3 = Model(error_rate=0.0, accuracy=0.8556)  # digits_noisy.yaml


def cases() -> list[Case]:
    out = []
    for label, traffic in (("weight 0.1", DEFAULT), ("demo, weight 0.2", DEMO)):
        out += [
            Case(f"identical, 0.5 % 5xx ({label})", BASE, BASE, traffic, "rejected<=0.02"),
            Case(
                f"3x error rate ({label})",
                dataclasses.replace(BASE, error_rate=0.015),
                BASE,
                traffic,
                "pass<=0.05",
            ),
            Case(
                f"2x latency ({label})",
                dataclasses.replace(BASE, latency_median_ms=24.0),
                BASE,
                traffic,
                "pass<=0.05",
            ),
            Case(
                f"accuracy 0.96 vs 0.986 ({label})",
                dataclasses.replace(BASE, accuracy=0.96),
                BASE,
                traffic,
                "pass<=0.05",
            ),
        ]
    no_5xx = dataclasses.replace(BASE, error_rate=0.0)
    out += [
        Case("identical, no 5xx (weight 0.1)", no_5xx, no_5xx, DEFAULT, "rejected<=0.02"),
        Case("demo v2 (1.000) vs v1 (0.986), no 5xx", DEMO_V2, DEMO_V1, DEMO, "pass>=0.95"),
        Case("demo v3 (0.856) vs v2 (1.000), no 5xx", DEMO_V3, DEMO_V2, DEMO, "fail>=0.95"),
    ]
    return out


def met(target: str, shares: dict[str, float]) -> bool:
    """`rejected` is what the engine does to the candidate: failed, or still inconclusive at the cap (rolled
    back); an identical model rolled back for want of evidence is rejected as surely as a failed one."""
    verdict, op, bound = re.fullmatch(r"(\w+)(<=|>=)([0-9.]+)", target).groups()
    share = shares["fail"] + shares["inconclusive"] if verdict == "rejected" else shares[verdict]
    return share <= float(bound) if op == "<=" else share >= float(bound)


def run_case(case: Case, trials: int, seed: int, t: gates.Thresholds) -> dict:
    rng = np.random.default_rng(seed)
    verdicts: collections.Counter[str] = collections.Counter()
    open_gates: collections.Counter[str] = collections.Counter()
    decided_at, requests_at = [], []
    for _ in range(trials):
        verdict, when, requests, still_open = trial(rng, case.candidate, case.stable, case.traffic, t)
        verdicts[verdict] += 1
        open_gates.update(still_open)
        decided_at.append(when)
        requests_at.append(requests)
    shares = {v: verdicts[v] / trials for v in gates.VERDICTS}

    def pct(values: list[float], q: float) -> float:
        # "method=lower" keeps an undecided trial (inf) as inf instead of interpolating to nan.
        return float(np.percentile(np.asarray(values), q, method="lower"))

    return {
        "case": case.name,
        "shares": shares,
        "target": case.target,
        "met": met(case.target, shares),
        "verdict_s_p50": pct(decided_at, 50),
        "verdict_s_p95": pct(decided_at, 95),
        "canary_requests_p95": pct(requests_at, 95),
        "open_gates": dict(open_gates),
    }


def _fmt_s(value: float, horizon: float) -> str:
    return f"> {horizon:.0f}" if math.isinf(value) else f"{value:.0f}"


def table(results: list[dict], horizon: float) -> str:
    head = (
        "| case | promoted | failed | inconclusive at cap (rolled back) | target | met | "
        "s to a verdict p50 / p95 | canary requests by then p95 | gates open at cap |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        s = r["shares"]
        p95 = r["canary_requests_p95"]
        needed = _fmt_s(p95, math.inf) if math.isfinite(p95) else "-"
        opened = ", ".join(f"{k} {v}" for k, v in sorted(r["open_gates"].items())) or "-"
        lines.append(
            f"| {r['case']} | {s['pass']:.1%} | {s['fail']:.1%} | {s['inconclusive']:.1%} | "
            f"{r['target'].replace('<=', ' ≤ ').replace('>=', ' ≥ ')} | {'yes' if r['met'] else 'NO'} | "
            f"{_fmt_s(r['verdict_s_p50'], horizon)} / {_fmt_s(r['verdict_s_p95'], horizon)} | "
            f"{needed} | {opened} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = p.parse_args(argv)
    if args.trials < 1:
        print("--trials must be >= 1", file=sys.stderr)
        return 2
    t = gates.Thresholds()
    print(f"Thresholds(): {dataclasses.asdict(t)}")
    print(f"default traffic: {DEFAULT}\ndemo traffic: {DEMO}\nbase model: {BASE}\n")
    results = []
    for i, case in enumerate(cases()):
        if args.only not in case.name:
            continue
        started = time.monotonic()
        results.append(run_case(case, args.trials, args.seed + i, t))
        print(f"  {case.name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"{args.trials} seeded trials per case (seed {args.seed}); times from the canary's start.")
    print(table(results, DEFAULT.horizon_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
