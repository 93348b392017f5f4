"""Pure builders of the master's read endpoints (/state, /slaves, /frameworks, /tasks, ...) in Mesos's
JSON (src/master/readonly_handler.cpp), from the objects as the API server lists them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mesoskube.api.models import TERMINAL_TASK_STATES, TaskState
from mesoskube.master.cache import node_info
from mesoskube.mesosapi.protocol import LABEL_MESOS_TASK_ID, MESOS_VERSION
from mesoskube.resources import Resources, format_ranges
from mesoskube.resources import parse_ranges as _parse_ranges

ANNOTATION_NAME = "mesoskube.io/mesos-name"
ANNOTATION_PRINCIPAL = "mesoskube.io/mesos-principal"
ANNOTATION_HOSTNAME = "mesoskube.io/mesos-hostname"
ANNOTATION_WEBUI = "mesoskube.io/mesos-webui-url"


@dataclass
class Snapshot:
    """What the read endpoints show: every kind as listed, plus the master's identity."""

    nodes: list[dict[str, Any]]
    frameworks: list[dict[str, Any]]
    offers: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    host: str = "127.0.0.1"
    port: int = 5050
    master_id: str = "mesoskube"
    start_time: float = field(default_factory=time.time)
    port_range: str = "31000-32000"
    roles: list[dict[str, Any]] = field(default_factory=list)  # MesosRole objects


def _ts(text: str | None) -> float:
    if not text:
        return 0.0
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def resources_dict(r: Resources) -> dict[str, Any]:
    return {
        "cpus": round(r.cpus, 3),
        "gpus": round(r.gpus, 3),
        "mem": round(r.mem, 3),
        "disk": round(r.disk, 3),
        **({"ports": f"[{format_ranges(r.ports).replace(',', ', ')}]"} if r.ports else {}),
    }


def _task_resources(t: dict) -> Resources:
    return Resources.from_mapping((t.get("spec") or {}).get("resources"))


def _offer_resources(o: dict) -> Resources:
    return Resources.from_mapping((o.get("spec") or {}).get("resources"))


def task_state(t: dict) -> str:
    return str((t.get("status") or {}).get("state") or TaskState.STAGING.value)


def is_terminal(t: dict) -> bool:
    return task_state(t) in {s.value for s in TERMINAL_TASK_STATES}


def outstanding(o: dict) -> bool:
    return not (o.get("spec") or {}).get("answer") and (o.get("status") or {}).get("phase") in (
        None,
        "Outstanding",
    )


def framework_id(fw: dict) -> str:
    return fw["metadata"]["name"]


def task_json(t: dict) -> dict[str, Any]:
    meta, spec, status = t["metadata"], t.get("spec") or {}, t.get("status") or {}
    labels = spec.get("labels") or {}
    state = task_state(t)
    statuses = []
    for key, st in (("launchedAt", "TASK_STAGING"), ("runningAt", "TASK_RUNNING"), ("finishedAt", state)):
        if status.get(key):
            statuses.append({"state": st, "timestamp": _ts(status[key])})
    container = spec.get("container") or {}
    out: dict[str, Any] = {
        "id": labels.get(LABEL_MESOS_TASK_ID) or meta["name"],
        "name": meta["name"],
        "framework_id": spec.get("framework"),
        "executor_id": spec.get("executor") or "",
        "slave_id": spec.get("agent"),
        "state": state,
        "resources": resources_dict(_task_resources(t)),
        "role": spec.get("role") or "*",
        "labels": [{"key": k, "value": v} for k, v in sorted(labels.items())],
        "statuses": statuses,
        "container": {"type": "DOCKER", "docker": {"image": container.get("image") or ""}},
    }
    if status.get("message"):
        out["message"] = status["message"]
    return out


def _agents(snap: Snapshot) -> list[dict[str, Any]]:
    used: dict[str, Resources] = {}
    offered: dict[str, Resources] = {}
    for t in snap.tasks:
        if not is_terminal(t):
            a = (t.get("spec") or {}).get("agent")
            used[a] = used.get(a, Resources()) + _task_resources(t)
    for o in snap.offers:
        if outstanding(o):
            a = (o.get("spec") or {}).get("agent")
            offered[a] = offered.get(a, Resources()) + _offer_resources(o)
    ports = _parse_ranges(snap.port_range)
    out = []
    for body in snap.nodes:
        n = node_info(body)
        total = Resources(
            cpus=n.allocatable.cpus,
            mem=n.allocatable.mem,
            disk=n.allocatable.disk,
            gpus=n.allocatable.gpus,
            ports=ports,
        )
        u, off = used.get(n.name, Resources()), offered.get(n.name, Resources())
        created = _ts(body["metadata"].get("creationTimestamp"))
        out.append(
            {
                "id": n.name,
                "hostname": n.name,
                "port": 5051,
                "pid": f"slave(1)@{n.name}:5051",
                "attributes": dict(sorted(n.labels.items())),
                "resources": resources_dict(total),
                "used_resources": resources_dict(u),
                "offered_resources": resources_dict(off),
                "reserved_resources": {},
                "unreserved_resources": resources_dict(total),
                "active": n.offerable,
                "registered_time": created,
                "version": MESOS_VERSION,
                "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
            }
        )
    return out


