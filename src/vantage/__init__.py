"""Vantage: reference checkpoint agent, control plane and the signed protocol they share."""

__version__ = "0.1.0"
