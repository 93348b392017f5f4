"""`mesoskube spark submit|status|kill|keys`: real Spark 4 through offers (pyspark's spark-submit), or
an EMULATED Spark application as a mesoskube framework (--workload)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path

from pydantic import ValidationError

from mesoskube.frameworks.spark.app import AppSummary, Progress, SparkApplication
from mesoskube.frameworks.spark.conf import SparkConf, SparkConfError, keys_table
from mesoskube.frameworks.spark.workload import EmulatedWorkload
from mesoskube.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spark", help="Spark on mesoskube: real Spark 4 through offers, or an emulated workload"
    )
    ssub = p.add_subparsers(dest="spark_cmd", required=True)
    s = ssub.add_parser(
        "submit",
        help="run a Spark application (real, on Kubernetes) or an emulated one (--workload)",
        description="With APP: run an unmodified Spark 4 (pyspark, client mode) against the cluster, "
        "spark.mesos.* keys translated to spark.kubernetes.*, its executor pods placed through offers "
        "by the pods framework. With --workload: an EMULATED Spark application (stages of timed tasks, "
        "no Spark code) as a mesoskube framework with Spark's Mesos backend placement.",
    )
    s.add_argument("app", nargs="?", help="the application (a .py file, or a jar) for real Spark")
    s.add_argument("app_args", nargs=argparse.REMAINDER, help="arguments of the application")
    s.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a spark.* setting, e.g. spark.mesos.coarse=false or spark.cores.max=12 (repeat); "
        "see `mesoskube spark keys`",
    )
    s.add_argument(
        "--workload",
        metavar="FILE",
        help="YAML/JSON: {stages: [{tasks: 40, seconds: 2.0}, ...], seed: 0, jitter: 0.0}",
    )
    s.add_argument("--name", help="Framework name (default: spark.app.name plus a random suffix)")
    s.add_argument("--namespace", default="default", help="namespace of the Framework (default: default)")
    s.add_argument("--kubeconfig", help="kubeconfig path (default $KUBECONFIG or in-cluster)")
    s.add_argument("--json-summary", metavar="PATH", help="also write the summary as JSON here")
    s.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    s.add_argument("--quiet", action="store_true", help="no live progress line")
    s.add_argument(
        "--scheduler-name",
        default=Settings.model_fields["schedulerName"].default,
        help="real Spark: the pods framework's scheduler name (the master's --scheduler-name)",
    )
    s.add_argument("--spark-submit", metavar="PATH", help="real Spark: the launcher (default: pyspark's)")
    s.add_argument(
        "--dry-run", action="store_true", help="real Spark: print the spark-submit command and pod template"
    )
    s.add_argument(
        "--deploy-mode",
        choices=("client", "cluster"),
        default="client",
        help="real Spark: client (the driver runs here, submit waits for the app) or cluster (the "
        "driver is a pod placed through offers; submit returns and prints the submission id)",
    )
    s.add_argument(
        "--fine-equivalent",
        action="store_true",
        help="real Spark: the closest Spark 4 has to Mesos fine-grained mode (it has none): 1-task "
        "executors under dynamic allocation with no minimum and a 2 s idle timeout, so executors "
        "follow the running tasks; every executor is still a JVM that takes seconds to start",
    )
    s.set_defaults(func=cmd_submit)
    for verb, what in (
        ("status", "the state of a cluster-mode driver: pod, Mesos Task, agent, executors"),
        ("kill", "stop a cluster-mode driver: deletes its pod (its executors go with it)"),
    ):
        v = ssub.add_parser(
            verb,
            help=what,
            description=what + ". SUBMISSION is NAMESPACE:DRIVER-POD "
            "or DRIVER-POD, as `submit --deploy-mode cluster` printed (Spark's own "
            "submission id); a trailing * matches every driver pod with that prefix.",
        )
        v.add_argument("submission", help="NAMESPACE:DRIVER-POD, DRIVER-POD or PREFIX*")
        v.add_argument("--namespace", default="default", help="namespace when SUBMISSION names none")
        v.add_argument("--kubeconfig", help="kubeconfig path (default $KUBECONFIG or in-cluster)")
        if verb == "status":
            v.add_argument("--json", action="store_true", help="print JSON, one object per driver")
            v.set_defaults(func=cmd_status)
        else:
            v.add_argument(
                "--grace-period",
                type=int,
                default=None,
                help="seconds the driver gets to stop (spark.kubernetes.appKillPodDeletionGracePeriod)",
            )
            v.set_defaults(func=cmd_kill)
    k = ssub.add_parser("keys", help="the spark.* keys understood, with their defaults")
    k.set_defaults(func=cmd_keys)


def submit_real(args: argparse.Namespace) -> int:
    from mesoskube.frameworks.spark import k8s, submit

    try:
        pairs = conf_pairs(args.conf)
        if args.name:
            pairs["spark.app.name"] = args.name
        submission = k8s.translate(
            pairs,
            args.namespace,
            scheduler_name=args.scheduler_name,
            require_image=not args.dry_run,
            deploy_mode=args.deploy_mode,
            app=args.app,
            fine_equivalent=args.fine_equivalent,
        )
    except SparkConfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return submit.run(
        submission, args.app, list(args.app_args), args.kubeconfig, args.spark_submit, args.dry_run
    )


def conf_pairs(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SparkConfError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.cores.max=12")
        out[key.strip()] = value
    return out


def _submission(args: argparse.Namespace):
    from mesoskube.frameworks.spark.submissions import SubmissionIdError, parse_submission_id

    try:
        return parse_submission_id(args.submission, args.namespace)
    except SubmissionIdError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 when the driver exists (whatever its state), 1 when no driver matches."""
    from mesoskube.frameworks.spark import submissions
    from mesoskube.kube import Kube

    sid = _submission(args)
    if sid is None:
        return 2
    reports = submissions.status(Kube.connect(args.kubeconfig), sid)
    if not reports:
        print(f"no driver pod matches {sid}", file=sys.stderr)
        return 1
    for r in reports:
        print(json.dumps(r.to_dict()) if args.json else "\n".join(r.lines()))
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    from mesoskube.frameworks.spark import submissions
    from mesoskube.kube import Kube

    sid = _submission(args)
    if sid is None:
        return 2
    killed = submissions.kill(Kube.connect(args.kubeconfig), sid, args.grace_period)
    if not killed:
        print(f"no driver pod matches {sid}", file=sys.stderr)
        return 1
    for name in killed:
        print(f"deleted driver pod {sid.namespace}:{name} (its executor pods go with it)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    rows = keys_table()
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    for key, default, doc in rows:
        print(f"{key:<{w1}}  {default:<{w2}}  {doc}")
    return 0


def progress_line(p: Progress) -> str:
    m, s = divmod(p.elapsed, 60)
    return (
        f"[{p.mode}] {int(m):02d}:{s:04.1f}  stage {p.stage}/{p.stages}  "
        f"tasks {p.tasks_done}/{p.tasks_total}  executors {p.executors}  "
        f"cores held {p.cores_held:g} (busy {p.cores_busy:g})"
    )


def print_summary(summary: AppSummary, out=sys.stdout) -> None:
    rows = summary.table()
    width = max(len(k) for k, _ in rows)
    print(file=out)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=out)


