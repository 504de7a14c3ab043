"""What is recorded about a run: provenance (where each output came from), lineage (the
inputs a model version rests on, and their hashes), certificates, and the deletion-request
inbox.

Imports from config, data, model, scoring, unlearning and attack.
"""
