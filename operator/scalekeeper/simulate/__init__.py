"""`scalekeeper simulate`: replay an arrival trace through the engine and a Celery queue model.

One worker queue is modelled as a discrete-event system (`queue`): tasks arrive (Poisson within
each trace interval, `workload`), wait in the broker, are prefetched by worker pods, run, and finish
after a drawn service time. The same arrivals and service times are replayed under three rules
(`rules`), side by side (`run`): scalekeeper (the policy's worker sizing and behavior, decided every
intervalSeconds), hpa-default (the same sizing with the HPA's default behavior, every 15 s) and
keda-style (every 30 s, on waiting tasks only); optionally a fourth, the oracle, which knows the
future (`oracle`). `waits` reads each rule's figures from its tasks, `report` shows them, `cli` is the
command. Deterministic for a given seed: all randomness is drawn up front from one seeded RNG.

Module by module; the names below are what callers (the CLI, bench/, tests) import.
"""

from __future__ import annotations

from .cli import load_policy, main
from .oracle import OracleRun, oracle_run, replay_schedule
from .queue import RATE_WINDOW_SECONDS, Observation, Pod, QueueModel
from .report import format_table, plot
from .rules import (
    HPA_SYNC_SECONDS,
    KEDA_COOLDOWN_SECONDS,
    KEDA_POLL_SECONDS,
    Decider,
    SeriesHistory,
    engine_decider,
    keda_decider,
)
from .run import Rule, run_rule, run_rules, select_worker, standard_rules
from .waits import RuleResult, intervals_over_target, late_allowance, percentile_by_interval, rule_result
from .workload import DISTRIBUTIONS, ServiceTime, Trace, Workload, make_workload, parse_trace

__all__ = [
    "DISTRIBUTIONS",
    "HPA_SYNC_SECONDS",
    "KEDA_COOLDOWN_SECONDS",
    "KEDA_POLL_SECONDS",
    "RATE_WINDOW_SECONDS",
    "Decider",
    "Observation",
    "OracleRun",
    "Pod",
    "QueueModel",
    "Rule",
    "RuleResult",
    "SeriesHistory",
    "ServiceTime",
    "Trace",
    "Workload",
    "engine_decider",
    "format_table",
    "intervals_over_target",
    "keda_decider",
    "late_allowance",
    "load_policy",
    "main",
    "make_workload",
    "oracle_run",
    "parse_trace",
    "percentile_by_interval",
    "plot",
    "replay_schedule",
    "rule_result",
    "run_rule",
    "run_rules",
    "select_worker",
    "standard_rules",
]
