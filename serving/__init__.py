"""ChiOps model serving on Ray Serve.

Modules that only route or validate (router, ingress, schema, tokens, split, metric_names, config) never
import torch; only ``serving.predictor`` and ``serving.model`` do, so a router replica stays small.
"""
