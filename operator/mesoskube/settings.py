"""The master's settings: written once here, read from CLI flags, MESOSKUBE_* environment and Helm values.

Each field becomes a flag (`allocationInterval` -> `--allocation-interval`) and an environment
variable (`MESOSKUBE_ALLOCATION_INTERVAL`); the chart's values.yaml mirrors these names.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mesoskube.allocator.snapshot import SorterKind
from mesoskube.master.selector import SelectorError, parse_selector
from mesoskube.resources import Resources, parse_ranges

ENV_PREFIX = "MESOSKUBE_"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allocationInterval: Annotated[
        float,
        Field(
            gt=0, le=600, description="Seconds between batch allocation cycles (Mesos --allocation_interval)."
        ),
    ] = 1.0
    offerTimeout: Annotated[
        float | None,
        Field(
            gt=0,
            description="Seconds before an unanswered offer is rescinded; unset = never (Mesos default).",
        ),
    ] = None
    defaultRefuseSeconds: Annotated[
        float, Field(ge=0, description="Filter length for a decline without filters (Mesos: 5 s).")
    ] = 5.0
    agentSelector: Annotated[
        str,
        Field(
            description="Label selector (the API server's syntax: =, !=, in, notin, exists, !key) choosing "
            "which nodes are agents; empty = every node."
        ),
    ] = ""
    portRange: Annotated[
        str,
        Field(pattern=r"^[0-9]+-[0-9]+(,[0-9]+-[0-9]+)*$", description="Host ports offered on each agent."),
    ] = "31000-32000"
    minAllocatable: Annotated[
        str,
        Field(description="Mesos --min_allocatable_resources: 'cpus:0.01|mem:32' (any one set suffices)."),
    ] = "cpus:0.01|mem:32"
    sorter: Annotated[SorterKind, Field(description="Role and framework ordering: drf or random.")] = (
        SorterKind.DRF
    )
    seed: Annotated[int, Field(description="Seed of the agent shuffle and the random sorter.")] = 0
    maxOffersPerFramework: Annotated[
        int,
        Field(
            ge=0,
            description="Outstanding offers a framework holds at most; it is offered more agents as it "
            "answers. 0 = no limit (Mesos offers every free agent each cycle; here each offer is an object).",
        ),
    ] = 256
    metricsPort: Annotated[int, Field(ge=0, le=65535, description="Prometheus metrics port; 0 = off.")] = 8080
    healthPort: Annotated[
        int,
        Field(ge=0, le=65535, description="Port of /healthz (liveness) and /readyz (readiness); 0 = off."),
    ] = 8081
    offerRetention: Annotated[
        float, Field(ge=0, description="Seconds a rescinded or expired Offer stays visible before deletion.")
    ] = 30.0
    agentUnreachableTimeout: Annotated[
        float,
        Field(
            gt=0,
            description="Seconds a node may stay NotReady before its tasks become TASK_UNREACHABLE "
            "(PARTITION_AWARE frameworks) or TASK_LOST (others); Mesos: 75 s of missed pings.",
        ),
    ] = 75.0
    maxCompletedTasksPerFramework: Annotated[
        int,
        Field(ge=0, description="Terminal Tasks kept per framework; older ones are deleted (Mesos: 1000)."),
    ] = 1000
    httpPort: Annotated[
        int,
        Field(ge=0, le=65535, description="Mesos v1 HTTP API port (scheduler API, /state, ...); 0 = off."),
    ] = 5050
    httpHost: Annotated[str, Field(description="Address the Mesos HTTP API listens on.")] = "0.0.0.0"
    httpAuth: Annotated[
        Literal["kubernetes", "none"],
        Field(
            description="kubernetes: callers need a bearer token (TokenReview) allowed by RBAC "
            "(SubjectAccessReview: create frameworks for the scheduler API, list for reads); "
            "none: unauthenticated (local demo and tests only)."
        ),
    ] = "kubernetes"
    httpNamespace: Annotated[
        str, Field(description="Namespace of HTTP frameworks' objects; empty = `namespace`, else 'default'.")
    ] = ""
    httpDefaultImage: Annotated[
        str,
        Field(min_length=1, description="Image of an HTTP framework's task without container.docker.image."),
    ] = "busybox:1.36"
    httpLeader: Annotated[
        str,
        Field(
            description="host:port of a static leading master, set on a standby replica without "
            "leaderElect: its HTTP API then answers 307 there (with leaderElect the Lease names the leader)."
        ),
    ] = ""
    httpAdvertiseAddress: Annotated[
        str,
        Field(
            pattern=r"^$|^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$",
            description="host:port standbys' 307 answers name for this replica while it leads (Mesos "
            "--advertise_ip/--advertise_port); empty = $POD_IP (the chart sets it), else httpHost, "
            "else the host's address, with httpPort.",
        ),
    ] = ""
    httpTlsCertFile: Annotated[
        str,
        Field(
            description="PEM certificate (chain) the Mesos HTTP API serves HTTPS with; empty = plain "
            "HTTP. Needs httpTlsKeyFile."
        ),
    ] = ""
    httpTlsKeyFile: Annotated[
        str, Field(description="PEM private key of httpTlsCertFile; empty = plain HTTP.")
    ] = ""
    namespace: Annotated[
        str, Field(description="Namespace to watch for Frameworks, Offers and Tasks; empty = all namespaces.")
    ] = ""
    schedulerName: Annotated[
        str,
        Field(
            min_length=1,
            max_length=63,
            pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
            description="Pods with this spec.schedulerName are placed through offers (the pods framework).",
        ),
    ] = "mesoskube"
    podsFramework: Annotated[
        bool,
        Field(
            description="Run the pods framework (pods naming schedulerName, grouped into Frameworks) "
            "in the master's process; false = run it apart (`mesoskube pods run`) or not at all."
        ),
    ] = True
    livenessTimeout: Annotated[
        float,
        Field(
            gt=0,
            description="Seconds the working loop (engine, or election on a standby) may stall before "
            "/healthz fails.",
        ),
    ] = 60.0
    leaderElect: Annotated[
        bool,
        Field(
            description="Run as one of several replicas: only the holder of the Lease leaseName writes; "
            "standbys keep their caches warm and take over when it lapses or is released."
        ),
    ] = False
    leaseName: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="Name of the master's election Lease."
        ),
    ] = "mesoskube-master"
    leaseNamespace: Annotated[
        str,
        Field(
            description="Namespace of the election Lease; empty = $POD_NAMESPACE, the ServiceAccount's, "
            "or default."
        ),
    ] = ""
    leaseDuration: Annotated[
        int,
        Field(
            ge=1,
            description="Seconds a standby waits, after it last saw the Lease change, before taking "
            "over (client-go: 15; shorter here for a failover under 5 s).",
        ),
    ] = 3
    renewDeadline: Annotated[
        float,
        Field(
            gt=0,
            description="Seconds the leader keeps trying to renew before it stops leading and exits; "
            "< leaseDuration.",
        ),
    ] = 2.0
    retryPeriod: Annotated[
        float,
        Field(gt=0, description="Seconds between election attempts and renewals; < renewDeadline."),
    ] = 0.5
    identity: Annotated[
        str,
        Field(description="This replica's identity in the Lease; empty = hostname, pid and a random tag."),
    ] = ""

    @model_validator(mode="after")
    def _check_election(self) -> Settings:
        if not self.leaseDuration > self.renewDeadline > self.retryPeriod:
            raise ValueError(
                f"leaseDuration ({self.leaseDuration}) > renewDeadline ({self.renewDeadline}) > retryPeriod "
                f"({self.retryPeriod}) is required: a leader must give up before a standby may take over"
            )
        return self

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if bool(self.httpTlsCertFile) != bool(self.httpTlsKeyFile):
            raise ValueError(
                "httpTlsCertFile and httpTlsKeyFile go together: give both (HTTPS) or neither (HTTP)"
            )
        return self

    @field_validator("agentSelector")
    @classmethod
    def _check_agent_selector(cls, v: str) -> str:
        try:
            parse_selector(v)
        except SelectorError as e:
            raise ValueError(
                f"agentSelector: {e}; use the API server's syntax, e.g. 'zone in (a,b),!gpu'"
            ) from e
        return v

    @field_validator("minAllocatable")
    @classmethod
    def _check_min_allocatable(cls, v: str) -> str:
        parse_min_allocatable(v)
        return v

    def port_ranges(self) -> tuple[tuple[int, int], ...]:
        return parse_ranges(self.portRange)

    def min_allocatable_resources(self) -> tuple[Resources, ...]:
        return parse_min_allocatable(self.minAllocatable)


def parse_min_allocatable(text: str) -> tuple[Resources, ...]:
    """'cpus:0.01|mem:32' -> (Resources(cpus=0.01), Resources(mem=32)); 'cpus:1;mem:64' is one set."""
    sets: list[Resources] = []
    for group in filter(None, text.split("|")):
        values: dict[str, float] = {}
        for item in filter(None, group.split(";")):
            name, sep, qty = item.partition(":")
            if not sep or name not in ("cpus", "mem", "disk", "gpus"):
                raise ValueError(
                    f"minAllocatable: {item!r} is not NAME:QUANTITY with NAME one of cpus, mem, disk, gpus "
                    "(example: 'cpus:0.01|mem:32')"
                )
            values[name] = float(qty)
        sets.append(Resources(**values))
    if not sets:
        raise ValueError("minAllocatable: give at least one set, e.g. 'cpus:0.01|mem:32'")
    return tuple(sets)


def flag_name(name: str) -> str:
    return "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def env_name(name: str) -> str:
    return ENV_PREFIX + re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def add_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """A flag per setting (or per setting in `only`, for a command reading a few of them)."""
    for name, info in Settings.model_fields.items():
        if only is not None and name not in only:
            continue
        parser.add_argument(
            flag_name(name),
            dest=name,
            default=None,
            help=f"{info.description} [env {env_name(name)}; default {info.default!r}]",
        )


def load(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Flags win over environment, environment over defaults. Errors name the flag and the variable."""
    environ = dict(os.environ if environ is None else environ)
    given: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(args, name, None) if args is not None else None
        if value is None:
            value = environ.get(env_name(name))
        if value is not None and value != "":
            given[name] = value
        elif value == "" and name in ("offerTimeout",):
            given[name] = None
    return Settings.model_validate(given)
