"""Kubernetes Events on a ScalingPolicy: every scale, every hold, every condition that turns bad."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.rest import ApiException

from ..model import API_VERSION, KIND

log = logging.getLogger("scalekeeper.events")


class EventRecorder:
    def __init__(self, api: client.ApiClient, component: str = "scalekeeper") -> None:
        self._core = client.CoreV1Api(api)
        self._component = component

    def post(self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str) -> bool:
        now = datetime.now(UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "type": type_,
            "reason": reason,
            # The API server limits an Event's message to 1 KiB.
            "message": message[:1000],
            "source": {"component": self._component},
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
            "reportingComponent": self._component,
        }
        try:
            self._core.create_namespaced_event(namespace, body)
        except ApiException as exc:  # an Event is worth a log line, never a failed cycle
            log.warning("posting event %s on %s/%s failed: %s", reason, namespace, name, exc.reason)
            return False
        return True
