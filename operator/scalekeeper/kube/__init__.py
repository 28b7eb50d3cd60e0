"""Kubernetes access: thin adapters that read and write API objects, no decisions."""
