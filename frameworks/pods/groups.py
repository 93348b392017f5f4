"""Which application a pod belongs to, and under which role (pure).

The pods of one application form one Framework in their namespace: Spark's pods share the
`spark-app-selector` label; any other pod names its group in the `mesoskube.io/framework`
annotation or label; a pod naming no group is a framework of its own. The role comes from the
pod's `mesoskube.io/role` annotation or label, else the namespace's, else `*`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mesoskube.api.models import DEFAULT_ROLE, ROLE_NAME

SPARK_APP_LABEL = "spark-app-selector"
FRAMEWORK_KEY = "mesoskube.io/framework"
ROLE_KEY = "mesoskube.io/role"
# Refuse times, set per pod (the Spark translation writes them from spark.mesos.rejectOfferDuration*).
REFUSE_KEY = "mesoskube.io/refuse-seconds"
REFUSE_UNMET_KEY = "mesoskube.io/refuse-seconds-unmet-constraints"

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_ROLE = re.compile(ROLE_NAME)


class GroupError(ValueError):
    """A pod's grouping or role annotation cannot be used; the message names the key and the fix."""


@dataclass(frozen=True, slots=True)
class Group:
    namespace: str
    framework: str  # the Framework's name: a DNS label of at most 63 characters


def _meta(pod: dict, key: str) -> str | None:
    meta = pod.get("metadata") or {}
    return (meta.get("annotations") or {}).get(key) or (meta.get("labels") or {}).get(key)


def framework_name(raw: str) -> str:
    """A DNS label (Framework, Lease and label value) from any group name; long or altered names
    keep a hash of the original so two groups never share a Framework by accident."""
    name = _NOT_DNS.sub("-", raw.lower()).strip("-")
    if name == raw and len(name) <= 63:
        return name
    digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
    return f"{name[:54].strip('-') or 'pods'}-{digest}"


def group_of(pod: dict) -> Group:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    raw = labels.get(SPARK_APP_LABEL) or _meta(pod, FRAMEWORK_KEY) or meta["name"]
    return Group(namespace=meta["namespace"], framework=framework_name(raw))


def role_of(pod: dict, namespace: Mapping | None) -> str:
    role = _meta(pod, ROLE_KEY)
    where = f"pod {pod['metadata']['name']}"
    if role is None and namespace is not None:
        role, where = _meta(namespace, ROLE_KEY), f"namespace {pod['metadata']['namespace']}"
    if role is None:
        return DEFAULT_ROLE
    if not _ROLE.match(role) or len(role) > 128:
        raise GroupError(
            f"{ROLE_KEY}={role!r} on {where} is not a role name (letters, digits, '_', '.', '-', or '*')"
        )
    return role


def refuse_seconds(pod: dict, key: str) -> float | None:
    raw = _meta(pod, key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 31536000:
        raise GroupError(f"{key}={raw!r} on pod {pod['metadata']['name']}: give seconds, 0 to 31536000")
    return value
