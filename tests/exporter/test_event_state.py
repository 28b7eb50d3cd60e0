"""The bookkeeping of Celery's events, fed event bodies as Celery sends them and a clock the test moves: what
is known and what is left missing. (The threads that receive real events are tested in test_events.py.)"""

from __future__ import annotations

from scalekeeper_celery_exporter.events import (
    MAX_TRACKED_TASKS,
    RETAIN_INFO_SECONDS,
    EventState,
    WorkerInfo,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def heartbeat(hostname: str, active: int) -> dict[str, object]:
    return {"type": "worker-heartbeat", "hostname": hostname, "active": active, "freq": 2.0}


def listening_state(window: float = 60.0) -> tuple[EventState, Clock]:
    clock = Clock()
    state = EventState(window, clock)
    state.listening()
    return state, clock


def test_executing_is_missing_until_every_live_worker_is_known() -> None:
    state, clock = listening_state()
    clock.now += 5  # past the first heartbeat periods
    state.handle(heartbeat("celery@a", 3))
    state.handle(heartbeat("celery@b", 1))
    state.set_worker_info("celery@a", WorkerInfo(frozenset({"emails"}), acks_late=False))
    assert state.workers_without_info() == ["celery@b"]
    assert (
        state.snapshot(["emails"]).executing is None
    )  # b may consume emails: no count rather than a low one
    state.set_worker_info("celery@b", WorkerInfo(frozenset({"emails"}), acks_late=True))
    snap = state.snapshot(["emails"])
    assert snap.executing == {"emails": 4}
    assert snap.executing_acked == {
        "emails": 3
    }  # b acks late: its running task is still unacked at the broker
    assert snap.per_worker == {"celery@a": 3, "celery@b": 1}


def test_an_idle_worker_of_unknown_queues_counts_for_nothing_and_a_busy_one_blinds_every_queue() -> None:
    state, clock = listening_state()
    clock.now += 5
    state.handle(heartbeat("celery@a", 2))
    state.set_worker_info("celery@a", WorkerInfo(frozenset({"video"}), acks_late=False))
    state.handle(heartbeat("celery@silent", 0))  # never answers remote control
    snap = state.snapshot(["video", "emails"])
    assert snap.executing == {"video": 2, "emails": 0}
    assert snap.executing_acked == {"video": 2, "emails": 0}
    assert state.workers_without_info() == ["celery@silent"]  # still asked
    state.handle(heartbeat("celery@silent", 1))
    snap = state.snapshot(["video", "emails"])
    assert snap.executing is None and snap.executing_acked is None
    assert snap.per_worker == {"celery@a": 2, "celery@silent": 1}


def test_executing_is_missing_for_the_first_heartbeat_periods() -> None:
    state, clock = listening_state()
    assert state.snapshot(["emails"]).executing is None
    clock.now += 4
    assert state.snapshot(["emails"]).executing == {"emails": 0}


def video_worker_known() -> tuple[EventState, Clock]:
    """Listening past the first heartbeat periods, with celery@a (running one task) known to consume video."""
    state, clock = listening_state()
    clock.now += 5
    state.handle(heartbeat("celery@a", 1))
    state.set_worker_info("celery@a", WorkerInfo(frozenset({"video"}), acks_late=False))
    return state, clock


def test_a_worker_heard_again_after_a_silence_keeps_its_queues_until_it_says_it_left() -> None:
    # The broker away for a minute: no heartbeat, the worker expires; back, the same hostname is the same
    # process, its queues known without asking it (its remote control may not answer yet, or ever).
    state, clock = video_worker_known()
    clock.now += 60
    assert state.snapshot(["video"]).per_worker == {}  # expired
    state.handle(heartbeat("celery@a", 2))
    assert state.workers_without_info() == []
    assert state.snapshot(["video"]).executing == {"video": 2}
    # worker-offline: a later process under this hostname is asked again.
    state.handle({"type": "worker-offline", "hostname": "celery@a"})
    state.handle(heartbeat("celery@a", 0))
    assert state.workers_without_info() == ["celery@a"]


def test_an_expired_workers_queues_are_forgotten_after_the_retention() -> None:
    state, clock = video_worker_known()
    clock.now += 5
    state.snapshot(["video"])  # expires it
    clock.now += RETAIN_INFO_SECONDS + 1
    state.snapshot(["video"])  # past the retention: forgotten
    state.handle(heartbeat("celery@a", 1))
    assert state.workers_without_info() == ["celery@a"]
    assert state.snapshot(["video"]).executing is None


def test_a_worker_of_several_queues_is_unattributed_and_a_silent_one_expires() -> None:
    state, clock = listening_state()
    clock.now += 5
    state.handle(heartbeat("celery@multi", 2))
    state.set_worker_info("celery@multi", WorkerInfo(frozenset({"emails", "video"}), acks_late=False))
    snap = state.snapshot(["emails", "video"])
    assert (snap.executing, snap.unattributed_executing) == ({"emails": 0, "video": 0}, 2)
    clock.now += 4.1  # two heartbeat periods without one: gone
    snap = state.snapshot(["emails"])
    assert (snap.per_worker, snap.unattributed_executing) == ({}, 0)


def test_finished_tasks_go_to_their_sent_queue_else_to_their_worker_queue() -> None:
    state, clock = listening_state(window=10)
    state.set_worker_info("celery@v", WorkerInfo(frozenset({"video"}), acks_late=False))
    state.handle({"type": "task-sent", "uuid": "t1", "queue": "emails"})
    state.handle({"type": "task-succeeded", "uuid": "t1", "hostname": "celery@v", "runtime": 0.3})
    state.handle({"type": "task-failed", "uuid": "t2", "hostname": "celery@v"})  # no task-sent seen
    state.handle({"type": "task-failed", "uuid": "t3", "hostname": "celery@unknown"})
    assert state.snapshot(["emails"]).completed is None  # not a full window yet
    clock.now += 10
    snap = state.snapshot(["emails", "video"])
    assert snap.published == {"emails": 1, "video": 0}
    assert snap.completed == {"emails": 1, "video": 1}
    assert snap.failed == {"emails": 0, "video": 1}
    assert snap.unattributed_finished == 1
    assert snap.runtimes is not None and snap.runtimes["emails"].count == 1
    assert snap.runtimes["emails"].buckets[:4] == [0, 0, 0, 0] and snap.runtimes["emails"].buckets[4] == 1


def test_counters_are_missing_again_after_deafness_and_arrivals_without_task_sent() -> None:
    state, clock = listening_state(window=10)
    clock.now += 10
    snap = state.snapshot(["emails"])
    assert snap.completed == {"emails": 0}
    assert snap.published is None  # no task-sent ever: producers may not send them
    state.deaf()
    assert state.snapshot(["emails"]).completed is None
    state.listening()
    clock.now += 9
    assert state.snapshot(["emails"]).completed is None
    clock.now += 1
    assert state.snapshot(["emails"]).completed == {"emails": 0}


def test_each_probe_heard_on_one_connection_keeps_the_window_begun_by_the_first() -> None:
    state, clock = listening_state(window=10)
    for _ in range(5):  # a probe comes back every 2 s
        clock.now += 2
        state.listening()
    assert state.snapshot(["emails"]).completed == {"emails": 0}


def test_task_ids_never_finished_do_not_grow_without_bound() -> None:
    state, clock = listening_state(window=0.1)
    for i in range(MAX_TRACKED_TASKS + 5):
        state.handle({"type": "task-sent", "uuid": f"t{i}", "queue": "emails"})
    state.handle({"type": "task-succeeded", "uuid": "t0", "hostname": "celery@x", "runtime": 1.0})
    state.handle(
        {"type": "task-succeeded", "uuid": f"t{MAX_TRACKED_TASKS}", "hostname": "celery@x", "runtime": 1.0}
    )
    clock.now += 1
    snap = state.snapshot(["emails"])
    # The oldest id was dropped (its end unattributed); a recent one is still known.
    assert (snap.completed, snap.unattributed_finished) == ({"emails": 1}, 1)
