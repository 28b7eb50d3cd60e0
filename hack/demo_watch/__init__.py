"""The live part of `make demo` (hack/demo.sh): the demo's ScalingPolicy with shortened windows, the load
program (web's by locust, make loadtest's), a live table of the tiers, of web's latency and of the policy's
Events, a record of every sample, and out/demo.png.

  python -m demo_watch policy [--example FILE] [--namespace demo] [--factor 4]
      the policy to apply, as YAML on stdout (what was shortened: on stderr)
  python -m demo_watch app --demo-image REF --exporter-image REF --redis-image REF [--key-prefix demo:]
      the demo app's objects as YAML: render.py's, with the workers' CPU requests trimmed (why: demo_app)
  python -m demo_watch run --locust-image REF [--namespace demo] [--policy demo] [--out out]
      drive the load, show it live, record every sample, plot
  python -m demo_watch plot [--out out]
      re-draw out/demo.png from the record (out/demo-run.json)

Run with the project's venv (kubernetes, PyYAML, requests, matplotlib and the scalekeeper package) and hack/
and the project root (bench.loadtest reads locust's log) on the path: `PYTHONPATH=hack:. .venv/bin/python -m
demo_watch ...` from the project root. One module a concern: policy, load (the load program), web_load (the
locust pod), app, sampling, table (the live view), plot; cli runs the commands. The pure parts (shortening
the policy, the web ramp's points, parsing Events, the table, the plot) are unit-tested in
tests/unit/test_demo_plot.py; the cluster is only touched by sampling.Cluster, load.LoadProgram,
web_load.WebLoad and `run`.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIER_ORDER = ("web", "worker/video", "worker/emails", "worker/reports", "readReplicas")
