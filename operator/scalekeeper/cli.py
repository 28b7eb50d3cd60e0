"""`scalekeeper run | crd | simulate | check`, `scalekeeper --version`; `python -m scalekeeper` is the
same."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from . import package_version


def _run(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers  # noqa: F401  (registers the handlers)
    from .config import ConfigError, OperatorConfig

    try:
        cfg = OperatorConfig.from_env()
    except ConfigError as exc:
        print(f"scalekeeper: configuration error: {exc}", file=sys.stderr)
        return 2
    kopf.configure(
        log_format=kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.PLAIN,
        verbose=cfg.log_level == "DEBUG",
        quiet=cfg.log_level in ("WARNING", "ERROR"),
    )
    logging.getLogger("scalekeeper").setLevel(cfg.log_level)
    if cfg.trace_memory:
        _trace_memory()
    kopf.run(
        standalone=True,
        clusterwide=not cfg.namespaces,
        namespaces=list(cfg.namespaces),
        liveness_endpoint=f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None,
    )
    return 0


def _trace_memory() -> None:
    """Diagnostics (SCALEKEEPER_TRACEMALLOC=1): trace allocations; SIGUSR1 prints the 30 largest live
    allocation sites to stderr. Costs CPU and memory: not for production."""
    import signal
    import tracemalloc

    from kubernetes import client

    # Import the API classes the operator uses before tracing starts: the client imports them lazily, and
    # importing them while tracing costs minutes (typing's caches), none of it the operator's memory.
    for api in ("AppsV1Api", "AutoscalingV2Api", "CoordinationV1Api", "CoreV1Api", "CustomObjectsApi"):
        getattr(client, api)
    tracemalloc.start(8)

    def dump(*_: object) -> None:
        snapshot = tracemalloc.take_snapshot()
        total = sum(s.size for s in snapshot.statistics("filename"))
        print(f"tracemalloc: {total / 2**20:.1f} MiB live", file=sys.stderr)
        for stat in snapshot.statistics("traceback")[:30]:
            print(f"{stat.size / 2**20:8.2f} MiB {stat.count:8d} blocks", file=sys.stderr)
            for line in stat.traceback.format()[-8:]:
                print(f"    {line}", file=sys.stderr)
        sys.stderr.flush()

    signal.signal(signal.SIGUSR1, dump)


class Parser(argparse.ArgumentParser):
    """Every scalekeeper command's parser: a bad flag is one line naming it, not the usage, and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    from .config import describe_settings

    parser = Parser(prog="scalekeeper", description="Keeps every tier of an application sized to its load.")
    parser.add_argument("--version", action="version", version=f"scalekeeper {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="run the operator (settings from SCALEKEEPER_* environment variables: see run --help)",
        description="Run the operator. Its settings come from the environment (the Helm chart sets them); "
        "a malformed one stops it at start with one line naming the variable, exit 2.",
        epilog=describe_settings(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_parser("crd", help="print or check the CRD generated from the model (see --help)", add_help=False)
    sub.add_parser("simulate", help="replay a load trace through the engine (see --help)", add_help=False)
    sub.add_parser(
        "check", help="check an installed operator answers and may read policies (see --help)", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "run":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _run(args)
    if args.command == "crd":
        from . import crdgen

        return int(crdgen.main(rest) or 0)
    if args.command == "check":
        from . import selfcheck

        return selfcheck.main(rest)
    from .simulate import cli as simulate_cli

    return int(simulate_cli.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
