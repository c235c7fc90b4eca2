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


def _growth(metric: str, selector: str, window: str, by: str = "") -> str:
    """How much a counter grew over the window, summed over its series: per series, its value now minus its
    value a window ago.

    Not increase(): that starts at a series' first scrape, so a canary app that appeared during the window
    would lose everything it counted before that scrape. A series absent a window ago counted from 0 then.
    Per series, not sum minus sum: a replica restarted in the window is a new series (Ray labels each
    replica), and subtracting the old replica's total from the new one's would give a number that is neither's
    growth.
    """
    grouping = f" by ({by})" if by else ""
    now = f"{metric}{selector}"
    before = f"{metric}{selector} offset {check_window(window)}"
    # Clamped at 0: a series that reset under the same labels adds no evidence rather than a negative count.
    return f"sum{grouping} (clamp_min({now} - ({before} or {now} * 0), 0))"


def requests(env: str, version: str, window: str) -> str:
    return _growth(m.REQUESTS_TOTAL, _selector(env, version, _PREDICT), window)


def errors(env: str, version: str, window: str) -> str:
    sel = _selector(env, version, f'{_PREDICT},{m.STATUS}=~"5.."')
    return _growth(m.REQUESTS_TOTAL, sel, window)


def latency_buckets(env: str, version: str, window: str) -> str:
    """Cumulative /predict latency histogram over the window, one series per `le` (what the latency gate
    reads)."""
    return _growth(m.REQUEST_LATENCY_MS_BUCKET, _selector(env, version, _PREDICT), window, by="le")


def p99_latency_ms(env: str, version: str, window: str) -> str:
    sel = _selector(env, version, _PREDICT)
    return (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate({m.REQUEST_LATENCY_MS_BUCKET}{sel}[{check_window(window)}])))"
    )


def feedback(env: str, version: str, window: str) -> str:
    return _growth(m.FEEDBACK_TOTAL, _selector(env, version), window)


def feedback_correct(env: str, version: str, window: str) -> str:
    return _growth(m.FEEDBACK_CORRECT_TOTAL, _selector(env, version), window)


def predictions_by_class(env: str, version: str, window: str) -> str:
    return _growth(m.PREDICTIONS_TOTAL, _selector(env, version), window, by=m.PREDICTED_CLASS)


# Series over the window for the report's chart (rate over a short sliding range).
def _rate(metric: str, selector: str, step_range: str) -> str:
    return f"sum (rate({metric}{selector}[{check_window(step_range)}]))"


def error_rate_series(env: str, version: str, step_range: str) -> str:
    errs = _rate(m.REQUESTS_TOTAL, _selector(env, version, f'{_PREDICT},{m.STATUS}=~"5.."'), step_range)
    total = _rate(m.REQUESTS_TOTAL, _selector(env, version, _PREDICT), step_range)
    return f"({errs} or {total} * 0) / {total}"


def p99_series(env: str, version: str, step_range: str) -> str:
    return p99_latency_ms(env, version, step_range)


def accuracy_series(env: str, version: str, step_range: str) -> str:
    correct = _rate(m.FEEDBACK_CORRECT_TOTAL, _selector(env, version), step_range)
    total = _rate(m.FEEDBACK_TOTAL, _selector(env, version), step_range)
    return f"({correct} or {total} * 0) / {total}"
