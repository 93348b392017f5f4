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

Cluster deploy mode (Mesos's cluster dispatcher): the driver is a pod too, named up front
(spark.kubernetes.driver.pod.name) so `submit` can print its submission id, `namespace:pod`, the
id Spark's own `spark-submit --status/--kill` take; it carries the executors' role and refuse
annotations (the Framework takes its role from the application's first pod, the driver) and
spark.mesos.driver.constraints as required node affinity; `submit` returns once the driver pod
exists (spark.kubernetes.submission.waitAppCompletion=false).

The fine-grained equivalent (Spark 4 has no per-task backend; `fine_equivalent=True`): executors
of one task slot each (spark.executor.cores = spark.task.cpus) under dynamic allocation with no
minimum and a short idle timeout, so the executor set follows the running tasks. It is not Mesos
fine mode: every executor is a JVM that starts in seconds, not a task launched in an executor
that stays up, and an executor holding shuffle files is kept until they are no longer needed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mesoskube.frameworks.pods.groups import REFUSE_KEY, REFUSE_UNMET_KEY, ROLE_KEY
from mesoskube.frameworks.spark.conf import KEYS, SparkConf, SparkConfError, _closest
from mesoskube.frameworks.spark.constraints import Constraints

_INTEGER = re.compile(r"^-?[0-9]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
IMAGE_KEY = "spark.kubernetes.container.image"
DRIVER_POD_KEY = "spark.kubernetes.driver.pod.name"
DEPLOY_MODES = ("client", "cluster")
# The fine-grained equivalent's dynamic allocation: no executor kept without a task, new ones asked
# for after 1 s of queued tasks (Spark's default), idle ones released after 2 s (Spark: 60 s).
FINE_EQUIVALENT: dict[str, str] = {
    "spark.dynamicAllocation.enabled": "true",
    "spark.dynamicAllocation.shuffleTracking.enabled": "true",
    "spark.dynamicAllocation.minExecutors": "0",
    "spark.dynamicAllocation.initialExecutors": "0",
    "spark.dynamicAllocation.executorIdleTimeout": "2s",
    "spark.dynamicAllocation.schedulerBacklogTimeout": "1s",
    "spark.dynamicAllocation.sustainedSchedulerBacklogTimeout": "1s",
}
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
    """What `spark-submit` gets: --conf pairs (in order), the pod templates and the deploy mode."""

    conf: dict[str, str]
    executor_template: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())
    deploy_mode: str = "client"
    driver_template: dict[str, Any] | None = None  # cluster mode only

    @property
    def submission_id(self) -> str | None:
        """`namespace:driver-pod`, what `spark status|kill` (and spark-submit --status|--kill) take."""
        if self.deploy_mode != "cluster":
            return None
        return f"{self.conf['spark.kubernetes.namespace']}:{self.conf[DRIVER_POD_KEY]}"

    def argv(
        self,
        spark_submit: str,
        master: str,
        app: str,
        app_args: list[str],
        template_path: str,
        driver_template_path: str | None = None,
    ) -> list[str]:
        conf = {**self.conf, "spark.kubernetes.executor.podTemplateFile": template_path}
        if self.deploy_mode == "cluster" and driver_template_path:
            conf["spark.kubernetes.driver.podTemplateFile"] = driver_template_path
        out = [spark_submit, "--master", master, "--deploy-mode", self.deploy_mode]
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
    deploy_mode: str = "client",
    app: str | None = None,
    fine_equivalent: bool = False,
    suffix: str | None = None,
) -> Submission:
    """`suffix` makes the generated driver pod name unique (random unless given, for tests)."""
    if deploy_mode not in DEPLOY_MODES:
        raise SparkConfError(f"--deploy-mode {deploy_mode!r}: expected one of {', '.join(DEPLOY_MODES)}")
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
    if fine_equivalent and mesos.get("spark.mesos.coarse", "").strip().lower() == "true":
        raise SparkConfError(
            "spark.mesos.coarse=true contradicts --fine-equivalent: drop one (the fine-grained "
            "equivalent is what spark.mesos.coarse=false asked for)"
        )
    if not conf.coarse and not fine_equivalent:
        raise SparkConfError(
            "spark.mesos.coarse=false: fine-grained mode has no Spark 4 backend; use coarse mode "
            "(spark.mesos.coarse=true), the closest equivalent with real Spark (--fine-equivalent: "
            "1-task executors under dynamic allocation), or the emulated fine mode with --workload"
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
    if fine_equivalent:
        if cores is not None and cores != conf.task_cpus:
            warnings.append(
                f"spark.executor.cores={cores} is replaced by spark.task.cpus={conf.task_cpus}: the "
                "fine-grained equivalent runs one task per executor"
            )
        cores = conf.task_cpus
    elif cores is None:
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
    if fine_equivalent:
        out.update({k: v for k, v in FINE_EQUIVALENT.items() if k not in rest})
    dynamic = (
        fine_equivalent or rest.get("spark.dynamicAllocation.enabled", "false").strip().lower() == "true"
    )
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
    # Annotations, not labels: "*" (the default role) is no valid label value. In cluster mode the
    # driver carries them too: the application's Framework takes its role from its first pod.
    pods = ("executor", "driver") if deploy_mode == "cluster" else ("executor",)
    for pod in pods:
        prefix = f"spark.kubernetes.{pod}.annotation."
        out[prefix + ROLE_KEY] = conf.framework_role
        out[prefix + REFUSE_KEY] = _seconds(conf.reject_offer_duration_s)
        out[prefix + REFUSE_UNMET_KEY] = _seconds(conf.unmet_constraints_refuse_s)
    driver_template = None
    if deploy_mode == "cluster":
        warnings += _cluster_mode(out, rest, conf, app, suffix)
        driver_template = pod_template(conf.driver_constraints)
    elif str(conf.driver_constraints):
        warnings.append("spark.mesos.driver.constraints is not used in client mode: the driver runs here")
    for k, v in rest.items():
        if k in out and out[k] != v:
            warnings.append(f"{k}={v!r} replaces the translated {out[k]!r}")
        out[k] = v
    return Submission(out, pod_template(conf.constraints), tuple(warnings), deploy_mode, driver_template)


def _cluster_mode(
    out: dict[str, str], rest: Mapping[str, str], conf: SparkConf, app: str | None, suffix: str | None
) -> list[str]:
    """The driver pod's name and the submission settings of cluster mode; returns warnings."""
    if "spark.driver.host" in rest:
        raise SparkConfError(
            "spark.driver.host: in cluster mode the driver runs in a pod and Spark sets its address "
            "(a Service); remove the key"
        )
    if app and "://" not in app and "spark.kubernetes.file.upload.path" not in rest:
        raise SparkConfError(
            f"{app}: in cluster mode the driver runs in a pod and cannot read this machine's files; "
            "give the application as local:///path (in the image or on a volume of the driver pod), "
            "a URL, or set spark.kubernetes.file.upload.path"
        )
    pod = rest.get(DRIVER_POD_KEY)
    if pod is None:
        stem = (app or "").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        base = conf.app_name if "spark.app.name" in conf.raw else (stem or "spark")
        base = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:40].strip("-") or "spark"
        pod = f"{base}-{suffix if suffix is not None else secrets.token_hex(3)}-driver"
    if not _DNS_LABEL.match(pod):
        raise SparkConfError(
            f"{DRIVER_POD_KEY}={pod!r}: the driver pod's name is its Task's name: a DNS label "
            "(lower-case letters, digits and '-', at most 63 characters)"
        )
    out[DRIVER_POD_KEY] = pod
    out["spark.kubernetes.submission.waitAppCompletion"] = "false"  # submit returns at once
    if "spark.kubernetes.authenticate.driver.serviceAccountName" not in rest:
        return [
            "spark.kubernetes.authenticate.driver.serviceAccountName is unset: the driver pod creates "
            "its executor pods as the namespace's default ServiceAccount, which usually may not; name "
            "one that may manage pods, services and configmaps"
        ]
    return []


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


def pod_template(constraints: Constraints) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if affinity := node_affinity(constraints):
        spec["affinity"] = affinity
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}


def merge_template(user: Mapping[str, Any] | None, ours: Mapping[str, Any]) -> dict[str, Any]:
    """The user's own pod template (spark.kubernetes.*.podTemplateFile) with our required node
    affinity added: ANDed into each of their node selector terms, or as the only term."""
    import copy

    out = copy.deepcopy(dict(user)) if user else copy.deepcopy(dict(ours))
    if not user:
        return out
    term = "requiredDuringSchedulingIgnoredDuringExecution"
    ours_req = ((ours.get("spec") or {}).get("affinity") or {}).get("nodeAffinity", {}).get(term)
    if not ours_req:
        return out
    exprs = ours_req["nodeSelectorTerms"][0]["matchExpressions"]
    node = out.setdefault("spec", {}).setdefault("affinity", {}).setdefault("nodeAffinity", {})
    terms = node.setdefault(term, {}).setdefault("nodeSelectorTerms", [])
    if not terms:
        terms.append({"matchExpressions": list(exprs)})
        return out
    for t in terms:
        t["matchExpressions"] = [*(t.get("matchExpressions") or []), *exprs]
    return out


def _seconds(value: float) -> str:
    return f"{value:g}"
