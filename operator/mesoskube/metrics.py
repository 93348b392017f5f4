"""Prometheus metrics of the master: one `mesoskube_` prefix, base units, `_total` counters."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

allocation_runs = Counter("mesoskube_allocation_runs_total", "Allocation cycles run.")
allocation_stage = Histogram(
    "mesoskube_allocation_stage_seconds",
    "Time of each stage of the allocation pipeline (snapshot, allocate, write), by kind of cycle: "
    "sweep (all agents, each interval) or candidates (event-triggered, the agents an event freed).",
    ["stage", "kind"],
    buckets=_LATENCY,
)
passed_over = Counter(
    "mesoskube_allocation_passed_over_total",
    "Agents or frameworks an allocation cycle passed over, by reason.",
    ["reason"],
)
allocation_duration = Histogram(
    "mesoskube_allocation_duration_seconds",
    "Time of one allocation cycle (snapshot, allocator, offer writes).",
    buckets=_LATENCY,
)
allocator_duration = Histogram(
    "mesoskube_allocator_duration_seconds", "Time inside the pure allocator alone.", buckets=_LATENCY
)
offers = Counter("mesoskube_offers_total", "Offers by what became of them.", ["event"])
offer_decision = Histogram(
    "mesoskube_offer_decision_seconds",
    "From offer creation to the framework's answer being seen.",
    buckets=_LATENCY,
)
leader = Gauge("mesoskube_leader", "1 while this master replica holds the election Lease (or runs alone).")
tasks = Gauge("mesoskube_tasks", "Tasks known to the master by Mesos state.", ["state"])
task_launch = Histogram(
    "mesoskube_task_launch_seconds", "From an accept being seen to its task's pod Running.", buckets=_LATENCY
)
role_allocated = Gauge(
    "mesoskube_role_allocated", "Resources held by a role (tasks + offers).", ["role", "resource"]
)
role_share = Gauge("mesoskube_role_dominant_share", "A role's weighted dominant share.", ["role"])
framework_allocated = Gauge(
    "mesoskube_framework_allocated", "Resources held by a framework.", ["framework", "resource"]
)
framework_share = Gauge("mesoskube_framework_dominant_share", "A framework's dominant share.", ["framework"])
agents = Gauge("mesoskube_agents", "Nodes currently offered as agents.")
relist_ghosts = Counter(
    "mesoskube_relist_ghosts_total",
    "Objects found deleted by the LIST that follows a re-list of a watch (their DELETED was missed).",
    ["kind"],
)
watch_lists = Counter(
    "mesoskube_watch_lists_total",
    "LISTs by the master's reflectors (nodes, pods): the first one, and each after a 410 Gone.",
    ["kind"],
)
watch_failures = Counter(
    "mesoskube_watch_failures_total",
    "Failed LISTs and WATCHes of the master's reflectors, each retried after a backoff.",
    ["kind"],
)
api_throttle = Counter(
    "mesoskube_api_throttle_seconds",
    "Seconds requests waited for the client's rate limiter (QPS/burst) before being sent.",
)
api_requests = Counter(
    "mesoskube_api_requests_total", "Requests the master sent to the Kubernetes API.", ["verb", "resource"]
)
