"""Operator settings, from the environment (the Helm chart sets them) into one object.

Each variable is defined once, as a `Setting` in `SETTINGS`: its name, its default (as the environment would
spell it), what it means and how it is read. `OperatorConfig.from_env` reads them and `scalekeeper run
--help` lists them, so the help cannot miss one the operator reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .metrics.batching import DEFAULT_LIMITS

# Covariant: SETTINGS holds settings of every type as Setting[object].
T = TypeVar("T", covariant=True)


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable the operator reads."""

    env: str
    # As written in the environment, and parsed like a set value: a default that breaks its own bounds
    # fails at import, not in production.
    default: str
    meaning: str
    # (variable name, raw value) -> value; a bad value raises ConfigError naming the variable.
    parse: Callable[[str, str], T]

    def read(self, environ: Mapping[str, str]) -> T:
        """The variable's value; unset or empty reads as the default."""
        return self.parse(self.env, environ.get(self.env) or self.default)

    def default_value(self) -> T:
        return self.parse(self.env, self.default)


def _integer(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not an integer") from exc
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} is outside {low}..{high}")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not a number of seconds") from exc
        if not low <= value <= high:  # NaN fails both comparisons
            raise ConfigError(f"{name}={raw} is outside {low:g}..{high:g}")
        return value

    return parse


