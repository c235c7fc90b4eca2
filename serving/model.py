"""Model deployment: one registry version per replica, concurrent requests batched with @serve.batch."""

import logging

import numpy as np
from ray import serve

logger = logging.getLogger("ray.serve")


def drift_metrics(registry: str, version: str, environment: str):
    """The version's input-drift metrics, or None (logged) when it has no test split to compare with."""
    from model_registry import Registry
    from serving.drift import InkProfile
    from serving.metrics import DriftMetrics

    try:
        profile = InkProfile.of(Registry(registry).test_split(version)[0])
    except Exception as exc:  # a version registered without its test split still serves
        logger.warning("no input-drift reference for %s (%s): drift is not measured", version, exc)
        return None
    return DriftMetrics(environment, version, profile)


class BatchedModel:
    """A registry version behind @serve.batch; runs in the Classifier replica or, fused, in the ingress."""

    def __init__(
        self,
        registry: str,
        version: str,
        max_batch_size: int = 16,
        batch_wait_timeout_s: float = 0.002,
        threads: int = 1,
        environment: str | None = None,
    ):
        from serving.predictor import Predictor  # torch is imported here, where the model runs, only

        self._predictor = Predictor(registry, version, threads=threads)
        self._predictor.warm_up(max_batch_size)
        # Counted where the model runs: every image this version predicts, whichever route it came by.
        self._drift = drift_metrics(registry, self._predictor.version, environment) if environment else None
        self._infer.set_max_batch_size(max_batch_size)
        self._infer.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _infer(self, requests: list[np.ndarray]) -> list[tuple[list[int], list[float]]]:
        sizes = [len(r) for r in requests]
        classes, confidences = self._predictor.predict(np.concatenate(requests))
        out, start = [], 0
        for n in sizes:
            out.append((classes[start : start + n], confidences[start : start + n]))
            start += n
        return out

    async def predict(self, images: np.ndarray) -> dict:
        classes, confidences = await self._infer(images)
        if self._drift is not None:
            self._drift.observed(images)
        return {"model_version": self._predictor.version, "classes": classes, "confidences": confidences}

    async def info(self) -> dict:
        return {"model_version": self._predictor.version, "card": self._predictor.summary}


@serve.deployment
class Classifier(BatchedModel):
    """The model as its own deployment: scales apart from HTTP handling, keeps torch out of the ingress."""
