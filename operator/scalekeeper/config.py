"""Operator settings, from the environment (the Helm chart sets them) into one object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


class ConfigError(ValueError):
    pass


def _int(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside {low}..{high}")
    return value


def _seconds(env: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from exc
    if not low <= value <= high:  # NaN fails both comparisons
        raise ConfigError(f"{name}={raw} is outside {low:g}..{high:g}")
    return value


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("1", "true", "0", "false"):
        raise ConfigError(f"{name}={raw!r} is not true, false, 1 or 0")
    return raw in ("1", "true")


@dataclass(frozen=True)
class OperatorConfig:
    prometheus_url: str = "http://prometheus.scalekeeper-system.svc:9090"
    # Empty: every namespace.
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    metrics_port: int = 8080
    health_port: int = 8081
    log_level: str = "INFO"
    log_format: str = "json"
    prometheus_bearer_token_file: str | None = None
    prometheus_ca_file: str | None = None
    prometheus_insecure_skip_verify: bool = False
    prometheus_timeout_seconds: float = 5.0
    leader_election: bool = True
    lease_name: str = "scalekeeper-leader"
    lease_namespace: str = "scalekeeper-system"
    lease_seconds: int = 15
    identity: str = ""
    max_workers: int = 8
    status_refresh_seconds: int = 15
    # "changes": a decision line at INFO when a target's (current, desired, limitedBy) changes, at DEBUG
    # otherwise; "all": every decision at INFO (benchmarks count them).
    log_decisions: str = "changes"
    # How often freed heap is given back to the system (glibc malloc_trim); 0: never. See heap.py.
    heap_trim_seconds: int = 60

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> OperatorConfig:
        e = dict(os.environ if env is None else env)
        namespaces = tuple(n.strip() for n in e.get("SCALEKEEPER_NAMESPACES", "").split(",") if n.strip())
        level = e.get("SCALEKEEPER_LOG_LEVEL", "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"SCALEKEEPER_LOG_LEVEL={level!r} is not one of DEBUG, INFO, WARNING, ERROR")
        log_format = e.get("SCALEKEEPER_LOG_FORMAT", "json")
        if log_format not in ("json", "plain"):
            raise ConfigError(f"SCALEKEEPER_LOG_FORMAT={log_format!r} is not json or plain")
        log_decisions = e.get("SCALEKEEPER_LOG_DECISIONS", "changes")
        if log_decisions not in ("changes", "all"):
            raise ConfigError(f"SCALEKEEPER_LOG_DECISIONS={log_decisions!r} is not changes or all")
        url = e.get("SCALEKEEPER_PROMETHEUS_URL", OperatorConfig.prometheus_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"SCALEKEEPER_PROMETHEUS_URL={url!r} is not an http:// or https:// URL")
        import socket

        return OperatorConfig(
            prometheus_url=url,
            namespaces=namespaces,
            metrics_port=_int(e, "SCALEKEEPER_METRICS_PORT", 8080, 0, 65535),
            health_port=_int(e, "SCALEKEEPER_HEALTH_PORT", 8081, 0, 65535),
            log_level=level,
            log_format=log_format,
            prometheus_bearer_token_file=e.get("SCALEKEEPER_PROMETHEUS_BEARER_TOKEN_FILE") or None,
            prometheus_ca_file=e.get("SCALEKEEPER_PROMETHEUS_CA_FILE") or None,
            prometheus_insecure_skip_verify=_flag(e, "SCALEKEEPER_PROMETHEUS_INSECURE_SKIP_VERIFY", False),
            prometheus_timeout_seconds=_seconds(e, "SCALEKEEPER_PROMETHEUS_TIMEOUT_SECONDS", 5.0, 0.1, 300.0),
            leader_election=_flag(e, "SCALEKEEPER_LEADER_ELECTION", True),
            lease_name=e.get("SCALEKEEPER_LEASE_NAME", "scalekeeper-leader"),
            lease_namespace=e.get(
                "SCALEKEEPER_LEASE_NAMESPACE", e.get("POD_NAMESPACE", "scalekeeper-system")
            ),
            lease_seconds=_int(e, "SCALEKEEPER_LEASE_SECONDS", 15, 2, 300),
            identity=e.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
            max_workers=_int(e, "SCALEKEEPER_MAX_WORKERS", 8, 1, 256),
            status_refresh_seconds=_int(e, "SCALEKEEPER_STATUS_REFRESH_SECONDS", 15, 1, 3600),
            log_decisions=log_decisions,
            heap_trim_seconds=_int(e, "SCALEKEEPER_HEAP_TRIM_SECONDS", 60, 0, 86400),
        )
