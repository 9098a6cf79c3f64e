"""Poly-Muse: agent-orchestrated music analysis."""

__version__ = "0.1.0"
