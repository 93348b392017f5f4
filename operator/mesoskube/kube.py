"""The small client layer: the only module that builds Kubernetes API clients.

Handlers and tools get typed API objects from here; nothing else reads kubeconfigs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines

from mesoskube import API_GROUP, API_VERSION, metrics

# What the API server answers for some seconds about itself or a namespace, not about the request,
# which passes once it is ready (retried as transient by the master's writer and the SDK):
# - 422 from an admission policy with a paramKind, until a restarted server has rediscovered the
#   param's CRD;
# - 403 from NamespaceLifecycle admission, until a restarted server's informers synced;
# - 403 from ServiceAccount admission for a pod in a namespace whose `default` ServiceAccount the
#   controller-manager has not made yet (make chaos: the first pods of a fresh namespace, up to 275
#   launches of one run refused "Forbidden"). A missing ServiceAccount of another name is not:
#   nothing will make it.
NOT_READY: tuple[tuple[int, re.Pattern[str]], ...] = (
    (422, re.compile("failed to configure policy")),
    (403, re.compile("not yet ready to handle request")),
    (
        403,
        re.compile(
            r'error looking up service account [^/]+/default: serviceaccount \\?"default\\?" not found'
        ),
    ),
)


def not_ready(status: int | None, body: str) -> bool:
    return any(status == code and words.search(body) for code, words in NOT_READY)


_PRIORITY = threading.local()


@contextlib.contextmanager
def deferrable() -> Iterator[None]:
    """Requests sent inside wait behind the client's others (RateLimiter.wait): what the master
    reports (Task status, Events) yields to what it offers and launches."""
    before = getattr(_PRIORITY, "deferrable", False)
    _PRIORITY.deferrable = True
    try:
        yield
    finally:
        _PRIORITY.deferrable = before


class RateLimiter:
    """Token bucket like client-go's (qps, burst), so mesoskube and kube-scheduler compare at equal QPS.

    A request may book a token ahead (the bucket goes into debt and it sleeps until its turn), as
    client-go's does; a deferrable one (`deferrable()`) may not: it waits until the bucket holds a
    whole token again, so every request booked ahead goes first, for at most `max_defer` seconds,
    after which it books like the others (a status is late, never lost)."""

    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_defer: float = 2.0,
    ) -> None:
        self.qps, self.burst = qps, max(1, burst)
        self.clock, self.sleep = clock, sleep
        self.max_defer = max_defer
        self.tokens = float(self.burst)
        self.stamp = clock()
        self.lock = threading.Lock()

    def wait(self, deferrable: bool | None = None) -> float:
        """Take a token, sleeping until one is due; returns the seconds slept. `deferrable`: as
        the calling thread's `deferrable()` says unless given."""
        if self.qps <= 0:
            return 0.0
        if deferrable is None:
            deferrable = getattr(_PRIORITY, "deferrable", False)
        waited = 0.0
        while deferrable and waited < self.max_defer:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
                self.stamp = now
                if self.tokens >= 1 - 1e-9:  # float sums of elapsed time fall short by a hair
                    self.tokens -= 1
                    return waited
                pause = min(max((1 - self.tokens) / self.qps, 1e-3), self.max_defer - waited)
            self.sleep(pause)
            waited += pause
        return waited + self._book()

    def _book(self) -> float:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
            self.stamp = now
            self.tokens -= 1
            delay = -self.tokens / self.qps if self.tokens < 0 else 0.0
        if delay:
            self.sleep(delay)
        return delay


def _verb(method: str, path: str, query: str = "") -> str:
    m = method.upper()
    if m == "GET" and "watch=true" in query.split("&"):
        return "watch"
    if m == "GET":
        return "get" if _resource_of(path) != path.rstrip("/").rsplit("/", 1)[-1] else "list"
    if m == "DELETE" and _resource_of(path) == path.rstrip("/").rsplit("/", 1)[-1]:
        return "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(m, m.lower())


def _resource_of(path: str) -> str:
    # /api/v1/namespaces/{ns}/pods/{name} or /apis/{g}/{v}/namespaces/{ns}/offers/{name}/status
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    known = ("pods", "nodes", "frameworks", "offers", "tasks", "mesosroles", "leases", "events", "namespaces")
    found = [p for p in parts if p in known]
    return found[-1] if found else "other"


