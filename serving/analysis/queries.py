"""PromQL for the gates, built only from the exported names in serving/metric_names.py."""

from __future__ import annotations

import re

from serving import metric_names as m

_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]*$")


def _selector(environment: str, model_version: str, extra: str = "") -> str:
    for value in (environment, model_version):
        if not _LABEL_VALUE.match(value):
            raise ValueError(f"refusing to put {value!r} into a PromQL label matcher")
    return f'{{{m.ENVIRONMENT}="{environment}",{m.MODEL_VERSION}="{model_version}"{extra}}}'


def check_window(window: str) -> str:
    if not _DURATION.match(window):
        raise ValueError(f"analysis window {window!r} is not a Prometheus duration such as 90s or 2m")
    return window


# Only /predict answers count for error rate and latency: /feedback and probes are not what users wait on.
_PREDICT = f',{m.ROUTE}="/predict"'


def requests(env: str, version: str, window: str) -> str:
    return f"sum(increase({m.REQUESTS_TOTAL}{_selector(env, version, _PREDICT)}[{check_window(window)}]))"


def errors(env: str, version: str, window: str) -> str:
    sel = _selector(env, version, f'{_PREDICT},{m.STATUS}=~"5.."')
    return f"sum(increase({m.REQUESTS_TOTAL}{sel}[{check_window(window)}]))"


def p99_latency_ms(env: str, version: str, window: str) -> str:
    sel = _selector(env, version, _PREDICT)
    return f"histogram_quantile(0.99, sum by (le) (rate({m.REQUEST_LATENCY_MS_BUCKET}{sel}[{check_window(window)}])))"


def feedback(env: str, version: str, window: str) -> str:
    return f"sum(increase({m.FEEDBACK_TOTAL}{_selector(env, version)}[{check_window(window)}]))"


def feedback_correct(env: str, version: str, window: str) -> str:
    return f"sum(increase({m.FEEDBACK_CORRECT_TOTAL}{_selector(env, version)}[{check_window(window)}]))"


def predictions_by_class(env: str, version: str, window: str) -> str:
    sel = _selector(env, version)
    return f"sum by ({m.PREDICTED_CLASS}) (increase({m.PREDICTIONS_TOTAL}{sel}[{check_window(window)}]))"


# Series over the window for the report's chart (rate over a short sliding range).
def error_rate_series(env: str, version: str, step_range: str) -> str:
    return f"({errors(env, version, step_range)} or vector(0)) / {requests(env, version, step_range)}"


def p99_series(env: str, version: str, step_range: str) -> str:
    return p99_latency_ms(env, version, step_range)


def accuracy_series(env: str, version: str, step_range: str) -> str:
    return f"({feedback_correct(env, version, step_range)} or vector(0)) / {feedback(env, version, step_range)}"
