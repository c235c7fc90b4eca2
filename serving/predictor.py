"""The TorchScript model of one registry version, wrapped for batch prediction (no Ray here)."""

import io

import numpy as np
import torch

from model_registry import Registry, card_summary


def pick_device() -> str:
    """The GPU when torch sees one (PyTorch's ROCm build reports AMD GPUs through torch.cuda), else the
    CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class Predictor:
    def __init__(self, registry_root: str, ref: str, threads: int = 1):
        registry = Registry(registry_root)
        self.version = registry.require(ref)
        self.card = registry.card(self.version)
        self.summary = card_summary(self.card)
        # One thread per replica: on a small node several replicas share the cores, and intra-op threads
        # of a tiny CNN cost more in contention than they win.
        torch.set_num_threads(threads)
        self.device = pick_device()
        self.model = torch.jit.load(io.BytesIO(registry.model_bytes(self.version)), map_location=self.device)
        self.model.eval()
        # Fail at replica start, not at the first request, if the model cannot run our input shape.
        self.predict(np.zeros((1, 8, 8), dtype=np.float32))

    def warm_up(self, max_batch: int) -> None:
        """Run every batch size up to max_batch twice before the replica takes traffic. TorchScript's
        profiling executor optimises the graph anew for each new input shape until its specialisation budget
        is spent; unwarmed, a new canary's first real batches took 0.1-1 s each (30 of its first 258 requests
        over 500 ms in tests/rollout/test_gates_live.py, 2026-12-02), enough for the latency SLO gate to fail
        a good model."""
        for n in range(1, max_batch + 1):
            for _ in range(2):
                try:
                    self.predict(np.zeros((n, 8, 8), dtype=np.float32))
                except Exception:
                    # Best effort: the start check already proved the model runs. One that fails some of its
                    # batches must still start, so that the canary's gates judge it on live traffic.
                    return

    def predict(self, images: np.ndarray) -> tuple[list[int], list[float]]:
        """images (N, 8, 8) or (N, 64) float32 in 0..16 → (classes, probability of each class)."""
        x = (
            torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
            .reshape(-1, 1, 8, 8)
            .to(self.device)
        )
        with torch.inference_mode():
            probs = torch.softmax(self.model(x), dim=1)
            confidence, classes = (t.cpu() for t in probs.max(dim=1))
        return classes.tolist(), confidence.tolist()
