"""Reading metrics: Prometheus access behind one small interface."""
