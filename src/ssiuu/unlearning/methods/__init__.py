"""The unlearning losses and regularisers; ``objective`` builds one method's from the
catalogue (:mod:`ssiuu.config.catalog`) and its params."""
