"""Evaluation of the interest model: ranking protocol and metrics, baselines, dataset adapters, benchmark runners."""
