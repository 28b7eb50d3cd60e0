"""`scalekeeper simulate`: replay an arrival trace through the engine and a Celery queue model.

  trace     the CSV trace read as a stream, checked row by row, shifted to start at 0;
  workload  the tasks drawn from it (Poisson arrivals within each interval, service times), all at once
            or one at a time: the same tasks either way, for a given seed;
  queue     one worker queue as a discrete-event system: broker, prefetch, slots, pod start and warm
            shutdown;
  rules     the deciders compared: scalekeeper (the policy as written, every intervalSeconds),
            hpa-default (the same sizing, the HPA's default behavior, every 15 s) and keda-style (every
            30 s, on waiting tasks only);
  run       the rules side by side, in step, on the same tasks;
  results   what a run leaves: every task's wait, or only the figures (streamed);
  oracle    a rule that knows the future: the fewest replicas that meet the target wait;
  report    the table, its legend and the plot;
  cli       the command, which refuses bad input in one line.

What only the benchmarks use (a trace replayed with every task kept, for the quality tables and the
demo replay) is bench/replay.py. The names below are what callers (bench/, tests) import.
"""

from __future__ import annotations

from .cli import load_policy, main
from .oracle import OracleRun, oracle_run, replay_schedule
from .queue import RATE_WINDOW_SECONDS, Observation, Pod, QueueModel, StreamFeed
from .report import LoadCurve, format_table, legend, load_curve, plot
from .results import (
    REVERSAL_SECONDS,
    RuleResult,
    RuleSummary,
    WaitStats,
    intervals_over_target,
    late_allowance,
    percentile_by_interval,
    reversals,
    rule_result,
    summarize,
)
from .rules import (
    HPA_SYNC_SECONDS,
    KEDA_COOLDOWN_SECONDS,
    KEDA_POLL_SECONDS,
    Decider,
    SeriesHistory,
    engine_decider,
    keda_decider,
)
from .run import Rule, run_rule, run_rules, select_worker, standard_rules, stream_rules
from .trace import Trace, TraceError, TraceFile, TraceScan, parse_trace, read_intervals
from .workload import DISTRIBUTIONS, ServiceTime, TaskStream, Workload, make_workload

__all__ = [
    "DISTRIBUTIONS",
    "HPA_SYNC_SECONDS",
    "KEDA_COOLDOWN_SECONDS",
    "KEDA_POLL_SECONDS",
    "RATE_WINDOW_SECONDS",
    "REVERSAL_SECONDS",
    "Decider",
    "LoadCurve",
    "Observation",
    "OracleRun",
    "Pod",
    "QueueModel",
    "Rule",
    "RuleResult",
    "RuleSummary",
    "SeriesHistory",
    "ServiceTime",
    "StreamFeed",
    "TaskStream",
    "Trace",
    "TraceError",
    "TraceFile",
    "TraceScan",
    "WaitStats",
    "Workload",
    "engine_decider",
    "format_table",
    "intervals_over_target",
    "keda_decider",
    "late_allowance",
    "legend",
    "load_curve",
    "load_policy",
    "main",
    "make_workload",
    "oracle_run",
    "parse_trace",
    "percentile_by_interval",
    "plot",
    "read_intervals",
    "replay_schedule",
    "reversals",
    "rule_result",
    "run_rule",
    "run_rules",
    "select_worker",
    "standard_rules",
    "stream_rules",
    "summarize",
]
