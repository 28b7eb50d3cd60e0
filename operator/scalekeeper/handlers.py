"""kopf registration only: kopf watches the ScalingPolicies, the scheduler runs their cycles.

Each policy's watch event goes to `PolicyScheduler.observe`, which keeps the policy's compact body and its
place in the timetable; one scheduler task runs every due cycle (see `scheduler`). No kopf index: which
policies name a workload is the runtime's watches' (kube/watched.py says why). No handler here needs a
finalizer, so kopf puts none on a policy and removes the one older versions put there. Nothing here
decides or writes: see `scheduler`, `runtime` and `cycle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from . import model
from .config import OperatorConfig
from .runtime import Runtime
from .scheduler import PolicyScheduler

log = logging.getLogger("scalekeeper.handlers")
# How long a stopping replica lets its cycles under way finish before it releases its policies: well
# inside the pod's 30 s termination grace period.
DRAIN_SECONDS = 10.0


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg = OperatorConfig.from_env()
    # Cycles run in the loop's default executor (asyncio.to_thread): its size is how many run at once,
    # and it matches the API connection pool; asyncio's default would follow the node's CPU count instead.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="cycle")
    )
    # Our own Events say what happened; kopf's per-handler log Events would repeat them.
    settings.posting.enabled = False
    # The resources are known; watching CRDs would only need more RBAC. Namespace globs ("team-*") need
    # kopf to watch namespaces, so scanning stays on for them.
    settings.scanning.disabled = not any(ch in "".join(cfg.namespaces) for ch in "*?[")
    # The first listing in pages: one response of every policy (10 KB each with managedFields) would be
    # parsed whole at once.
    settings.watching.chunk_size = 500
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # The finalizer older versions used (for their daemons): kopf removes it, as nothing needs it now.
    settings.persistence.finalizer = f"{model.GROUP}/daemon"
    runtime = Runtime(cfg)
    scheduler = PolicyScheduler(runtime)
    if runtime.membership is not None:
        runtime.membership.on_ring_change = scheduler.ring_changed
    runtime.start()
    memo["runtime"] = runtime
    memo["scheduler"] = scheduler
    task = asyncio.create_task(scheduler.run(), name="scheduler")
    task.add_done_callback(_scheduler_ended)
    memo["scheduler_task"] = task
    log.info(
        "scalekeeper started",
        extra={"prometheus": cfg.prometheus_url, "namespaces": list(cfg.namespaces) or "all"},
    )


def _scheduler_ended(task: asyncio.Task[None]) -> None:
    """Without its scheduler the operator would watch and size nothing, looking healthy: stop it instead
    (SIGTERM, as kopf exits on it), so that it is restarted."""
    if task.cancelled():
        return
    log.critical("the scheduler stopped; stopping the operator", exc_info=task.exception())
    os.kill(os.getpid(), signal.SIGTERM)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    scheduler: PolicyScheduler | None = memo.get("scheduler")
    if scheduler is not None:
        await scheduler.drain(timeout=DRAIN_SECONDS)
    task: asyncio.Task[None] | None = memo.get("scheduler_task")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        runtime.stop()


@kopf.on.event(model.GROUP, model.VERSION, model.PLURAL)
def policy_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    scheduler: PolicyScheduler = memo["scheduler"]
    scheduler.observe(event.get("type"), event["object"])
