"""scalekeeper: keeps every tier of an application sized to its load."""
