"""Checking a framework's accept against its offer (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesoskube.api.models import TaskInfo
from mesoskube.resources import Resources


def _port_clash(wanted: list[tuple[str, Resources]]) -> str:
    """Two tasks of one accept on one host port would both be launched on the same node."""
    owner: dict[int, str] = {}
    clashes: list[str] = []
    for name, r in wanted:
        for lo, hi in r.ports:
            for port in range(lo, hi + 1):
                if port in owner and owner[port] != name:
                    clashes.append(f"{port} ({owner[port]} and {name})")
                owner.setdefault(port, name)
                if len(clashes) >= 5:
                    return ", ".join(clashes)
    return ", ".join(clashes)


@dataclass(frozen=True, slots=True)
class AcceptVerdict:
    ok: bool
    message: str = ""
    used: Resources = field(default_factory=Resources)


def check_accept(offered: Resources, tasks: list[TaskInfo], existing_task_names: set[str]) -> AcceptVerdict:
    """All tasks launch, or none: Mesos fails every task of an ACCEPT whose operations exceed the offer."""
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return AcceptVerdict(False, f"task names repeat within the accept: {', '.join(dupes)}")
    taken = sorted(set(names) & existing_task_names)
    if taken:
        return AcceptVerdict(False, f"task names already used in this framework: {', '.join(taken)}")
    wanted = [(t.name, t.resources.to_resources()) for t in tasks]
    clash = _port_clash(wanted)
    if clash:
        return AcceptVerdict(
            False, f"tasks ask for the same host ports: {clash}; give each task its own ports"
        )
    used = Resources.total(r for _, r in wanted)
    short = offered.shortfall(used)
    if short:
        what = "; ".join(f"{name}: {detail}" for name, detail in short.items())
        return AcceptVerdict(
            False,
            f"tasks ask for more than the offer holds ({what}); accept fewer or smaller tasks",
            used,
        )
    return AcceptVerdict(True, used=used)
