"""Deterministic weighted split between the stable and the canary model.

A smooth counter instead of random draws: after n requests the canary has had round-down(n * weight) of them,
so the observed share equals the weight from the first requests on and a test of the split cannot flake.
"""

import threading

STABLE = "stable"
CANARY = "canary"


def check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"canary_weight must be a number between 0.0 and 1.0, got {weight!r}")
    return float(weight)


class WeightedSplitter:
    def __init__(self, weight: float = 0.0):
        self._lock = threading.Lock()
        self._weight = check_weight(weight)
        self._count = 0

    @property
    def weight(self) -> float:
        return self._weight

    def set_weight(self, weight: float) -> None:
        with self._lock:
            self._weight = check_weight(weight)
            self._count = 0

    def choose(self) -> str:
        with self._lock:
            n = self._count
            self._count += 1
            # The canary takes request n when the running total floor(n * w) steps up.
            stepped = int((n + 1) * self._weight) > int(n * self._weight)
        return CANARY if stepped else STABLE