class CountingApiClient(client.ApiClient):
    """Counts every request by verb and resource, and paces them through a RateLimiter."""

    limiter: RateLimiter | None = None

    def call_api(self, method, url, *args, **kwargs):  # type: ignore[override]
        if self.limiter is not None and (waited := self.limiter.wait()):
            metrics.api_throttle.inc(waited)
        parts = urlsplit(url)
        metrics.api_requests.labels(
            verb=_verb(method, parts.path, parts.query), resource=_resource_of(parts.path)
        ).inc()
        return super().call_api(method, url, *args, **kwargs)


def api_client(
    kubeconfig: str | None = None, pool: int = 32, qps: float = 0, burst: int = 0
) -> client.ApiClient:
    """An ApiClient from a kubeconfig path, $KUBECONFIG, or the in-cluster service account.

    qps > 0 paces requests (token bucket with `burst`); 0 leaves them unpaced.
    """
    cfg = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_kube_config(config_file=path, client_configuration=cfg)
    else:
        config.load_incluster_config(client_configuration=cfg)
    # The default pool of 4 connections serialises a busy master; one per worker thread instead.
    cfg.connection_pool_maxsize = pool
    api = CountingApiClient(cfg)
    if qps > 0:
        api.limiter = RateLimiter(qps, burst or int(qps * 2))
    return api


