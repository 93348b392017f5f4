"""Mesos resources: scalar cpus/mem/disk/gpus and port ranges, with the arithmetic offers need.

Scalars keep three decimals as Mesos does, so sums of many small tasks do not drift.
Memory and disk are in MB (2**20 bytes), as in Mesos.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SCALARS = ("cpus", "mem", "disk", "gpus")
PortRange = tuple[int, int]  # inclusive bounds, as Mesos `ranges`


def normalize_ranges(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, merged, non-empty inclusive ranges."""
    if type(ranges) is tuple and len(ranges) == 1:  # the common case: one range (a port, a span)
        lo, hi = ranges[0]
        return ((lo, hi),) if lo <= hi else ()
    merged: list[list[int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def subtract_ranges(a: Iterable[PortRange], b: Iterable[PortRange]) -> tuple[PortRange, ...]:
    result = list(normalize_ranges(a))
    for blo, bhi in normalize_ranges(b):
        nxt: list[PortRange] = []
        for lo, hi in result:
            if bhi < lo or blo > hi:
                nxt.append((lo, hi))
                continue
            if lo < blo:
                nxt.append((lo, blo - 1))
            if bhi < hi:
                nxt.append((bhi + 1, hi))
        result = nxt
    return normalize_ranges(result)


def ranges_contain(outer: Iterable[PortRange], inner: Iterable[PortRange]) -> bool:
    return not subtract_ranges(inner, outer)


def count_ports(ranges: Iterable[PortRange]) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


def format_ranges(ranges: Iterable[PortRange]) -> str:
    return ",".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in ranges)


def parse_ranges(text: str) -> tuple[PortRange, ...]:
    """'31000-32000,8080' -> ((8080, 8080), (31000, 32000))."""
    out: list[PortRange] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return normalize_ranges(out)


@dataclass(frozen=True, slots=True)
class Resources:
    """An immutable bag of Mesos resources."""

    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    gpus: float = 0.0
    ports: tuple[PortRange, ...] = field(default=())

    def __post_init__(self) -> None:
        # Unrolled: every snapshot and allocation builds tens of thousands of these.
        put = object.__setattr__
        put(self, "cpus", round(self.cpus + 0.0, 3))
        put(self, "mem", round(self.mem + 0.0, 3))
        put(self, "disk", round(self.disk + 0.0, 3))
        put(self, "gpus", round(self.gpus + 0.0, 3))
        ports = self.ports
        if ports:
            put(self, "ports", normalize_ranges(ports))
        elif ports != ():
            put(self, "ports", ())

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cpus=self.cpus + other.cpus,
            mem=self.mem + other.mem,
            disk=self.disk + other.disk,
            gpus=self.gpus + other.gpus,
            ports=self.ports + other.ports,
        )

    def __sub__(self, other: Resources) -> Resources:
        """Subtraction clamped at zero (an agent can be over-committed by pods we do not own)."""
        return Resources(
            cpus=max(0.0, self.cpus - other.cpus),
            mem=max(0.0, self.mem - other.mem),
            disk=max(0.0, self.disk - other.disk),
            gpus=max(0.0, self.gpus - other.gpus),
            ports=subtract_ranges(self.ports, other.ports),
        )

    def contains(self, other: Resources) -> bool:
        return (
            self.cpus >= other.cpus
            and self.mem >= other.mem
            and self.disk >= other.disk
            and self.gpus >= other.gpus
            and (not other.ports or ranges_contain(self.ports, other.ports))
        )

    def shortfall(self, wanted: Resources) -> dict[str, str]:
        """What `wanted` asks beyond `self`, per resource name, in words a person can act on."""
        short: dict[str, str] = {}
        for n in SCALARS:
            have, want = getattr(self, n), getattr(wanted, n)
            if want > have:
                short[n] = f"asked {want:.10g}, offered {have:.10g}"
        missing = subtract_ranges(wanted.ports, self.ports)
        if missing:
            short["ports"] = (
                f"asked {format_ranges(missing)} not in offered {format_ranges(self.ports) or 'none'}"
            )
        return short

    def min_with(self, cap: Resources) -> Resources:
        return Resources(
            cpus=min(self.cpus, cap.cpus),
            mem=min(self.mem, cap.mem),
            disk=min(self.disk, cap.disk),
            gpus=min(self.gpus, cap.gpus),
            ports=self.ports,
        )

    def scalars(self) -> dict[str, float]:
        return {n: getattr(self, n) for n in SCALARS}

    def is_empty(self) -> bool:
        return not (self.cpus > 0 or self.mem > 0 or self.disk > 0 or self.gpus > 0 or self.ports)

    @classmethod
    def total(cls, items: Iterable[Resources]) -> Resources:
        acc = cls()
        for r in items:
            acc = acc + r
        return acc

    @classmethod
    def from_mapping(cls, m: Mapping[str, object] | None) -> Resources:
        """From the CRD form: {'cpus': 1, 'mem': 512, 'ports': '31000-31010'} (ports may be a list)."""
        if not m:
            return cls()
        ports = m.get("ports") or ()
        if isinstance(ports, str):
            parsed = parse_ranges(ports)
        else:
            parsed = tuple(
                (int(p["begin"]), int(p["end"])) if isinstance(p, Mapping) else (int(p), int(p))
                for p in ports
            )  # type: ignore[union-attr]
        return cls(
            cpus=float(m.get("cpus") or 0),  # type: ignore[arg-type]
            mem=float(m.get("mem") or 0),  # type: ignore[arg-type]
            disk=float(m.get("disk") or 0),  # type: ignore[arg-type]
            gpus=float(m.get("gpus") or 0),  # type: ignore[arg-type]
            ports=parsed,
        )

    def to_mapping(self) -> dict[str, object]:
        """The CRD form; zero scalars and empty ports are left out so objects stay small."""
        out: dict[str, object] = {n: v for n, v in self.scalars().items() if v}
        if self.ports:
            out["ports"] = format_ranges(self.ports)
        return out

    def __str__(self) -> str:
        parts = [f"{n}:{v:.10g}" for n, v in self.scalars().items() if v]
        if self.ports:
            parts.append(f"ports:[{format_ranges(self.ports)}]")
        return ";".join(parts) or "(none)"
