"""bench.loadtest: the demo's web tier under locust in the kind cluster, a ramp from 1x to 10x its load,
three runs side by side: web fixed at its minimum replicas, the seed's plain HPA (CPU 70 %, memory 80 %, its
behavior), and a ScalingPolicy with the same HPA and a request-rate floor. Per 10 s interval: p50/p95/p99
latency and failures (locust's own, in the load generator pod), beside the web replicas over time.

  make loadtest                                        # all three runs, out/loadtest.png
  PYTHONPATH=operator .venv/bin/python -m bench.loadtest --short          # a quick rehearsal
  PYTHONPATH=operator .venv/bin/python -m bench.loadtest --capacity 2:20:2  # one pod's capacity, step test
"""
