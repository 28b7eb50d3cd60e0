"""kopf registration only: kopf runs the operator's start and stop; the scheduler runs the policies' cycles.

kopf watches no resource. The operator's own policy informer (kube/watched.py) lists and watches the
ScalingPolicies once, for their claims and for the scheduler (`PolicyScheduler.observe`), which keeps each
policy's compact body and its place in the timetable; one scheduler task runs every due cycle (see
`scheduler`). A kopf watch of the policies as well decoded every policy event twice, and kopf wrapped and
queued each one: at thousands of policies, most of the event loop's work besides the cycles. Nothing here
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
    # kopf watches nothing (see above): it need not look for resources or namespaces either.
    settings.scanning.disabled = True
    runtime = Runtime(cfg)
    scheduler = PolicyScheduler(runtime)
    runtime.watches.feed_policies(scheduler)
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