def _flag(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word not in ("1", "true", "0", "false"):
        raise ConfigError(f"{name}={raw!r} is not true, false, 1 or 0")
    return word in ("1", "true")


def _one_of(*choices: str, upper: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.upper() if upper else raw
        if value not in choices:
            raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _url(name: str, raw: str) -> str:
    url = raw.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={url!r} is not an http:// or https:// URL")
    return url


def _text(name: str, raw: str) -> str:
    return raw


def _path(name: str, raw: str) -> str | None:
    return raw or None


def _names(name: str, raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


PROMETHEUS_URL = Setting(
    "SCALEKEEPER_PROMETHEUS_URL",
    "http://prometheus.scalekeeper-system.svc:9090",
    "base URL of the Prometheus HTTP API the policies' queries run against",
    _url,
)
PROMETHEUS_TIMEOUT_SECONDS = Setting(
    "SCALEKEEPER_PROMETHEUS_TIMEOUT_SECONDS",
    "5",
    "timeout of one Prometheus request, 0.1..300: a slow one holds only the cycles whose queries it holds",
    _seconds(0.1, 300.0),
)
PROMETHEUS_BATCH_WINDOW_SECONDS = Setting(
    "SCALEKEEPER_PROMETHEUS_BATCH_WINDOW_SECONDS",
    "0.02",
    "cycles reading within this many seconds of each other share Prometheus requests, 0..1; 0: one each",
    _seconds(0.0, 1.0),
)
PROMETHEUS_BATCH_MAX_QUERIES = Setting(
    "SCALEKEEPER_PROMETHEUS_BATCH_MAX_QUERIES",
    str(DEFAULT_LIMITS.max_queries),
    "queries in one Prometheus request, at most, 1..10000",
    _integer(1, 10000),
)
PROMETHEUS_BATCH_MAX_BYTES = Setting(
    "SCALEKEEPER_PROMETHEUS_BATCH_MAX_BYTES",
    str(DEFAULT_LIMITS.max_bytes),
    "form body of one Prometheus request, at most, 1024..10000000 (a longer single query goes alone)",
    _integer(1024, 10_000_000),
)
PROMETHEUS_BEARER_TOKEN_FILE = Setting(
    "SCALEKEEPER_PROMETHEUS_BEARER_TOKEN_FILE",
    "",
    "file holding a bearer token for Prometheus; empty: none",
    _path,
)
PROMETHEUS_CA_FILE = Setting(
    "SCALEKEEPER_PROMETHEUS_CA_FILE",
    "",
    "CA bundle (PEM) that signed Prometheus's certificate; empty: the system CAs",
    _path,
)
PROMETHEUS_INSECURE_SKIP_VERIFY = Setting(
    "SCALEKEEPER_PROMETHEUS_INSECURE_SKIP_VERIFY",
    "false",
    "skip verification of Prometheus's TLS certificate (testing only)",
    _flag,
)
NAMESPACES = Setting(
    "SCALEKEEPER_NAMESPACES",
    "",
    "comma-separated namespaces (or globs, team-*) whose ScalingPolicies are served; empty: every namespace",
    _names,
)
METRICS_PORT = Setting(
    "SCALEKEEPER_METRICS_PORT",
    "8080",
    "port of the operator's own metrics (/metrics); 0: off",
    _integer(0, 65535),
)
HEALTH_PORT = Setting("SCALEKEEPER_HEALTH_PORT", "8081", "port of /healthz; 0: off", _integer(0, 65535))
LOG_LEVEL = Setting(
    "SCALEKEEPER_LOG_LEVEL",
    "INFO",
    "DEBUG, INFO, WARNING or ERROR",
    _one_of("DEBUG", "INFO", "WARNING", "ERROR", upper=True),
)
LOG_FORMAT = Setting(
    "SCALEKEEPER_LOG_FORMAT", "json", "json (one object a line) or plain", _one_of("json", "plain")
)
# "changes": a decision line at INFO when a target's (current, desired, limitedBy) changes, at DEBUG
# otherwise; "all": every decision at INFO (benchmarks count them).
LOG_DECISIONS = Setting(
    "SCALEKEEPER_LOG_DECISIONS",
    "changes",
    "decision lines at INFO: changes (when a target's current, desired or limitedBy changes) or all",
    _one_of("changes", "all"),
)
SHARDING = Setting(
    "SCALEKEEPER_SHARDING",
    "true",
    "replicas share the policies through member Leases (kube/membership.py); false: this replica serves "
    "every policy and takes no Lease (run one only)",
    _flag,
)
LEASE_NAME = Setting(
    "SCALEKEEPER_LEASE_NAME",
    "scalekeeper-leader",
    "the replicas' group: member Leases are <name>-<identity>; while a Lease named <name> (an active/passive "
    "release's leader) is held, no replica serves",
    _text,
)
POD_NAMESPACE = Setting(
    "POD_NAMESPACE",
    "scalekeeper-system",
    "the operator's namespace (the chart sets it): the Leases' default",
    _text,
)
LEASE_NAMESPACE = Setting(
    "SCALEKEEPER_LEASE_NAMESPACE", "", f"namespace of the member Leases; empty: {POD_NAMESPACE.env}", _text
)
LEASE_SECONDS = Setting(
    "SCALEKEEPER_LEASE_SECONDS",
    "15",
    "Lease duration, 2..300; the holder renews every third of it",
    _integer(2, 300),
)
POD_NAME = Setting(
    "POD_NAME",
    "",
    "this replica's identity in the Leases (the chart sets it); empty: <hostname>-<pid>",
    _text,
)
# Also how long a replica that lost its Lease may still be finishing a write: a handover waits it out.
API_TIMEOUT_SECONDS = Setting(
    "SCALEKEEPER_API_TIMEOUT_SECONDS",
    "5",
    "timeout of each API server request of a cycle, 1..60",
    _integer(1, 60),
)
MAX_WORKERS = Setting(
    "SCALEKEEPER_MAX_WORKERS", "16", "policies' cycles running at once, 1..256", _integer(1, 256)
)
STATUS_REFRESH_SECONDS = Setting(
    "SCALEKEEPER_STATUS_REFRESH_SECONDS",
    "15",
    "seconds between status writes when only metric values and reasons changed, 1..3600",
    _integer(1, 3600),
)
# See heap.py.
HEAP_TRIM_SECONDS = Setting(
    "SCALEKEEPER_HEAP_TRIM_SECONDS",
    "60",
    "seconds between returns of freed heap to the system (malloc_trim), 0..86400; 0: never",
    _integer(0, 86400),
)
TRACEMALLOC = Setting(
    "SCALEKEEPER_TRACEMALLOC",
    "false",
    "diagnostics: trace allocations; SIGUSR1 prints the largest to stderr (slow: not for production)",
    _flag,
)

# In the order `scalekeeper run --help` lists them.
SETTINGS: tuple[Setting[object], ...] = (
    PROMETHEUS_URL,
    PROMETHEUS_TIMEOUT_SECONDS,
    PROMETHEUS_BATCH_WINDOW_SECONDS,
    PROMETHEUS_BATCH_MAX_QUERIES,
    PROMETHEUS_BATCH_MAX_BYTES,
    PROMETHEUS_BEARER_TOKEN_FILE,
    PROMETHEUS_CA_FILE,
    PROMETHEUS_INSECURE_SKIP_VERIFY,
    NAMESPACES,
    MAX_WORKERS,
    STATUS_REFRESH_SECONDS,
    METRICS_PORT,
    HEALTH_PORT,
    LOG_LEVEL,
    LOG_FORMAT,
    LOG_DECISIONS,
    SHARDING,
    LEASE_NAME,
    LEASE_NAMESPACE,
    LEASE_SECONDS,
    HEAP_TRIM_SECONDS,
    POD_NAME,
    API_TIMEOUT_SECONDS,
    POD_NAMESPACE,
    TRACEMALLOC,
)


@dataclass(frozen=True)
class OperatorConfig:
    prometheus_url: str = PROMETHEUS_URL.default_value()
    namespaces: tuple[str, ...] = field(default_factory=NAMESPACES.default_value)
    metrics_port: int = METRICS_PORT.default_value()
    health_port: int = HEALTH_PORT.default_value()
    log_level: str = LOG_LEVEL.default_value()
    log_format: str = LOG_FORMAT.default_value()
    prometheus_bearer_token_file: str | None = PROMETHEUS_BEARER_TOKEN_FILE.default_value()
    prometheus_ca_file: str | None = PROMETHEUS_CA_FILE.default_value()
    prometheus_insecure_skip_verify: bool = PROMETHEUS_INSECURE_SKIP_VERIFY.default_value()
    prometheus_timeout_seconds: float = PROMETHEUS_TIMEOUT_SECONDS.default_value()
    prometheus_batch_window_seconds: float = PROMETHEUS_BATCH_WINDOW_SECONDS.default_value()
    prometheus_batch_max_queries: int = PROMETHEUS_BATCH_MAX_QUERIES.default_value()
    prometheus_batch_max_bytes: int = PROMETHEUS_BATCH_MAX_BYTES.default_value()
    sharding: bool = SHARDING.default_value()
    lease_name: str = LEASE_NAME.default_value()
    lease_namespace: str = POD_NAMESPACE.default_value()
    lease_seconds: int = LEASE_SECONDS.default_value()
    identity: str = ""
    api_timeout_seconds: int = API_TIMEOUT_SECONDS.default_value()
    max_workers: int = MAX_WORKERS.default_value()
    status_refresh_seconds: int = STATUS_REFRESH_SECONDS.default_value()
    log_decisions: str = LOG_DECISIONS.default_value()
    heap_trim_seconds: int = HEAP_TRIM_SECONDS.default_value()
    trace_memory: bool = TRACEMALLOC.default_value()

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> OperatorConfig:
        e = os.environ if env is None else env
        import socket

        return OperatorConfig(
            prometheus_url=PROMETHEUS_URL.read(e),
            namespaces=NAMESPACES.read(e),
            metrics_port=METRICS_PORT.read(e),
            health_port=HEALTH_PORT.read(e),
            log_level=LOG_LEVEL.read(e),
            log_format=LOG_FORMAT.read(e),
            prometheus_bearer_token_file=PROMETHEUS_BEARER_TOKEN_FILE.read(e),
            prometheus_ca_file=PROMETHEUS_CA_FILE.read(e),
            prometheus_insecure_skip_verify=PROMETHEUS_INSECURE_SKIP_VERIFY.read(e),
            prometheus_timeout_seconds=PROMETHEUS_TIMEOUT_SECONDS.read(e),
            prometheus_batch_window_seconds=PROMETHEUS_BATCH_WINDOW_SECONDS.read(e),
            prometheus_batch_max_queries=PROMETHEUS_BATCH_MAX_QUERIES.read(e),
            prometheus_batch_max_bytes=PROMETHEUS_BATCH_MAX_BYTES.read(e),
            sharding=SHARDING.read(e),
            lease_name=LEASE_NAME.read(e),
            lease_namespace=LEASE_NAMESPACE.read(e) or POD_NAMESPACE.read(e),
            lease_seconds=LEASE_SECONDS.read(e),
            identity=POD_NAME.read(e) or f"{socket.gethostname()}-{os.getpid()}",
            api_timeout_seconds=API_TIMEOUT_SECONDS.read(e),
            max_workers=MAX_WORKERS.read(e),
            status_refresh_seconds=STATUS_REFRESH_SECONDS.read(e),
            log_decisions=LOG_DECISIONS.read(e),
            heap_trim_seconds=HEAP_TRIM_SECONDS.read(e),
            trace_memory=TRACEMALLOC.read(e),
        )


def describe_settings() -> str:
    """The settings as `scalekeeper run --help` lists them: name, default, meaning."""
    width = max(len(s.env) for s in SETTINGS)
    lines = ["environment (unset or empty: the default):"]
    for s in SETTINGS:
        lines.append(f"  {s.env:<{width}}  default: {s.default or '(empty)'}")
        lines.append(f"  {'':<{width}}  {s.meaning}")
    return "\n".join(lines)