def cmd_submit(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.workload and (args.deploy_mode != "client" or args.fine_equivalent):
        print(
            "error: --deploy-mode and --fine-equivalent are for real Spark (APP); an emulated "
            "--workload picks its mode with spark.mesos.coarse",
            file=sys.stderr,
        )
        return 2
    if bool(args.app) == bool(args.workload):
        print(
            "error: give the application to run (APP) or an emulated --workload FILE, not both",
            file=sys.stderr,
        )
        return 2
    if args.app:
        return submit_real(args)
    try:
        workload = EmulatedWorkload.load(args.workload)
    except (OSError, ValueError, ValidationError) as e:
        print(f"error: --workload {args.workload}: {e}", file=sys.stderr)
        return 2
    pairs = list(args.conf)
    if workload.name and not any(c.split("=", 1)[0].strip() == "spark.app.name" for c in pairs):
        pairs.append(f"spark.app.name={workload.name}")
    try:
        conf = SparkConf.parse(pairs)
        app = SparkApplication(conf, workload, framework_name=args.name)
    except (SparkConfError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from mesoskube.kube import Kube

    kube = Kube.connect(args.kubeconfig)
    tty = sys.stdout.isatty()
    print(
        f"submitting {conf.app_name} as framework {app.framework_name} in {args.namespace} "
        f"({conf.mode} mode, emulated workload: {workload.total_tasks} tasks "
        f"in {len(workload.stages)} stages)"
    )
    app.start(kube, args.namespace)
    stop_progress = threading.Event()

    def show() -> None:
        last = ""
        every = 0.5 if tty else 5.0
        while not stop_progress.wait(every):
            line = progress_line(app.progress())
            if tty:
                sys.stdout.write("\r" + line.ljust(len(last)))
                sys.stdout.flush()
            elif line != last:
                print(line, flush=True)
            last = line

    shower = threading.Thread(target=show, daemon=True)
    if not args.quiet:
        shower.start()
    interrupted = False
    try:
        app.wait(args.timeout)
    except KeyboardInterrupt:
        interrupted = True
        app.failure = "interrupted"
    stop_progress.set()
    if shower.is_alive():
        shower.join()
    if not args.quiet:
        line = progress_line(app.progress())
        print(("\r" + line) if tty else line)
    if app.driver is not None and app.driver.status.value == "DRIVER_RUNNING":
        if not app.done.is_set() and app.failure is None:
            app.failure = f"timed out after {args.timeout}s"
        app.driver.stop()
    if app.driver is not None:
        app.driver.join(30)  # the teardown request is out and the callbacks have returned
    summary = app.summary()
    print_summary(summary)
    if args.json_summary:
        path = Path(args.json_summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        print(f"\nsummary written to {path}")
    if interrupted:
        return 130
    return 0 if summary.ok else 1
