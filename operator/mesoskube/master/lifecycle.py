"""Framework lifecycle: subscribe, heartbeat Leases, revive, reconcile, failover and TEARDOWN.

A mixin of the master's Engine (engine.py), which holds the state these methods share.
"""

from __future__ import annotations

import logging

from kubernetes.client.exceptions import ApiException

from mesoskube.api.models import DEFAULT_ROLE, FrameworkPhase, TaskState
from mesoskube.master import FINALIZER, LABEL_FRAMEWORK
from mesoskube.master.cache import format_time, parse_time
from mesoskube.master.liveness import Liveness
from mesoskube.master.objects import is_terminal, ns_name

log = logging.getLogger("mesoskube.master")

LEASE_POLL_INTERVAL = 1.0
LEASE_POLL_TIMEOUT = 5.0


class FrameworkLifecycle:
    def poll_leases(self, force: bool = False) -> None:
        """Framework heartbeats. Polled with a server-side label filter: watching every Lease would
        also stream each node's heartbeat."""
        now = self.monotonic()
        if not force and now - self.last_lease_poll < LEASE_POLL_INTERVAL:
            return
        self.last_lease_poll = now
        sel = LABEL_FRAMEWORK
        try:
            if self.settings.namespace:
                leases = self.kube.coordination.list_namespaced_lease(
                    self.settings.namespace, label_selector=sel, _request_timeout=LEASE_POLL_TIMEOUT
                )
            else:
                leases = self.kube.coordination.list_lease_for_all_namespaces(
                    label_selector=sel, _request_timeout=LEASE_POLL_TIMEOUT
                )
        except Exception as e:  # the API server is away: that is no framework's fault (liveness.py)
            if self.liveness.healthy:
                log.warning("framework Leases unreadable (%s): liveness paused until they are", e)
            self.liveness.poll_failed(now)
            return
        seen = {
            f"{lease.metadata.namespace}/{lease.metadata.name}": (
                str(lease.spec.renew_time),
                lease.metadata.resource_version,
                float(lease.spec.lease_duration_seconds or 15),
            )
            for lease in leases.items
        }
        changed = self.liveness.observe(seen, now)
        # Lapses happen without any change; a framework with a Lease is looked at on every poll.
        with self.cache.lock:
            keys = [k for k in self.cache.frameworks if k in seen or k in changed]
        with self.dirty_lock:
            self.dirty_frameworks.update(keys)

    def reconcile_frameworks(self, now: float) -> None:
        with self.dirty_lock:
            keys, self.dirty_frameworks = self.dirty_frameworks, set()
        # Failover clocks run whether or not anything changed.
        with self.cache.lock:
            keys |= {
                k
                for k, fw in self.cache.frameworks.items()
                if (fw.get("status") or {}).get("phase") == FrameworkPhase.DISCONNECTED.value
            }
            items = [(k, self.cache.frameworks.get(k)) for k in keys]
        for key, fw in items:
            if fw is not None:
                try:
                    self.reconcile_framework(key, fw, now)
                except ApiException as e:
                    if e.status not in (404, 409):
                        raise

    def reconcile_framework(self, key: str, fw: dict, now: float) -> None:
        ns, name = ns_name(key)
        meta, spec, status = fw["metadata"], fw.get("spec") or {}, fw.get("status") or {}
        phase = status.get("phase")
        if meta.get("deletionTimestamp"):
            self.teardown(key, fw, "framework deleted (TEARDOWN)")
            if FINALIZER in (meta.get("finalizers") or []):
                self.kube.patch(
                    "frameworks",
                    ns,
                    name,
                    {
                        "metadata": {
                            "finalizers": [f for f in meta["finalizers"] if f != FINALIZER],
                            "resourceVersion": meta["resourceVersion"],
                        }
                    },
                )
            return
        if phase is None:
            if FINALIZER not in (meta.get("finalizers") or []):
                self.kube.patch(
                    "frameworks",
                    ns,
                    name,
                    {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER]}},
                )
            self._patch_fw_status(
                key,
                {
                    "phase": FrameworkPhase.SUBSCRIBED.value,
                    "frameworkId": meta["uid"],
                    "subscribedAt": format_time(now),
                    "observedRevive": spec.get("revive", 0),
                },
            )
            self.events.normal(
                fw,
                "Subscribed",
                f"framework {name} subscribed with roles {', '.join(spec.get('roles') or [DEFAULT_ROLE])}",
            )
            self.request_allocation()
            return
        if phase == FrameworkPhase.TORN_DOWN.value:
            return
        liveness = self.liveness.state(key, self.monotonic())
        if liveness is Liveness.UNKNOWN:
            return  # the master cannot see the API server well enough to judge anyone
        lapsed = liveness is Liveness.LAPSED
        if phase == FrameworkPhase.SUBSCRIBED.value and lapsed:
            self._patch_fw_status(
                key, {"phase": FrameworkPhase.DISCONNECTED.value, "disconnectedAt": format_time(now)}
            )
            self.rescind_offers(
                lambda o: o["spec"]["framework"] == name and o["metadata"]["namespace"] == ns,
                "REASON_FRAMEWORK_DISCONNECTED",
                "the framework's heartbeat Lease lapsed",
            )
            self.events.warning(
                fw,
                "Disconnected",
                f"heartbeat Lease lapsed; failover timeout {spec.get('failoverTimeoutSeconds', 0)}s started",
            )
            return
        if phase == FrameworkPhase.DISCONNECTED.value:
            if not lapsed:
                self._patch_fw_status(key, {"phase": FrameworkPhase.SUBSCRIBED.value, "disconnectedAt": None})
                self.events.normal(fw, "Reregistered", "heartbeat resumed within the failover timeout")
                self.request_allocation()
                return
            since = parse_time(status.get("disconnectedAt")) or now
            if now - since >= float(spec.get("failoverTimeoutSeconds") or 0):
                self.teardown(key, fw, "failover timeout expired")
                self._patch_fw_status(key, {"phase": FrameworkPhase.TORN_DOWN.value})
                self.events.warning(
                    fw, "TornDown", "failover timeout expired: tasks killed, offers rescinded"
                )
            return
        revive = int(spec.get("revive") or 0)
        if revive != int(status.get("observedRevive") or 0):
            for k in [k for k in self.filters if k[0] == key]:
                del self.filters[k]
            self._patch_fw_status(key, {"observedRevive": revive})
            self.request_allocation()
        reconcile = spec.get("reconcile")
        if reconcile and reconcile.get("id") != status.get("observedReconcile"):
            self._patch_fw_status(
                key,
                {
                    "reconciled": self.reconcile_answer(ns, name, reconcile.get("taskIds")),
                    "observedReconcile": reconcile.get("id"),
                },
            )
        if not spec.get("suppress"):
            self.request_allocation()

    def reconcile_answer(self, ns: str, framework: str, task_ids: list[str] | None) -> list[dict]:
        with self.cache.lock:
            mine = {
                k.split("/", 1)[1]: t
                for k, t in self.cache.tasks.items()
                if k.startswith(ns + "/") and t["spec"]["framework"] == framework
            }
        if not task_ids:  # implicit: every non-terminal task
            return [
                {"taskId": n, "state": (t.get("status") or {}).get("state") or TaskState.STAGING.value}
                for n, t in sorted(mine.items())
                if not is_terminal(t)
            ]
        out = []
        for tid in task_ids:
            t = mine.get(tid)
            if t is None:
                out.append({"taskId": tid, "state": TaskState.LOST.value, "reason": "REASON_RECONCILIATION"})
            else:
                out.append({"taskId": tid, "state": (t.get("status") or {}).get("state") or "TASK_STAGING"})
        return out

    def teardown(self, key: str, fw: dict, why: str) -> None:
        ns, name = ns_name(key)
        self.rescind_offers(
            lambda o: o["spec"]["framework"] == name and o["metadata"]["namespace"] == ns,
            "REASON_FRAMEWORK_REMOVED",
            why,
        )
        with self.cache.lock:
            tasks = [
                t
                for k, t in self.cache.tasks.items()
                if k.startswith(ns + "/") and t["spec"]["framework"] == name and not is_terminal(t)
            ]
        self._run_all(lambda t: self._kill(t), tasks)
        for k in [k for k in self.filters if k[0] == key]:
            del self.filters[k]

    def _patch_fw_status(self, key: str, patch: dict) -> None:
        ns, name = ns_name(key)
        body = self.kube.patch_status("frameworks", ns, name, {"status": patch})
        self.cache.upsert("frameworks", body)
