"""After unlearning: relearning attacks, the robustness summary over seeds, paired
statistics between methods, and choosing λ on tuning seeds.

Imports from config, data, model, scoring and unlearning.
"""
