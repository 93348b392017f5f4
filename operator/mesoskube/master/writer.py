"""The master's one door to the API: the Writer interface its parts hand their writes to, and
KubeWriter, the only master module that imports the Kubernetes client (an import contract in
tests/unit/test_import_contract.py holds that).

Every failure reaches the parts as an ApiError with an HTTP status (0 for a transport failure: a
reset connection, a read timeout), so they decide on statuses without knowing the client.
"""

from __future__ import annotations

import json
from typing import Protocol

import urllib3
from kubernetes.client.exceptions import ApiException

from mesoskube import API_GROUP, API_VERSION
from mesoskube.kube import Kube, WatchStream, deferrable, not_ready
from mesoskube.master import LABEL_FRAMEWORK

# Statuses worth retrying: the request may succeed later unchanged. Others (400, 403, 409, 422) will not.
RETRIABLE = frozenset({0, 408, 425, 429, 500, 502, 503, 504})
# A Lease poll that hangs must not hold the engine step: liveness waits the poll out as unknown.
LEASE_POLL_TIMEOUT = 5.0


class ApiError(Exception):
    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{status} {reason}".strip())
        # message: the API server's own words (its Status), for what a framework is told
        self.status, self.reason, self.message = status, reason, message

    @property
    def retriable(self) -> bool:
        return self.status in RETRIABLE


class Writer(Protocol):
    """What the master's parts may ask of the API. Raises ApiError."""

    def create(self, plural: str, namespace: str, body: dict) -> dict: ...
    def get(self, plural: str, namespace: str, name: str) -> dict: ...
    def patch(self, plural: str, namespace: str, name: str, body: dict) -> dict: ...
    def patch_status(self, plural: str, namespace: str, name: str, body: dict) -> dict: ...
    def delete(self, plural: str, namespace: str, name: str) -> None: ...
    def delete_collection(self, plural: str, namespace: str, field_selector: str) -> None: ...
    def create_pod(self, namespace: str, body: dict) -> dict: ...
    def delete_pod(self, namespace: str, name: str) -> None: ...
    def bind_pod(self, namespace: str, binding: dict) -> None: ...
    def create_event(self, namespace: str, body: dict) -> None: ...
    def patch_role_status(self, name: str, body: dict) -> dict: ...
    def list_framework_leases(self, namespace: str | None) -> dict[str, dict]: ...
    def list_versions(self, kind: str, namespace: str | None) -> tuple[str, dict[str, str]]: ...


def delete_quietly(writer: Writer, plural: str, namespace: str, name: str) -> None:
    """Delete; an object already gone is fine."""
    try:
        writer.delete(plural, namespace, name)
    except ApiError as e:
        if e.status != 404:
            raise


def delete_pod_quietly(writer: Writer, namespace: str, name: str) -> None:
    try:
        writer.delete_pod(namespace, name)
    except ApiError as e:
        if e.status != 404:
            raise


def status_message(e: ApiException) -> str:
    """The message of the API server's Status in an error's body (its reason, else)."""
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason or "")
    except (ValueError, AttributeError):
        return str(e.body or e.reason or "")[:500]


def _translate(fn):
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            message = status_message(e)
            if not_ready(e.status, str(e.body or "")):  # the server's state, not the request's
                raise ApiError(503, f"the API server is not ready yet ({message})", message) from e
            raise ApiError(int(e.status or 0), str(e.reason or ""), message) from e
        except (OSError, TimeoutError, urllib3.exceptions.HTTPError) as e:  # transport: retriable
            raise ApiError(0, f"{type(e).__name__}: {e}") from e

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _discard(resp) -> None:
    """Read and drop a raw answer (the generated client raised already for any non-2xx), so its
    connection goes back to the pool."""
    resp.read()
    resp.release_conn()


