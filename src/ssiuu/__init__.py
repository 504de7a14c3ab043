"""ssiuu: unlearn private facts from a causal language model, attack the result to show
they do not come back, and file a record an auditor can check.

The library is in packages by concern, in the order data flows; a package imports only
from those before it (``tests/test_layers.py`` checks it):

1. :mod:`ssiuu.config`: what can be configured and where things lie (params, layout,
   seeds, the method catalogue, errors).
2. :mod:`ssiuu.data`: facts, requests, loading, splits, validation and input checks.
3. :mod:`ssiuu.model`: loading, the architecture, the training loop, runtime.
4. :mod:`ssiuu.scoring`: scores of a model on facts, membership inference.
5. :mod:`ssiuu.unlearning`: the methods, their objective, attribution, the stop.
6. :mod:`ssiuu.attack`: relearning attacks, paired statistics, λ tuning.
7. :mod:`ssiuu.records`: provenance, lineage, certificates, the request inbox.
8. :mod:`ssiuu.release`: the gate, the version record, the registry, the audit.
9. :mod:`ssiuu.report`: the report's tables, figures and readings.

:mod:`ssiuu.cli` and :mod:`ssiuu.workspace` sit on top and may import any of them.
"""
