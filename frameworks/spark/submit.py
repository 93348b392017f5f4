"""`mesoskube spark submit APP`: an unmodified Spark 4 (pyspark from PyPI, `pip install -e
'.[spark]'`) against the cluster, its executor pods (and in cluster mode its driver pod) placed
through offers. Client mode waits for the application; cluster mode returns once the driver pod
exists and prints its submission id for `spark status|kill`."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from mesoskube.frameworks.spark.k8s import Submission, merge_template


def find_spark_submit() -> str | None:
    """pyspark's own launcher first (the pinned one), else one on PATH."""
    try:
        import pyspark
    except ImportError:
        pyspark = None
    if pyspark is not None:
        candidate = Path(pyspark.__file__).parent / "bin" / "spark-submit"
        if candidate.exists():
            return str(candidate)
    return shutil.which("spark-submit")


def shell_lines(argv: list[str]) -> str:
    """The command as a person would type it: one option (with its value) per line."""
    lines, i = [shlex.quote(argv[0])], 1
    while i < len(argv):
        if argv[i].startswith("--") and i + 1 < len(argv):
            lines.append(f"{argv[i]} {shlex.quote(argv[i + 1])}")
            i += 2
        else:
            lines.append(shlex.join(argv[i:]))
            break
    return " \\\n  ".join(lines)


def write_template(path: Path, submission: Submission, pod: str, ours: dict) -> None:
    """Ours, or the user's own template file (spark.kubernetes.<pod>.podTemplateFile) with our node
    affinity merged in: the file spark-submit gets is always the one written here."""
    user_path = submission.conf.get(f"spark.kubernetes.{pod}.podTemplateFile")
    user = None
    if user_path:
        try:
            user = yaml.safe_load(Path(user_path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise OSError(f"spark.kubernetes.{pod}.podTemplateFile={user_path}: {e}") from None
    path.write_text(yaml.safe_dump(merge_template(user, ours), sort_keys=False))


def master_url(kubeconfig: str | None) -> str | None:
    """k8s://<the kubeconfig's API server>, or None when there is no usable kubeconfig."""
    from kubernetes.config.config_exception import ConfigException

    from mesoskube.kube import Kube

    try:
        return "k8s://" + Kube.connect(kubeconfig).api.configuration.host
    except (ConfigException, OSError):
        return None


def run(
    submission: Submission,
    app: str,
    app_args: list[str],
    kubeconfig: str | None,
    spark_submit: str | None = None,
    dry_run: bool = False,
) -> int:
    for w in submission.warnings:
        print(f"warning: {w}", file=sys.stderr)
    launcher = spark_submit or find_spark_submit()
    with tempfile.TemporaryDirectory(prefix="mesoskube-spark-") as tmp:
        try:
            template = Path(tmp) / "executor-pod-template.yaml"
            write_template(template, submission, "executor", submission.executor_template)
            driver_template = None
            if submission.driver_template is not None:
                driver_template = Path(tmp) / "driver-pod-template.yaml"
                write_template(driver_template, submission, "driver", submission.driver_template)
        except (OSError, yaml.YAMLError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        master = master_url(kubeconfig)
        if master is None and not dry_run:
            print("error: no kubeconfig: pass --kubeconfig or set KUBECONFIG", file=sys.stderr)
            return 2
        master = master or "k8s://https://API-SERVER"
        argv = submission.argv(
            launcher or "spark-submit",
            master,
            app,
            app_args,
            str(template),
            str(driver_template) if driver_template else None,
        )
        if dry_run:
            print(shell_lines(argv))
            print("\n# executor pod template\n" + template.read_text())
            if driver_template is not None:
                print("# driver pod template\n" + driver_template.read_text())
            return 0
        if launcher is None:
            print(
                "error: spark-submit not found: install the pinned pyspark (pip install -e '.[spark]') "
                "or put spark-submit on PATH",
                file=sys.stderr,
            )
            return 2
        env = dict(os.environ)
        if kubeconfig:
            env["KUBECONFIG"] = kubeconfig  # Spark's Kubernetes client reads it
        code = subprocess.call(argv, env=env)
        sid = submission.submission_id
        if code == 0 and sid is not None:
            # The templates may go now: Spark has put them into the driver pod's ConfigMap.
            print(f"submitted {sid}")
            print(f"follow it: mesoskube spark status {sid}    stop it: mesoskube spark kill {sid}")
        return code
