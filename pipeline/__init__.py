"""The continuous-training pipeline: when to retrain (policy.py) and the lease it must fit in (lease.py)."""