class KubeWriter:
    """Writer over the Kube client layer; also the reads the master's start needs (seed LISTs).

    Two clients, two QPS budgets. `kube` carries the launch path: Task and pod creates, spec
    patches, kills. `status_kube` (default: the same client) carries what the master tells
    frameworks, Mesos's master-to-scheduler messages: Offers (create, rescind, the decline sweep),
    status-subresource patches and Events. So neither reporting what happened nor offering what is
    free spends the budget of tasks already accepted: kube-scheduler writes its Events through a
    separate client for the same reason, and a pod's status comes from its kubelet's client, not
    the scheduler's. (Offers moved there after `make bench` of 2026-12-07 found them at 0.39 of the
    launch client's 2.42 writes per task at 1,000 nodes.)
    """

    def __init__(self, kube: Kube, status_kube: Kube | None = None) -> None:
        self.kube = kube
        self.status_kube = status_kube or kube

    def client_for(self, plural: str) -> Kube:
        return self.status_kube if plural == "offers" else self.kube

    @_translate
    def create(self, plural: str, namespace: str, body: dict) -> dict:
        return self.client_for(plural).create(plural, namespace, body)

    @_translate
    def get(self, plural: str, namespace: str, name: str) -> dict:
        """One read, where the watch may lag: a Task named by an accept before its ADDED arrived."""
        return self.client_for(plural).get(plural, namespace, name)

    @_translate
    def patch(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        return self.client_for(plural).patch(plural, namespace, name, body)

    @_translate
    def patch_status(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        if plural != "tasks":
            return self.status_kube.patch_status(plural, namespace, name, body)
        # A Task's status is reported, not acted on by the master: on a saturated status client
        # it waits behind the Offer writes, which the next launches need (issue 14).
        with deferrable():
            return self.status_kube.patch_status(plural, namespace, name, body)

    @_translate
    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.client_for(plural).delete(plural, namespace, name)

    @_translate
    def delete_collection(self, plural: str, namespace: str, field_selector: str) -> None:
        self.client_for(plural).delete_collection(plural, namespace, field_selector)

    @_translate
    def create_pod(self, namespace: str, body: dict) -> dict:
        return self.kube.create_pod(namespace, body)

    @_translate
    def delete_pod(self, namespace: str, name: str) -> None:
        _discard(
            self.kube.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=0, _preload_content=False
            )
        )

    @_translate
    def bind_pod(self, namespace: str, binding: dict) -> None:
        """A Binding of an adopted pod to its agent; 409 when it is bound or replaced (uid)."""
        self.kube.bind_pod(namespace, binding)

    @_translate
    def create_event(self, namespace: str, body: dict) -> None:
        # Unread into a model: nobody reads the answer, and building CoreV1Event costs CPU.
        with deferrable():
            _discard(self.status_kube.core.create_namespaced_event(namespace, body, _preload_content=False))

    @_translate
    def patch_role_status(self, name: str, body: dict) -> dict:
        return self.status_kube.custom.patch_cluster_custom_object_status(
            API_GROUP, API_VERSION, "mesosroles", name, body
        )

    @_translate
    def list_framework_leases(self, namespace: str | None) -> dict[str, dict]:
        """Framework heartbeats by "namespace/name": {"renew": renewTime as written, "version":
        resourceVersion, "duration": seconds}. Liveness (liveness.py) only asks whether these
        changed, so the framework's clock is never compared with the master's."""
        coord = self.kube.coordination
        if namespace:
            leases = coord.list_namespaced_lease(
                namespace, label_selector=LABEL_FRAMEWORK, _request_timeout=LEASE_POLL_TIMEOUT
            )
        else:
            leases = coord.list_lease_for_all_namespaces(
                label_selector=LABEL_FRAMEWORK, _request_timeout=LEASE_POLL_TIMEOUT
            )
        return {
            f"{lease.metadata.namespace}/{lease.metadata.name}": {
                "renew": str(lease.spec.renew_time),
                "version": lease.metadata.resource_version,
                "duration": float(lease.spec.lease_duration_seconds or 15),
            }
            for lease in leases.items
        }

    # ---- reads for the start (seed) and the sweep after a re-list: raw JSON, in pages
    @staticmethod
    def _path(kind: str, namespace: str | None = None) -> str:
        if kind in ("nodes", "pods"):
            return f"/api/v1/{kind}"
        if namespace and kind != "mesosroles":
            return f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{kind}"
        return f"/apis/{API_GROUP}/{API_VERSION}/{kind}"

    @_translate
    def list_nodes(self) -> list[dict]:
        return self.kube.list_raw(self._path("nodes"))

    @_translate
    def list_pods(self) -> list[dict]:
        return self.kube.list_raw(self._path("pods"))

    @_translate
    def list(self, plural: str, namespace: str | None) -> list[dict]:
        return self.kube.list_raw(self._path(plural, namespace))

    @_translate
    def list_versions(self, kind: str, namespace: str | None) -> tuple[str, dict[str, str]]:
        """(the list's resourceVersion, {key: resourceVersion}) of a watched kind, metadata only:
        the sweep after a re-list (relist.py). Pods and nodes cluster-wide, as the seed lists them."""
        return self.kube.list_versions(self._path(kind, namespace))

    # ---- the reflectors' reads (reflector.py): on a client of their own, never rate-limited
    @_translate
    def list_kind(self, kind: str) -> tuple[str, list[dict]]:
        return self.kube.list_all(self._path(kind))

    @_translate
    def watch_kind(self, kind: str, resource_version: str, timeout_seconds: int) -> WatchStream:
        return self.kube.watch(self._path(kind), resource_version, timeout_seconds)

    @_translate
    def list_roles(self) -> list[dict]:
        return self.kube.list_raw(self._path("mesosroles"))
