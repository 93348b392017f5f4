"""Spark-on-Mesos configuration: the real `spark.*` keys, their defaults (written once, in KEYS),
parsed into a typed `SparkConf`.

Values follow Spark's own parsers: sizes as JavaUtils.byteStringAsMb ("512m", "2g", plain number =
MiB), durations as JavaUtils.timeStringAs ("120s", "2min", plain number = seconds), integers where
Spark calls `.toInt`. Unknown keys are warned about (Spark ignores them silently, which hides
typos); a bad value raises `SparkConfError` naming the key and what is expected.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mesoskube.api.models import ROLE_NAME
from mesoskube.frameworks.spark.constraints import Constraints, ConstraintSyntaxError, parse_constraints

log = logging.getLogger(__name__)

# Spark MesosSchedulerUtils: executor memory overhead = max(MEMORY_OVERHEAD_FRACTION * memory,
# MEMORY_OVERHEAD_MINIMUM) unless spark.mesos.executor.memoryOverhead is set.
MEMORY_OVERHEAD_FRACTION = 0.10
MEMORY_OVERHEAD_MINIMUM = 384
# MesosCoarseGrainedSchedulerBackend.MAX_SLAVE_FAILURES: agents with this many failed executors
# get no more executors.
MAX_AGENT_FAILURES = 2
# TaskSetManager: spark.task.maxFailures default (a task failing this often fails the job).
TASK_MAX_FAILURES = 4


class SparkConfError(ValueError):
    """A `spark.*` value that does not parse; the message names the key and what is expected."""


_SIZE_UNITS = {
    "b": 1 / 2**20,
    "k": 1 / 1024,
    "kb": 1 / 1024,
    "m": 1,
    "mb": 1,
    "g": 1024,
    "gb": 1024,
    "t": 1024**2,
    "tb": 1024**2,
    "p": 1024**3,
    "pb": 1024**3,
}
_TIME_UNITS = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_size_mb(text: str) -> int:
    """'512m' -> 512, '2g' -> 2048, '1024' -> 1024 (MiB when no unit, as spark.executor.memory)."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m:
        raise ValueError("a whole number with an optional unit, e.g. 512m, 2g, 1024")
    unit = m.group(2).lower() or "m"
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unit {m.group(2)!r} is not one of b, k, m, g, t, p (e.g. 512m or 2g)")
    return math.floor(int(m.group(1)) * _SIZE_UNITS[unit])


