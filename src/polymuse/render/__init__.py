"""Turning an `AnalysisReport` into files people and MIR tools read."""
