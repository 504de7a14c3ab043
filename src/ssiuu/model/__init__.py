"""Models: loading (scratch, local, package, hub), the architecture's parts, the training
loop and fine-tuning, LoRA adapters, per-token log-probs, data-parallel shards, threads
and offline settings, stage timing.

Imports from :mod:`ssiuu.config` and :mod:`ssiuu.data`.
"""