def parse_duration_s(text: str) -> float:
    """'120s' -> 120.0, '2min' -> 120.0, '500ms' -> 0.5, '30' -> 30.0 (seconds when no unit)."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m:
        raise ValueError("a whole number with an optional unit, e.g. 120s, 2min, 500ms")
    unit = m.group(2).lower() or "s"
    if unit not in _TIME_UNITS:
        raise ValueError(f"unit {m.group(2)!r} is not one of us, ms, s, m, min, h, d (e.g. 120s)")
    return int(m.group(1)) * _TIME_UNITS[unit]


def parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    raise ValueError("true or false")


def _int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise ValueError(f"a whole number >= {minimum}") from None
        if v < minimum:
            raise ValueError(f"a whole number >= {minimum}")
        return v

    return parse


def _float(minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text.strip())
        except ValueError:
            raise ValueError(f"a number >= {minimum:g}") from None
        if not math.isfinite(v) or v < minimum:
            raise ValueError(f"a number >= {minimum:g}")
        return v

    return parse


def _text(text: str) -> str:
    return text.strip()


def _role(text: str) -> str:
    v = text.strip()
    if not re.fullmatch(ROLE_NAME, v):
        raise ValueError(
            "a Mesos role name: letters, digits, '_', '.', '-' (not starting with '.' or '-'), or *"
        )
    return v


def _constraints(text: str) -> Constraints:
    try:
        return parse_constraints(text)
    except ConstraintSyntaxError as e:
        raise ValueError(str(e)) from None


@dataclass(frozen=True)
class ConfKey:
    name: str
    field: str  # SparkConf attribute
    default: str | None  # as the user would write it; None = unset
    parse: Callable[[str], Any]
    doc: str


# The reference table (reference/mesos-semantics.md), written once.
KEYS: dict[str, ConfKey] = {
    k.name: k
    for k in (
        ConfKey("spark.app.name", "app_name", "emulated-spark", _text, "application (and framework) name"),
        ConfKey(
            "spark.mesos.coarse",
            "coarse",
            "true",
            parse_bool,
            "true: one long-lived task per executor; false: fine-grained, one task per Spark task",
        ),
        ConfKey(
            "spark.cores.max",
            "cores_max",
            None,
            _int(1),
            "total cores for the app (coarse), rounded down to a multiple of spark.executor.cores; "
            "unset = all offered",
        ),
        ConfKey(
            "spark.executor.cores",
            "executor_cores",
            None,
            _int(1),
            "cores per executor (coarse); unset = one executor per agent taking what is offered",
        ),
        ConfKey("spark.executor.memory", "executor_memory_mb", "1g", parse_size_mb, "executor heap (MiB)"),
        ConfKey(
            "spark.mesos.executor.memoryOverhead",
            "memory_overhead_mb",
            None,
            parse_size_mb,
            "extra memory per executor in MiB; unset = max(384, 10% of spark.executor.memory)",
        ),
        ConfKey(
            "spark.mesos.extra.cores",
            "extra_cores",
            "0",
            _int(0),
            "coarse: cores advertised to the driver beyond those allocated",
        ),
        ConfKey(
            "spark.mesos.mesosExecutor.cores",
            "mesos_executor_cores",
            "1.0",
            _float(0),
            "fine: cores the per-agent executor holds even when idle",
        ),
        ConfKey("spark.task.cpus", "task_cpus", "1", _int(1), "cpus of each Spark task"),
        ConfKey(
            "spark.mesos.constraints",
            "constraints",
            "",
            _constraints,
            "attr:v1,v2;attr2 -- offers whose agent attributes do not match are declined",
        ),
        ConfKey(
            "spark.mesos.driver.constraints",
            "driver_constraints",
            "",
            _constraints,
            "cluster deploy mode: spark.mesos.constraints for the driver (real Spark only)",
        ),
        ConfKey("spark.mesos.role", "role", None, _role, "framework role (unset = '*')"),
        ConfKey(
            "spark.mesos.rejectOfferDuration",
            "reject_offer_duration_s",
            "120s",
            parse_duration_s,
            "decline duration for offers the app will not use",
        ),
        ConfKey(
            "spark.mesos.rejectOfferDurationForUnmetConstraints",
            "reject_unmet_constraints_s",
            None,
            parse_duration_s,
            "decline duration for offers failing spark.mesos.constraints (default rejectOfferDuration)",
        ),
        ConfKey(
            "spark.mesos.rejectOfferDurationForReachedMaxCores",
            "reject_reached_max_cores_s",
            None,
            parse_duration_s,
            "decline duration once spark.cores.max is reached (default rejectOfferDuration)",
        ),
        ConfKey("spark.mesos.gpus.max", "gpus_max", "0", _int(0), "GPUs for the app"),
        ConfKey(
            "spark.mesos.driver.failoverTimeout",
            "failover_timeout_s",
            "0.0",
            _float(0),
            "framework failover timeout in seconds",
        ),
    )
}


@dataclass(frozen=True)
class SparkConf:
    app_name: str
    coarse: bool
    cores_max: int | None
    executor_cores: int | None
    executor_memory_mb: int
    memory_overhead_mb: int | None
    extra_cores: int
    mesos_executor_cores: float
    task_cpus: int
    constraints: Constraints
    driver_constraints: Constraints
    role: str | None
    reject_offer_duration_s: float
    reject_unmet_constraints_s: float | None
    reject_reached_max_cores_s: float | None
    gpus_max: int
    failover_timeout_s: float
    raw: Mapping[str, str] = field(default_factory=dict, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    # -------------------------------------------------------------- parsing

    @classmethod
    def parse(cls, pairs: Mapping[str, str] | Iterable[str] | None = None) -> SparkConf:
        """From {'spark.cores.max': '12'} or ['spark.cores.max=12', ...]."""
        given = _as_mapping(pairs)
        warnings = []
        for key in given:
            if key not in KEYS:
                hint = _closest(key)
                msg = f"unknown configuration key {key!r} is ignored" + (
                    f" (did you mean {hint!r}?)" if hint else ""
                )
                warnings.append(msg)
                log.warning("%s", msg)
        values: dict[str, Any] = {}
        for key in KEYS.values():
            text = given.get(key.name, key.default)
            if text is None:
                values[key.field] = None
                continue
            try:
                values[key.field] = key.parse(str(text))
            except ValueError as e:
                raise SparkConfError(f"{key.name}={text!r}: expected {e}") from None
        if values["coarse"] is False and values["cores_max"] is not None:
            # Spark's rule: spark.cores.max caps coarse mode only. A fine-mode app takes what its
            # ready tasks fit, and its role's weight is what limits it against others.
            msg = (
                "spark.cores.max has no effect in fine-grained mode (as in Spark: it caps coarse mode "
                "only); the app takes every offered core its ready tasks fit"
            )
            warnings.append(msg)
            log.warning("%s", msg)
        conf = cls(**values, raw=dict(given), warnings=tuple(warnings))
        conf._check()
        return conf

    def _check(self) -> None:
        if self.coarse and self.executor_cores and self.task_cpus > self.executor_cores + self.extra_cores:
            raise SparkConfError(
                f"spark.task.cpus={self.task_cpus} is more than spark.executor.cores="
                f"{self.executor_cores} (+ spark.mesos.extra.cores={self.extra_cores}): "
                "no task could ever run on an executor"
            )
        if self.coarse and self.cores_max is not None and self.max_cores == 0:
            raise SparkConfError(
                f"spark.cores.max={self.cores_max} is below spark.executor.cores={self.executor_cores}: "
                "no executor fits; raise spark.cores.max or lower spark.executor.cores"
            )

    # -------------------------------------------------------------- derived values

    @property
    def mode(self) -> str:
        return "coarse" if self.coarse else "fine"

    @property
    def framework_role(self) -> str:
        return self.role or "*"

    @property
    def overhead_mb(self) -> int:
        if self.memory_overhead_mb is not None:
            return self.memory_overhead_mb
        return max(MEMORY_OVERHEAD_MINIMUM, int(MEMORY_OVERHEAD_FRACTION * self.executor_memory_mb))

    @property
    def executor_total_memory_mb(self) -> int:
        """What one executor asks for: spark.executor.memory + overhead (Spark's executorMemory(sc))."""
        return self.executor_memory_mb + self.overhead_mb

    @property
    def max_cores(self) -> int | None:
        """spark.cores.max rounded down to a multiple of spark.executor.cores (None = unlimited)."""
        if self.cores_max is None:
            return None
        step = self.executor_cores or 1
        return self.cores_max - self.cores_max % step

    @property
    def unmet_constraints_refuse_s(self) -> float:
        return (
            self.reject_unmet_constraints_s
            if self.reject_unmet_constraints_s is not None
            else self.reject_offer_duration_s
        )

    @property
    def reached_max_cores_refuse_s(self) -> float:
        return (
            self.reject_reached_max_cores_s
            if self.reject_reached_max_cores_s is not None
            else self.reject_offer_duration_s
        )

    def describe(self) -> dict[str, Any]:
        """Effective values, for summaries."""
        return {
            "mode": self.mode,
            "spark.app.name": self.app_name,
            "spark.cores.max": self.cores_max,
            "effective max cores": self.max_cores,
            "spark.executor.cores": self.executor_cores,
            "executor memory + overhead (MiB)": self.executor_total_memory_mb,
            "spark.task.cpus": self.task_cpus,
            "spark.mesos.mesosExecutor.cores": self.mesos_executor_cores,
            "spark.mesos.extra.cores": self.extra_cores,
            "spark.mesos.constraints": str(self.constraints),
            "spark.mesos.role": self.framework_role,
            "spark.mesos.rejectOfferDuration (s)": self.reject_offer_duration_s,
        }


def _as_mapping(pairs: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    if pairs is None:
        return {}
    if isinstance(pairs, Mapping):
        return {str(k).strip(): str(v) for k, v in pairs.items()}
    out: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SparkConfError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.cores.max=12")
        out[key.strip()] = value
    return out


def _closest(key: str) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.8)
    return match[0] if match else None


def keys_table() -> list[tuple[str, str, str]]:
    """(key, default, meaning) for help output."""
    return [(k.name, "unset" if k.default is None else repr(k.default), k.doc) for k in KEYS.values()]