def _framework(fw: dict, tasks: list[dict], offers: list[dict]) -> dict[str, Any]:
    meta, spec, status = fw["metadata"], fw.get("spec") or {}, fw.get("status") or {}
    ann = meta.get("annotations") or {}
    fid = framework_id(fw)
    mine = [
        t
        for t in tasks
        if (t.get("spec") or {}).get("framework") == fid
        and t["metadata"].get("namespace") == meta.get("namespace")
    ]
    live = [t for t in mine if not is_terminal(t)]
    done = [t for t in mine if is_terminal(t)]
    my_offers = [
        o
        for o in offers
        if (o.get("spec") or {}).get("framework") == fid
        and outstanding(o)
        and o["metadata"].get("namespace") == meta.get("namespace")
    ]
    phase = status.get("phase")
    return {
        "id": fid,
        "name": ann.get(ANNOTATION_NAME) or fid,
        "namespace": meta.get("namespace"),
        "active": phase == "Subscribed" and not spec.get("suppress"),
        "connected": phase == "Subscribed",
        "recovered": False,
        "hostname": ann.get(ANNOTATION_HOSTNAME) or "",
        "webui_url": ann.get(ANNOTATION_WEBUI) or "",
        "user": spec.get("user") or "",
        "principal": ann.get(ANNOTATION_PRINCIPAL) or "",
        "failover_timeout": float(spec.get("failoverTimeoutSeconds") or 0),
        "checkpoint": True,
        "capabilities": list(spec.get("capabilities") or []),
        "registered_time": _ts(status.get("subscribedAt") or meta.get("creationTimestamp")),
        "unregistered_time": 0,
        "role": (spec.get("roles") or ["*"])[0],
        "roles": list(spec.get("roles") or ["*"]),
        "used_resources": resources_dict(Resources.total(_task_resources(t) for t in live)),
        "offered_resources": resources_dict(Resources.total(_offer_resources(o) for o in my_offers)),
        "resources": resources_dict(Resources.total(_task_resources(t) for t in live)),
        "tasks": [task_json(t) for t in live],
        "unreachable_tasks": [],
        "completed_tasks": [task_json(t) for t in done],
        "offers": [
            {
                "id": o["metadata"]["name"],
                "framework_id": fid,
                "slave_id": o["spec"]["agent"],
                "resources": resources_dict(_offer_resources(o)),
            }
            for o in my_offers
        ],
        "executors": [],
        "dominant_share": status.get("dominantShare"),
    }


def frameworks(snap: Snapshot) -> dict[str, Any]:
    live = [f for f in snap.frameworks if (f.get("status") or {}).get("phase") != "TornDown"]
    gone = [f for f in snap.frameworks if (f.get("status") or {}).get("phase") == "TornDown"]
    return {
        "frameworks": [_framework(f, snap.tasks, snap.offers) for f in live],
        "completed_frameworks": [_framework(f, snap.tasks, snap.offers) for f in gone],
        "unregistered_frameworks": [],
    }


def slaves(snap: Snapshot) -> dict[str, Any]:
    return {"slaves": _agents(snap), "recovered_slaves": []}


def tasks(snap: Snapshot, query: dict[str, str]) -> dict[str, Any]:
    """/tasks: limit (default 100, -1 = all), offset, order (asc|des by launch), framework_id, task_id."""
    try:
        limit = int(query.get("limit", 100))
        offset = int(query.get("offset", 0))
    except ValueError:
        raise ValueError("limit and offset must be integers") from None
    order = query.get("order", "des")
    if order not in ("asc", "des"):
        raise ValueError(f"order must be 'asc' or 'des', not '{order}'")

    def launched(t: dict) -> float:
        return _ts((t.get("status") or {}).get("launchedAt") or t["metadata"].get("creationTimestamp"))

    ordered = sorted(snap.tasks, key=lambda t: (launched(t), t["metadata"]["name"]), reverse=order == "des")
    items = [task_json(t) for t in ordered]
    if query.get("framework_id"):
        items = [t for t in items if t["framework_id"] == query["framework_id"]]
    if query.get("task_id"):
        items = [t for t in items if t["id"] == query["task_id"]]
    items = items[offset:] if limit < 0 else items[offset : offset + limit]
    return {"tasks": items}


