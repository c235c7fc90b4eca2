"""How often the canary gates decide wrongly at the shipped defaults, over simulated traffic.

Runs a strategy's analysis steps as the engine does (rollout/engine.py): the shipped default strategy
(rollout.strategy.DEFAULTS, with rollout.gates.Thresholds()) and the demo's (demo_strategy, read from
inventories/local), each step judged by the real rollout.gates.decide (and gates.guard for a guard step).
Traffic is seeded and simulated, shaped like the demo's: a load generator sends `rps` /predict requests a
second of `batch` images, the router sends each to the canary with the step's weight, each request gets a
status (5xx with the model's error rate) and a latency (log-normal), each image of an answered request a
prediction (correct with the model's accuracy) and a feedback `feedback_delay_s` later. Prometheus sees the
counters as of its last scrape, latencies bucketed exactly like the service's histogram
(serving/metric_names.LATENCY_BOUNDARIES_MS, `le` inclusive).

Each step's evidence starts when its weight applies. The step decides at its window, then every interval
while undecided; still undecided at its cap, the rollout is rolled back. The candidate is promoted when every
step passes.

    PYTHONPATH=. python bench/bench_gates.py [--trials 1000] [--seed 1] [--only TEXT]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import pathlib
import re
import sys
import time

import numpy as np
import yaml

from rollout import gates, strategy
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
    batch: int = 2
    feedback_delay_s: float = 2.0
    scrape_s: float = 5.0


def looks(action: strategy.Action) -> list[float]:
    """When the engine decides: at the window, then every interval up to the cap."""
    times, at = [], action.window_s
    while at <= action.max_window_s + 1e-9:
        times.append(at)
        at += action.interval_s
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


@dataclasses.dataclass(frozen=True)
class Outcome:
    verdict: str  # pass (promoted) | fail | inconclusive (rolled back at a step's cap)
    step: int  # index of the analysis step that decided against it (-1 when promoted)
    seconds: float  # from the first weight to the end of the last step run
    open_gates: tuple[str, ...]  # gates still undecided when a step's cap rolled it back


def run_step(
    rng: np.random.Generator, candidate: Model, stable: Model, traffic: Traffic, action, t: gates.Thresholds
) -> tuple[str, float, tuple[str, ...]]:
    times = np.arange(1, int(action.max_window_s * traffic.rps) + 1) / traffic.rps
    to_canary = rng.random(len(times)) < action.weight
    cand = serve(rng, "canary", "v2", candidate, times[to_canary], traffic.batch)
    stab = serve(rng, "production", "v1", stable, times[~to_canary], traffic.batch)
    decision = None
    for look in looks(action):
        scraped = math.floor(look / traffic.scrape_s) * traffic.scrape_s
        c, s = cand.side(scraped, traffic.feedback_delay_s), stab.side(scraped, traffic.feedback_delay_s)
        decision = gates.decide(c, s, t)
        result = gates.step_verdict(decision, action.mode)
        if result != "inconclusive":
            return result, look, ()
    assert decision is not None
    still_open = tuple(g.name for g in decision.gates if g.verdict == "inconclusive")
    return "inconclusive", action.max_window_s, still_open


def trial(
    rng: np.random.Generator, candidate: Model, stable: Model, traffic: Traffic, strat: strategy.Strategy
) -> Outcome:
    elapsed = 0.0
    for index, action in enumerate(strat.analyses):
        result, took, still_open = run_step(rng, candidate, stable, traffic, action, strat.thresholds)
        elapsed += took
        if result != "pass":
            return Outcome(result, index, elapsed, still_open)
    return Outcome("pass", -1, elapsed, ())


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    candidate: Model
    stable: Model
    traffic: Traffic
    strategy: strategy.Strategy
    target: str  # "rejected<=0.02": failed or rolled back; "pass<=0.05"; "pass>=0.95"; "fail>=0.95"


LOCAL_ROLLOUT = pathlib.Path(__file__).resolve().parents[1] / "inventories/local/group_vars/all/rollout.yml"


def demo_settings(path: pathlib.Path = LOCAL_ROLLOUT) -> tuple[Traffic, strategy.Strategy]:
    """The demo's traffic and strategy, as `make demo` runs them (playbooks/demo.yml)."""
    values = yaml.safe_load(path.read_text())
    traffic = Traffic(
        rps=float(values["demo_traffic_rps"]),
        batch=int(values["demo_traffic_batch"]),
        feedback_delay_s=float(values["demo_feedback_delay"]),
    )
    return traffic, strategy.load(values["demo_strategy"])


BASE = Model()
SHIPPED = strategy.load()  # rollout/strategy.py DEFAULTS, gates.Thresholds()
DEFAULT = Traffic()
DEMO, DEMO_STRATEGY = demo_settings()
DEMO_V1 = Model(error_rate=0.0, accuracy=0.9861)  # digits.yaml (docs/training.md)
DEMO_V2 = Model(error_rate=0.0, accuracy=1.0)  # digits_v2.yaml
DEMO_V3 = Model(error_rate=0.0, accuracy=0.8556)  # digits_noisy.yaml


