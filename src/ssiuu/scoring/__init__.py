"""Scores of one model on facts: exact match, multiple choice, log-prob, membership
inference (Min-K%), and scores relative to a reference (recovery, oracle gap, privleak).

Below unlearning, whose stop scores the model it trains. Imports from config, data and model.
"""
