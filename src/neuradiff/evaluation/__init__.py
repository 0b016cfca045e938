"""Scoring fitted methods against known truth: one model against a synthetic dataset
(:mod:`~neuradiff.evaluation.truth`) and the paper suite (:mod:`~neuradiff.evaluation.suite`)."""
