"""spark.mesos.* -> spark.kubernetes.*: run an unmodified Spark 4 on Kubernetes with its executor
pods placed by mesoskube's pods framework (pure: confs in, confs and a pod template out).

Spark 4 has no Mesos backend; its Kubernetes backend creates executor pods, which name mesoskube's
scheduler (`spark.kubernetes.scheduler.name`), so the pods framework groups them (one Framework
per `spark-app-selector`) and places them through offers. The keys Spark's Mesos backend read
(`KEYS` in conf.py) become (frameworks/README.md has the table):
- spark.mesos.coarse=true: the only mode (one executor pod per executor);
- spark.cores.max / spark.executor.cores: spark.executor.instances (or
  spark.dynamicAllocation.maxExecutors with dynamic allocation);
- spark.executor.memory and spark.mesos.executor.memoryOverhead: spark.executor.memory and
  spark.executor.memoryOverhead (the executor pod requests their sum);
- spark.mesos.extra.cores: advertised on top of the cores the pod requests
  (spark.kubernetes.executor.request.cores);
- spark.mesos.constraints: required node affinity in the executor pod template;
- spark.mesos.role: the executors' mesoskube.io/role annotation (the Framework's role);
- spark.mesos.rejectOfferDuration[ForUnmetConstraints]: the executors' refuse-seconds annotations.
Any other spark.* key passes through unchanged (spark.kubernetes.container.image, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mesoskube.frameworks.pods.groups import REFUSE_KEY, REFUSE_UNMET_KEY, ROLE_KEY
from mesoskube.frameworks.spark.conf import KEYS, SparkConf, SparkConfError, _closest
from mesoskube.frameworks.spark.constraints import Constraints

_INTEGER = re.compile(r"^-?[0-9]+$")
IMAGE_KEY = "spark.kubernetes.container.image"
# Keys with no Kubernetes meaning here: warned about, not passed on.
_DROPPED = {
    "spark.mesos.rejectOfferDurationForReachedMaxCores": "the executor count is fixed up front "
    "(spark.executor.instances); once all are placed the framework suppresses offers instead",
    "spark.mesos.driver.failoverTimeout": "the driver is not a Mesos framework here; its executors' "
    "Framework lives as long as they do",
    "spark.mesos.mesosExecutor.cores": "fine-grained mode has no Spark 4 backend",
}


@dataclass(frozen=True)
class Submission:
    """What `spark-submit` gets: --conf pairs (in order) and the executor pod template."""

    conf: dict[str, str]
    executor_template: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())

    def argv(
        self, spark_submit: str, master: str, app: str, app_args: list[str], template_path: str
    ) -> list[str]:
        conf = {**self.conf, "spark.kubernetes.executor.podTemplateFile": template_path}
        out = [spark_submit, "--master", master, "--deploy-mode", "client"]
        for k, v in conf.items():
            out += ["--conf", f"{k}={v}"]
        return [*out, app, *app_args]


def split(pairs: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(keys of Spark's Mesos backend, everything else): the first are translated, the rest passed on."""
    mesos = {k: v for k, v in pairs.items() if k in KEYS}
    rest = {k: v for k, v in pairs.items() if k not in KEYS}
    return mesos, rest