def cases() -> list[Case]:
    no_5xx = dataclasses.replace(BASE, error_rate=0.0)
    worse = {
        "3x error rate": dataclasses.replace(BASE, error_rate=0.015),
        "2x latency": dataclasses.replace(BASE, latency_median_ms=24.0),
        "accuracy 0.96 vs 0.986": dataclasses.replace(BASE, accuracy=0.96),
    }
    out = [Case("identical, 0.5 % 5xx", BASE, BASE, DEFAULT, SHIPPED, "rejected<=0.02")]
    out += [Case(name, model, BASE, DEFAULT, SHIPPED, "pass<=0.05") for name, model in worse.items()]
    out += [
        Case("identical, no 5xx", no_5xx, no_5xx, DEFAULT, SHIPPED, "rejected<=0.02"),
        Case("demo: identical, no 5xx", no_5xx, no_5xx, DEMO, DEMO_STRATEGY, "rejected<=0.02"),
        Case("demo: v2 (1.000) vs v1 (0.986)", DEMO_V2, DEMO_V1, DEMO, DEMO_STRATEGY, "pass>=0.95"),
        Case("demo: v3 (0.856) vs v2 (1.000)", DEMO_V3, DEMO_V2, DEMO, DEMO_STRATEGY, "fail>=0.95"),
    ]
    return out


def met(target: str, shares: dict[str, float]) -> bool:
    """`rejected` is what the engine does to the candidate: failed, or still inconclusive at a step's cap
    (rolled back); an identical model rolled back for want of evidence is rejected as surely as a failed
    one."""
    verdict, op, bound = re.fullmatch(r"(\w+)(<=|>=)([0-9.]+)", target).groups()
    share = shares["fail"] + shares["inconclusive"] if verdict == "rejected" else shares[verdict]
    return share <= float(bound) if op == "<=" else share >= float(bound)


def run_case(case: Case, trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    verdicts: collections.Counter[str] = collections.Counter()
    stopped_at: collections.Counter[int] = collections.Counter()
    open_gates: collections.Counter[str] = collections.Counter()
    ended_at = []
    for _ in range(trials):
        outcome = trial(rng, case.candidate, case.stable, case.traffic, case.strategy)
        verdicts[outcome.verdict] += 1
        if outcome.step >= 0:
            stopped_at[outcome.step] += 1
        open_gates.update(outcome.open_gates)
        ended_at.append(outcome.seconds)
    shares = {v: verdicts[v] / trials for v in gates.VERDICTS}
    return {
        "case": case.name,
        "shares": shares,
        "target": case.target,
        "met": met(case.target, shares),
        "seconds_p50": float(np.percentile(ended_at, 50)),
        "seconds_p95": float(np.percentile(ended_at, 95)),
        "stopped_at": {step: n / trials for step, n in sorted(stopped_at.items())},
        "open_gates": dict(open_gates),
    }


def describe(strat: strategy.Strategy) -> str:
    return " → ".join(
        f"{a.mode} at {a.weight:g} ({a.window_s:g}-{a.max_window_s:g} s)" for a in strat.analyses
    )


def table(results: list[dict]) -> str:
    head = (
        "| case | promoted | failed | rolled back at a cap | target | met | stopped at step (share) | "
        "s to the end p50 / p95 | gates open at a cap |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        s = r["shares"]
        stopped = ", ".join(f"{step + 1}: {share:.1%}" for step, share in r["stopped_at"].items()) or "-"
        opened = ", ".join(f"{k} {v}" for k, v in sorted(r["open_gates"].items())) or "-"
        lines.append(
            f"| {r['case']} | {s['pass']:.1%} | {s['fail']:.1%} | {s['inconclusive']:.1%} | "
            f"{r['target'].replace('<=', ' ≤ ').replace('>=', ' ≥ ')} | {'yes' if r['met'] else 'NO'} | "
            f"{stopped} | {r['seconds_p50']:.0f} / {r['seconds_p95']:.0f} | {opened} |"
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
    print(f"shipped strategy: {describe(SHIPPED)}; traffic {DEFAULT}")
    print(f"  thresholds: {dataclasses.asdict(SHIPPED.thresholds)}")
    print(f"demo strategy: {describe(DEMO_STRATEGY)}; traffic {DEMO}")
    print(f"  thresholds: {dataclasses.asdict(DEMO_STRATEGY.thresholds)}")
    print(f"base model: {BASE}\n")
    results = []
    for i, case in enumerate(cases()):
        if args.only not in case.name:
            continue
        started = time.monotonic()
        results.append(run_case(case, args.trials, args.seed + i))
        print(f"  {case.name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"{args.trials} seeded trials per case (seed {args.seed}); times from the first canary weight.")
    print(table(results))
    print(f"targets met: {sum(r['met'] for r in results)} of {len(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
