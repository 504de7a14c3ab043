"""Releasing a model version: the gate, the version record filed with it, the MLflow
registry and the audit that checks a registered version against its record.

Imports from any package before it (records included).
"""
