"""Align3D-AD zero-shot 3D anomaly detection toolkit."""
__version__ = "0.1.0"
