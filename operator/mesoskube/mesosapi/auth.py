"""Who may call the HTTP API: a Kubernetes bearer token (TokenReview), allowed by RBAC (SubjectAccessReview)
on the same objects the CR path writes. Results are cached briefly: a framework makes many calls."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from kubernetes import client

from mesoskube import API_GROUP
from mesoskube.kube import Kube

CACHE_SECONDS = 30.0
# The RBAC right each scheduler call needs: the write the same action takes on the CR path.
CALL_RIGHTS = {
    "SUBSCRIBE": ("create", "frameworks"),
    "TEARDOWN": ("delete", "frameworks"),
    "UPDATE_FRAMEWORK": ("patch", "frameworks"),
    "REVIVE": ("patch", "frameworks"),
    "SUPPRESS": ("patch", "frameworks"),
    "RECONCILE": ("patch", "frameworks"),
    "ACCEPT": ("patch", "offers"),
    "DECLINE": ("patch", "offers"),
    "KILL": ("patch", "tasks"),
    "SHUTDOWN": ("patch", "tasks"),
}
READ_RIGHT = ("list", "frameworks")
OTHER_CALL_RIGHT = ("get", "frameworks")  # ACKNOWLEDGE, MESSAGE, ...: no write on the CR path


def call_right(call_type: str) -> tuple[str, str]:
    return CALL_RIGHTS.get(call_type, OTHER_CALL_RIGHT)


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 allowed, 401 not authenticated, 403 denied
    user: str = ""
    message: str = ""


class Authorizer:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._cache: dict[tuple[str, str, str], tuple[float, Verdict]] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None, verb: str | None, resource: str = "frameworks") -> Verdict:
        """Blocking (two API calls at most, then cached). verb None: authentication only."""
        token = (header or "").removeprefix("Bearer ").strip() if (header or "").startswith("Bearer ") else ""
        if not token:
            return Verdict(401, message="Missing 'Authorization: Bearer <Kubernetes token>' header")
        key = (token, verb, resource)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        verdict = self._review(token, verb, resource)
        with self._lock:
            self._cache[key] = (now + CACHE_SECONDS, verdict)
        return verdict

    def _review(self, token: str, verb: str, resource: str) -> Verdict:
        review = self.kube.authentication.create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        )
        st = review.status
        if not st or not st.authenticated or not st.user:
            return Verdict(401, message=(st.error if st else None) or "the token was not accepted")
        user = st.user
        if verb is None:
            return Verdict(200, user.username)
        sar = self.kube.authorization.create_subject_access_review(
            client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=user.username,
                    groups=user.groups,
                    uid=user.uid,
                    extra=user.extra,
                    resource_attributes=client.V1ResourceAttributes(
                        group=API_GROUP, resource=resource, verb=verb, namespace=self.namespace or None
                    ),
                )
            )
        )
        if not sar.status.allowed:
            where = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
            return Verdict(
                403,
                user.username,
                f"'{user.username}' may not {verb} {resource}.{API_GROUP} {where}"
                + (f": {sar.status.reason}" if sar.status.reason else ""),
            )
        return Verdict(200, user.username)
