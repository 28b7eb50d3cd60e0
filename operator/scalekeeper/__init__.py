"""scalekeeper: keeps every tier of an application sized to its load."""

__version__ = "0.1.0"