def translate(
    pairs: Mapping[str, str],
    namespace: str,
    scheduler_name: str = "mesoskube",
    require_image: bool = True,
) -> Submission:
    mesos, rest = split(pairs)
    warnings: list[str] = []
    for key in rest:
        if key.startswith("spark.mesos."):
            hint = _closest(key)
            raise SparkConfError(
                f"{key}: not a key Spark's Mesos backend read"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
    conf = SparkConf.parse(mesos)
    if not conf.coarse:
        raise SparkConfError(
            "spark.mesos.coarse=false: fine-grained mode has no Spark 4 backend; use coarse mode "
            "(spark.mesos.coarse=true), or the emulated fine mode with --workload"
        )
    if require_image and not rest.get(IMAGE_KEY):
        raise SparkConfError(
            f"{IMAGE_KEY} is not set: give an image with Spark and Python that the nodes hold "
            f"(--conf {IMAGE_KEY}=IMAGE)"
        )
    for key, why in _DROPPED.items():
        if key in mesos:
            warnings.append(f"{key} is not used on Kubernetes: {why}")
    if conf.gpus_max:
        warnings.append("spark.mesos.gpus.max is not translated: use spark.executor.resource.gpu.amount")

    out: dict[str, str] = {
        "spark.kubernetes.scheduler.name": scheduler_name,
        "spark.kubernetes.namespace": namespace,
    }
    if "spark.app.name" in mesos:
        out["spark.app.name"] = conf.app_name
    cores = conf.executor_cores
    if cores is None:
        cores = 1
        warnings.append(
            "spark.executor.cores is unset: Spark on Kubernetes needs a fixed executor size, 1 core is "
            "used (Mesos mode would give one executor per agent all its offered cores)"
        )
    out["spark.executor.cores"] = str(cores + conf.extra_cores)
    if conf.extra_cores:
        out["spark.kubernetes.executor.request.cores"] = str(cores)
    if "spark.task.cpus" in mesos:
        out["spark.task.cpus"] = str(conf.task_cpus)
    out["spark.executor.memory"] = f"{conf.executor_memory_mb}m"
    out["spark.executor.memoryOverhead"] = f"{conf.overhead_mb}m"
    dynamic = rest.get("spark.dynamicAllocation.enabled", "false").strip().lower() == "true"
    if conf.cores_max is not None:
        instances = conf.cores_max // cores
        if instances < 1:
            raise SparkConfError(
                f"spark.cores.max={conf.cores_max} is below spark.executor.cores={cores}: no executor fits"
            )
        if dynamic:
            out["spark.dynamicAllocation.maxExecutors"] = str(instances)
        else:
            out["spark.executor.instances"] = str(instances)
    elif not dynamic and "spark.executor.instances" not in rest:
        warnings.append(
            "spark.cores.max is unset: Spark on Kubernetes starts spark.executor.instances executors "
            "(default 2), not every offered core as Mesos mode did"
        )
    role = conf.framework_role
    # An annotation, not a label: "*" (the default role) is no valid label value.
    out[f"spark.kubernetes.executor.annotation.{ROLE_KEY}"] = role
    out[f"spark.kubernetes.executor.annotation.{REFUSE_KEY}"] = _seconds(conf.reject_offer_duration_s)
    out[f"spark.kubernetes.executor.annotation.{REFUSE_UNMET_KEY}"] = _seconds(
        conf.unmet_constraints_refuse_s
    )
    for k, v in rest.items():
        if k in out and out[k] != v:
            warnings.append(f"{k}={v!r} replaces the translated {out[k]!r}")
        out[k] = v
    return Submission(out, executor_template(conf.constraints), tuple(warnings))


def node_affinity(constraints: Constraints) -> dict[str, Any] | None:
    """spark.mesos.constraints as one required node selector term (all constraints ANDed).

    attr (no values) -> Exists; text values -> In. Integer values follow Mesos's scalar rule
    (the attribute is at least one of them): Gt (smallest - 1), which Kubernetes evaluates on
    integer labels only.
    """
    exprs: list[dict[str, Any]] = []
    for name, values in constraints.required:
        if not values:
            exprs.append({"key": name, "operator": "Exists"})
        elif all(_INTEGER.match(v) for v in values):
            exprs.append({"key": name, "operator": "Gt", "values": [str(min(int(v) for v in values) - 1)]})
        else:
            exprs.append({"key": name, "operator": "In", "values": sorted(values)})
    if not exprs:
        return None
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": exprs}]
            }
        }
    }


def executor_template(constraints: Constraints) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if affinity := node_affinity(constraints):
        spec["affinity"] = affinity
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}


def _seconds(value: float) -> str:
    return f"{value:g}"