def state(snap: Snapshot) -> dict[str, Any]:
    fws = frameworks(snap)
    agents = _agents(snap)
    return {
        "version": MESOS_VERSION,
        "git_sha": "",
        "build_date": "",
        "build_user": "mesoskube",
        "id": snap.master_id,
        "pid": f"master@{snap.host}:{snap.port}",
        "hostname": snap.host,
        "leader": f"master@{snap.host}:{snap.port}",
        "leader_info": leader_info(snap),
        "start_time": snap.start_time,
        "elected_time": snap.start_time,
        "activated_slaves": sum(1 for a in agents if a["active"]),
        "deactivated_slaves": sum(1 for a in agents if not a["active"]),
        "unreachable_slaves": 0,
        "flags": {"port": str(snap.port), "authenticate_frameworks": "false"},
        "slaves": agents,
        "recovered_slaves": [],
        **fws,
        "orphan_tasks": [],
    }


def leader_info(snap: Snapshot) -> dict[str, Any]:
    return {
        "id": snap.master_id,
        "hostname": snap.host,
        "port": snap.port,
        "pid": f"master@{snap.host}:{snap.port}",
        "version": MESOS_VERSION,
        "address": {"hostname": snap.host, "ip": snap.host, "port": snap.port},
    }


def state_summary(snap: Snapshot) -> dict[str, Any]:
    agents = _agents(snap)
    fws = frameworks(snap)["frameworks"]
    out_agents = []
    for a in agents:
        on = [t for t in snap.tasks if (t.get("spec") or {}).get("agent") == a["id"]]
        counts = {s.value: 0 for s in TaskState}
        for t in on:
            counts[task_state(t)] = counts.get(task_state(t), 0) + 1
        out_agents.append(
            {**a, **counts, "framework_ids": sorted({(t.get("spec") or {}).get("framework") for t in on})}
        )
    return {
        "hostname": snap.host,
        "cluster": "mesoskube",
        "slaves": out_agents,
        "frameworks": [
            {
                k: f[k]
                for k in (
                    "id",
                    "name",
                    "active",
                    "connected",
                    "roles",
                    "used_resources",
                    "offered_resources",
                    "hostname",
                    "webui_url",
                    "user",
                )
            }
            | {"slave_ids": sorted({t["slave_id"] for t in f["tasks"]})}
            for f in fws
        ],
    }


def metrics_snapshot(snap: Snapshot, uptime: float) -> dict[str, float]:
    agents = _agents(snap)
    fws = frameworks(snap)
    out: dict[str, float] = {
        "master/elected": 1.0,
        "master/uptime_secs": round(uptime, 3),
        "master/slaves_active": float(sum(1 for a in agents if a["active"])),
        "master/slaves_inactive": float(sum(1 for a in agents if not a["active"])),
        "master/slaves_connected": float(len(agents)),
        "master/frameworks_active": float(sum(1 for f in fws["frameworks"] if f["active"])),
        "master/frameworks_connected": float(sum(1 for f in fws["frameworks"] if f["connected"])),
        "master/frameworks_disconnected": float(sum(1 for f in fws["frameworks"] if not f["connected"])),
        "master/outstanding_offers": float(sum(1 for o in snap.offers if outstanding(o))),
    }
    for s in TaskState:
        out[f"master/tasks_{s.value.removeprefix('TASK_').lower()}"] = float(
            sum(1 for t in snap.tasks if task_state(t) == s.value)
        )
    for name in ("cpus", "mem", "disk", "gpus"):
        total = sum(a["resources"][name] for a in agents)
        used = sum(a["used_resources"][name] for a in agents)
        out[f"master/{name}_total"] = float(total)
        out[f"master/{name}_used"] = float(used)
        out[f"master/{name}_percent"] = float(used / total) if total else 0.0
    return out


def roles(snap: Snapshot) -> dict[str, Any]:
    """/roles: every role with a MesosRole or a framework; resources = its live tasks' resources,
    dominant_share = max over cpus and mem of its share of the agents' total (unweighted, as Mesos shows)."""
    agents = _agents(snap)
    total = {k: sum(a["resources"][k] for a in agents) for k in ("cpus", "mem")}
    objs = {r["metadata"]["name"]: r for r in snap.roles}
    live_fws = [f for f in snap.frameworks if (f.get("status") or {}).get("phase") != "TornDown"]
    names = set(objs) | {r for f in live_fws for r in (f.get("spec") or {}).get("roles") or ["*"]}
    out = []
    for name in sorted(names):
        spec = (objs.get(name) or {}).get("spec") or {}
        used = Resources.total(
            _task_resources(t)
            for t in snap.tasks
            if not is_terminal(t) and ((t.get("spec") or {}).get("role") or "*") == name
        )
        share = max(
            (used.cpus / total["cpus"]) if total["cpus"] else 0,
            (used.mem / total["mem"]) if total["mem"] else 0,
        )
        out.append(
            {
                "name": name,
                "weight": float(spec.get("weight") or 1.0),
                "quota": {k: v for k, v in (spec.get("quota") or {}).items() if v is not None},
                "frameworks": sorted(
                    framework_id(f) for f in live_fws if name in ((f.get("spec") or {}).get("roles") or ["*"])
                ),
                "resources": resources_dict(used),
                "dominant_share": round(share, 4),
            }
        )
    return {"roles": out}