class WatchStream:
    """The events of one WATCH (dicts, as the API server sent them) until the server ends it, an
    error, or `close()` from another thread."""

    def __init__(self, response) -> None:  # urllib3's response, unread
        self.response = response
        self.ended = False  # read to its end: the connection went back to the pool

    def __iter__(self) -> Iterator[dict]:
        for line in iter_resp_lines(self.response):
            if line:
                yield json.loads(line)
        self.ended = True
        self.response.release_conn()

    def close(self) -> None:
        """Unblock the reading thread: shut the socket down (closing it from here could wait on
        the SSL lock that thread holds while it reads, as the client's Watch.stop notes); the pool
        opens a new connection in its place."""
        if self.ended:
            return
        sock = getattr(getattr(self.response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Kube:
    """Typed API groups over one ApiClient."""

    api: client.ApiClient

    @classmethod
    def connect(cls, kubeconfig: str | None = None, qps: float = 0, burst: int = 0) -> Kube:
        return cls(api_client(kubeconfig, qps=qps, burst=burst))

    def sibling(self) -> Kube:
        """Another client over the same configuration (server, credentials, the token refresh
        hook), with connections of its own and no rate limiter: for long-running watches, which
        would otherwise hold connections of the writers' pool."""
        return Kube(CountingApiClient(self.api.configuration))

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @cached_property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    @cached_property
    def apiext(self) -> client.ApiextensionsV1Api:
        return client.ApiextensionsV1Api(self.api)

    @cached_property
    def authentication(self) -> client.AuthenticationV1Api:
        return client.AuthenticationV1Api(self.api)

    @cached_property
    def authorization(self) -> client.AuthorizationV1Api:
        return client.AuthorizationV1Api(self.api)

    @cached_property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    def whoami(self) -> str:
        """The username this client authenticates as (SelfSubjectReview, GA since Kubernetes 1.28):
        a Framework's spec.principal, which admission checks against the creating user."""
        review = client.AuthenticationV1Api(self.api).create_self_subject_review(client.V1SelfSubjectReview())
        return review.status.user_info.username

    # Custom resources of our group, by plural.
    def create(self, plural: str, namespace: str, body: dict) -> dict:
        return self.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, body)

    def get(self, plural: str, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, name)

    def list(self, plural: str, namespace: str | None = None, **kw) -> list[dict]:
        if namespace:
            res = self.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, **kw)
        else:
            res = self.custom.list_cluster_custom_object(API_GROUP, API_VERSION, plural, **kw)
        return res["items"]

    def list_pages(self, path: str, metadata_only: bool = False, page: int = 500) -> Iterator[dict]:
        """Each page (the raw JSON list) of a LIST of `path` ("/api/v1/nodes",
        "/apis/GROUP/VERSION/PLURAL", ...), not turned into the generated client's models (about
        10 ms of CPU per pod and back); `metadata_only` asks for a PartialObjectMetadataList (names
        and versions, not bodies). Pages after the first read the first page's snapshot."""
        accept = "application/json"
        if metadata_only:
            accept = f"application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,{accept}"
        token = None
        while True:
            query = [("limit", page)] + ([("continue", token)] if token else [])
            got = json.loads(self._get(path, query, accept, read_timeout=120).read())
            yield got
            token = (got.get("metadata") or {}).get("continue")
            if not token:
                return

    def _get(self, path: str, query: list, accept: str, read_timeout: float):
        """A raw GET (the response unread, the client's models skipped); a non-2xx answer raises
        ApiException with the server's Status as its body (its message says why)."""
        method, url, headers, body, post = self.api.param_serialize(
            "GET", path, query_params=query, header_params={"Accept": accept}, auth_settings=["BearerToken"]
        )
        resp = self.api.call_api(
            method,
            url,
            header_params=headers,
            body=body,
            post_params=post,
            _request_timeout=(10, read_timeout),
        )
        if not 200 <= resp.status < 300:
            error = client.ApiException(status=resp.status, reason=resp.reason)
            error.body = resp.read().decode(errors="replace")
            raise error
        return resp

    def list_raw(self, path: str) -> list[dict]:
        """Every object at `path`, as plain dicts (list_pages)."""
        return [item for got in self.list_pages(path) for item in got.get("items") or []]

    def list_versions(self, path: str) -> tuple[str, dict[str, str]]:
        """(the list's resourceVersion, {"ns/name" or "name": resourceVersion}) for every object at
        `path`, read as metadata only: a sweep of a large kind costs names, not bodies."""
        versions: dict[str, str] = {}
        list_rv = ""
        for got in self.list_pages(path, metadata_only=True):
            list_rv = list_rv or (got.get("metadata") or {}).get("resourceVersion", "")
            for item in got.get("items") or []:
                m = item["metadata"]
                key = f"{m['namespace']}/{m['name']}" if m.get("namespace") else m["name"]
                versions[key] = m.get("resourceVersion", "")
        return list_rv, versions

    def list_all(self, path: str) -> tuple[str, list[dict]]:
        """(the list's resourceVersion, every object at `path`), in pages of one snapshot: where a
        WATCH of `path` resumes without missing or repeating an event."""
        list_rv, items = "", []
        for got in self.list_pages(path):
            list_rv = list_rv or (got.get("metadata") or {}).get("resourceVersion", "")
            items += got.get("items") or []
        return list_rv, items

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> WatchStream:
        """A WATCH of `path` from `resource_version`, with bookmarks, which the API server ends
        after `timeout_seconds`; the connection is dropped if nothing (not even a bookmark, sent
        about once a minute) arrives for `timeout_seconds` + 60 s."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        ]
        resp = self._get(path, query, "application/json", read_timeout=timeout_seconds + 60)
        return WatchStream(resp.response)

    def patch(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, plural, name, body
        )

    def patch_status(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        return self.custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, namespace, plural, name, body
        )

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, name)

    def delete_collection(self, plural: str, namespace: str, field_selector: str) -> None:
        """One request deleting every matching object (the CRD must declare the field selectable)."""
        self.custom.delete_collection_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, plural, field_selector=field_selector
        )

    def create_pod(self, namespace: str, body: dict) -> dict:
        """POST a pod and return the API server's answer as a plain dict. The generated client would
        build a V1Pod model from the answer, which the master then turns back into a dict: about
        10 ms of CPU per pod, the largest share of the launch path's own CPU (bench-scale profile)."""
        resp = self.core.create_namespaced_pod(namespace, body, _preload_content=False)
        try:
            return json.loads(resp.data)
        finally:
            resp.release_conn()

    def bind_pod(self, namespace: str, binding: dict) -> None:
        """POST pods/NAME/binding (what kube-scheduler writes); a uid in the Binding's metadata
        makes the API server refuse it when the pod was replaced."""
        name = binding["metadata"]["name"]
        # The generated client cannot read the Status the API server answers with; skip reading it.
        self.core.create_namespaced_pod_binding(name, namespace, binding, _preload_content=False)
