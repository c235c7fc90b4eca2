"""A rollout strategy as data, with its defaults in this one place; an inventory's `rollout_strategy`
overrides only what it changes (inventories/<env>/group_vars/all/rollout.yml).

A strategy is a list of steps after the staging checks:
    {weight: 0.05}                       public route: 5 % of /predict to the canary
    {analysis: {window: 90s, ...}}       gates over a window at the current weight (extended while
                                         inconclusive); every gate must pass (mode: verdict)
    {analysis: {mode: guard}}            stops a candidate the data show worse, else goes on once each
                                         side has its minimum evidence; the last analysis is a verdict
    {pause: 30s} / {pause: null}         hold for a duration / until `rollout promote`
    {weight: 1.0}                        the last step: production serves the candidate (promotion)
`compile_plan` turns it into the concrete, numbered actions the engine runs and `plan` prints.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from rollout import gates

TARGETS = ("production", "staging")
MODES = ("verdict", "guard")

DEFAULTS: dict[str, Any] = {
    # production: staging checks → canary steps → production; staging: the staging checks only, nothing
    # promoted.
    "target": "production",
    # A small first weight guards (stops a candidate shown worse); the half-traffic step judges. Sized by
    # bench/bench_gates.py at 10 /predict requests/s (docs/rollout.md, "How often they are wrong").
    "steps": [
        {"weight": 0.1},
        {"analysis": {"mode": "guard"}},
        {"weight": 0.5},
        {"analysis": {"max_window": "900s"}},
        {"weight": 1.0},
    ],
    # Defaults of every analysis step (a step's own mapping overrides them).
    "analysis": {"window": "90s", "max_window": "300s", "interval": "15s", "mode": "verdict"},
    # rollout.gates.Thresholds fields; unset ones keep the gate module's defaults.
    "thresholds": {},
    "staging": {
        "slo_p99_ms": 500.0,
        "min_accuracy": 0.5,
        "card_tolerance": 0.01,
        "load_seconds": 10.0,
        "concurrency": 4,
        # Champion/challenger: how far below production's accuracy on the candidate's test split it may be.
        "champion_tolerance": 0.01,
    },
    # Seconds between the route reporting weight 0 and removing the canary (requests in flight finish).
    "drain": "3s",
    "serving_timeout": "600s",
    "split_timeout": "120s",
}

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class StrategyError(ValueError):
    """The strategy (defaults + inventory overrides) is not one the engine runs (exit 2)."""


def seconds(value: Any, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise StrategyError(f"{what}: {value!r} is not a duration such as 90s, 2m or 30")
        number = float(match.group(1)) * _UNIT[match.group(2)]
    if number < 0:
        raise StrategyError(f"{what}: {value!r} is negative")
    return number


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; lists (steps) and scalars replace."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclasses.dataclass(frozen=True)
class Action:
    """One numbered thing the engine does; `kind` is staging|canary_deploy|weight|analysis|pause|promote."""

    kind: str
    label: str
    weight: float = 0.0
    window_s: float = 0.0
    max_window_s: float = 0.0
    interval_s: float = 0.0
    pause_s: float | None = None
    mode: str = "verdict"  # analysis only: verdict (every gate passes) or guard (none fails)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Action:
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Strategy:
    target: str
    actions: tuple[Action, ...]
    thresholds: gates.Thresholds
    staging: Mapping[str, float]
    drain_s: float
    serving_timeout_s: float
    split_timeout_s: float
    raw: Mapping[str, Any]

    @property
    def analyses(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == "analysis")


def _step(raw: Any, index: int) -> tuple[str, Any]:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise StrategyError(f"steps[{index}]: {raw!r} must be a mapping with one of weight, analysis, pause")
    ((kind, value),) = raw.items()
    if kind not in ("weight", "analysis", "pause"):
        raise StrategyError(f"steps[{index}]: unknown step {kind!r}; one of weight, analysis, pause")
    return kind, value


def load(overrides: Mapping[str, Any] | None = None, skip_analysis: bool = False) -> Strategy:
    """Defaults + overrides → a validated Strategy. `skip_analysis` drops the analysis steps (recorded by the
    engine); without it, a strategy whose canary weights are not each followed by an analysis is refused."""
    raw = merge(DEFAULTS, overrides or {})
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise StrategyError(f"unknown strategy key(s): {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    if raw["target"] not in TARGETS:
        raise StrategyError(f"target must be one of {', '.join(TARGETS)}, got {raw['target']!r}")
    try:
        thresholds = gates.Thresholds.from_mapping(raw["thresholds"] or {})
    except ValueError as exc:
        raise StrategyError(str(exc)) from None
    staging = dict(raw["staging"])
    unknown = sorted(set(staging) - set(DEFAULTS["staging"]))
    if unknown:
        raise StrategyError(f"unknown staging setting(s): {', '.join(unknown)}")
    analysis_defaults = dict(raw["analysis"])

    actions: list[Action] = [Action("staging", "staging checks (smoke, offline evaluation, load test)")]
    if raw["target"] == "production":
        actions += _canary_actions(raw["steps"], analysis_defaults, skip_analysis)
    return Strategy(
        target=raw["target"],
        actions=tuple(actions),
        thresholds=thresholds,
        staging=staging,
        drain_s=seconds(raw["drain"], "drain"),
        serving_timeout_s=seconds(raw["serving_timeout"], "serving_timeout"),
        split_timeout_s=seconds(raw["split_timeout"], "split_timeout"),
        raw=raw,
    )


def _canary_actions(steps: Any, analysis_defaults: Mapping[str, Any], skip_analysis: bool) -> list[Action]:
    if not isinstance(steps, list) or not steps:
        raise StrategyError("steps must be a non-empty list ending with {weight: 1.0}")
    actions = [Action("canary_deploy", "deploy the candidate as the canary (no traffic yet)")]
    weight, analysed = 0.0, True
    for index, raw in enumerate(steps):
        kind, value = _step(raw, index)
        if kind == "weight":
            try:
                new = float(value)
            except (TypeError, ValueError):
                raise StrategyError(f"steps[{index}]: weight {value!r} is not a number") from None
            if not weight < new <= 1.0:
                raise StrategyError(
                    f"steps[{index}]: weights must increase within (0, 1]: {new} after {weight}"
                )
            if weight > 0 and not analysed and not skip_analysis:
                raise StrategyError(
                    f"steps[{index}]: weight {new} follows weight {weight} without an analysis step: "
                    "no traffic increase without gates (use --skip-analysis to run one deliberately)"
                )
            if new == 1.0:
                if index != len(steps) - 1:
                    raise StrategyError(f"steps[{index}]: weight 1.0 (promotion) must be the last step")
                if weight == 0:
                    raise StrategyError("steps: no canary weight below 1.0 before promotion")
                actions.append(Action("promote", "promote: production serves the candidate", weight=1.0))
            else:
                actions.append(Action("weight", f"set the canary weight to {new:g}", weight=new))
            weight, analysed = new, False
        elif kind == "analysis":
            if weight == 0:
                raise StrategyError(f"steps[{index}]: analysis before any canary weight has nothing to judge")
            settings = merge(analysis_defaults, value or {})
            unknown = sorted(set(settings) - set(DEFAULTS["analysis"]))
            if unknown:
                raise StrategyError(f"steps[{index}]: unknown analysis setting(s): {', '.join(unknown)}")
            mode = settings["mode"]
            if mode not in MODES:
                raise StrategyError(f"steps[{index}]: mode must be one of {', '.join(MODES)}, got {mode!r}")
            window = seconds(settings["window"], f"steps[{index}].window")
            cap = seconds(settings["max_window"], f"steps[{index}].max_window")
            interval = seconds(settings["interval"], f"steps[{index}].interval")
            if cap < window or interval <= 0:
                raise StrategyError(f"steps[{index}]: need max_window >= window and interval > 0")
            analysed = True
            if skip_analysis:
                continue
            label = (
                f"analysis at weight {weight:g}: gates over {window:g} s (up to {cap:g} s while inconclusive)"
                if mode == "verdict"
                else f"guard at weight {weight:g}: stop if a gate fails over {window:g} s (up to {cap:g} s "
                "until each side has its minimum evidence)"
            )
            actions.append(
                Action(
                    "analysis",
                    label,
                    weight=weight,
                    window_s=window,
                    max_window_s=cap,
                    interval_s=interval,
                    mode=mode,
                )
            )
        else:
            pause = None if value in (None, "", "until_promoted") else seconds(value, f"steps[{index}].pause")
            label = "pause until `rollout promote`" if pause is None else f"pause {pause:g} s"
            actions.append(Action("pause", label, weight=weight, pause_s=pause))
    if weight != 1.0:
        raise StrategyError("steps must end with {weight: 1.0}: a rollout ends promoted or rolled back")
    analyses = [a for a in actions if a.kind == "analysis"]
    if not skip_analysis and not analyses:
        raise StrategyError("no analysis step: nothing would gate the promotion")
    if analyses and analyses[-1].mode != "verdict":
        raise StrategyError(
            "the last analysis before the promotion is a guard: a guard only stops a candidate shown worse, "
            "so nothing would show this one good (make it mode: verdict)"
        )
    return actions
