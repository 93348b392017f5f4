"""spark.mesos.* -> spark.kubernetes.* for an unmodified Spark 4 (pure translation)."""

from __future__ import annotations

import pytest

from mesoskube.frameworks.spark.conf import SparkConfError
from mesoskube.frameworks.spark.constraints import parse_constraints
from mesoskube.frameworks.spark.k8s import node_affinity, translate

IMAGE = {"spark.kubernetes.container.image": "spark-py:4.3.0"}


def test_executors_from_cores_max_and_executor_cores_with_memory_plus_overhead():
    s = translate(
        {
            **IMAGE,
            "spark.mesos.coarse": "true",
            "spark.cores.max": "13",
            "spark.executor.cores": "4",
            "spark.executor.memory": "4g",
        },
        "spark-apps",
    )
    c = s.conf
    assert c["spark.kubernetes.scheduler.name"] == "mesoskube"
    assert c["spark.kubernetes.namespace"] == "spark-apps"
    assert c["spark.executor.instances"] == "3"  # 13 cores / 4 per executor, rounded down as Mesos mode does
    assert c["spark.executor.cores"] == "4"
    assert c["spark.executor.memory"] == "4096m"
    assert c["spark.executor.memoryOverhead"] == "409m"  # max(384, 10 %), Spark's Mesos rule
    assert c["spark.kubernetes.container.image"] == "spark-py:4.3.0"  # passed through
    assert s.executor_template == {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}}


def test_explicit_overhead_role_and_refuse_times_become_labels_and_annotations():
    s = translate(
        {
            **IMAGE,
            "spark.executor.cores": "2",
            "spark.mesos.executor.memoryOverhead": "1g",
            "spark.mesos.role": "batch",
            "spark.mesos.rejectOfferDuration": "2min",
            "spark.mesos.rejectOfferDurationForUnmetConstraints": "10s",
        },
        "ns",
    )
    c = s.conf
    assert c["spark.executor.memoryOverhead"] == "1024m"
    assert c["spark.kubernetes.executor.annotation.mesoskube.io/role"] == "batch"
    assert c["spark.kubernetes.executor.annotation.mesoskube.io/refuse-seconds"] == "120"
    assert c["spark.kubernetes.executor.annotation.mesoskube.io/refuse-seconds-unmet-constraints"] == "10"


def test_unmet_constraint_refusal_defaults_to_reject_offer_duration_and_role_to_star():
    c = translate({**IMAGE, "spark.executor.cores": "1", "spark.mesos.rejectOfferDuration": "30s"}, "ns").conf
    assert c["spark.kubernetes.executor.annotation.mesoskube.io/refuse-seconds-unmet-constraints"] == "30"
    assert c["spark.kubernetes.executor.annotation.mesoskube.io/role"] == "*"


def test_constraints_become_required_node_affinity():
    s = translate(
        {**IMAGE, "spark.executor.cores": "1", "spark.mesos.constraints": "zone:b,a;ssd;cpus:8,16"}, "ns"
    )
    terms = s.executor_template["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms == {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "ssd", "operator": "Exists"},
                    # Mesos scalar rule: the attribute is at least one of the values.
                    {"key": "cpus", "operator": "Gt", "values": ["7"]},
                ]
            }
        ]
    }
    assert node_affinity(parse_constraints("")) is None


def test_extra_cores_are_advertised_beyond_the_requested_cores():
    c = translate({**IMAGE, "spark.executor.cores": "2", "spark.mesos.extra.cores": "1"}, "ns").conf
    assert c["spark.executor.cores"] == "3"
    assert c["spark.kubernetes.executor.request.cores"] == "2"


def test_dynamic_allocation_caps_the_executors_instead_of_fixing_them():
    c = translate(
        {
            **IMAGE,
            "spark.executor.cores": "2",
            "spark.cores.max": "8",
            "spark.dynamicAllocation.enabled": "true",
        },
        "ns",
    ).conf
    assert c["spark.dynamicAllocation.maxExecutors"] == "4"
    assert "spark.executor.instances" not in c


def test_unset_sizes_are_warned_about_not_guessed_silently():
    s = translate(dict(IMAGE), "ns")
    assert s.conf["spark.executor.cores"] == "1"
    assert any("spark.executor.cores is unset" in w for w in s.warnings)
    assert any("spark.cores.max is unset" in w for w in s.warnings)
    assert "spark.executor.instances" not in s.conf


def test_keys_without_a_kubernetes_meaning_are_warned_about():
    s = translate({**IMAGE, "spark.executor.cores": "1", "spark.mesos.driver.failoverTimeout": "60"}, "ns")
    assert any(w.startswith("spark.mesos.driver.failoverTimeout is not used") for w in s.warnings)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"spark.mesos.coarse": "false"},
            "spark.mesos.coarse=false: fine-grained mode has no Spark 4 backend",
        ),
        ({"spark.mesos.rejectOfferDuratoin": "1s"}, "did you mean 'spark.mesos.rejectOfferDuration'"),
        (
            {"spark.cores.max": "1", "spark.executor.cores": "2"},
            "spark.cores.max=1 is below spark.executor.cores=2",
        ),
        ({"spark.executor.memory": "lots"}, "spark.executor.memory='lots': expected"),
    ],
)
def test_bad_confs_name_the_key(conf, message):
    with pytest.raises(SparkConfError) as e:
        translate({**IMAGE, **conf}, "ns")
    assert message in str(e.value)


def test_an_image_is_required():
    with pytest.raises(SparkConfError, match=r"spark\.kubernetes\.container\.image is not set"):
        translate({"spark.executor.cores": "1"}, "ns")


def test_the_command_is_client_mode_with_the_template_and_the_app_last():
    s = translate({**IMAGE, "spark.executor.cores": "1", "spark.app.name": "wc"}, "ns")
    argv = s.argv("spark-submit", "k8s://https://127.0.0.1:6443", "wc.py", ["in.txt"], "/tmp/t.yaml")
    assert argv[:5] == ["spark-submit", "--master", "k8s://https://127.0.0.1:6443", "--deploy-mode", "client"]
    assert "spark.kubernetes.executor.podTemplateFile=/tmp/t.yaml" in argv
    assert "spark.app.name=wc" in argv
    assert argv[-2:] == ["wc.py", "in.txt"]


def test_dry_run_prints_one_option_per_line_quoted_for_a_shell():
    from mesoskube.frameworks.spark.submit import shell_lines

    argv = [
        "spark-submit",
        "--master",
        "k8s://https://h:1",
        "--conf",
        "spark.app.name=word count",
        "wc.py",
        "a b",
    ]
    assert shell_lines(argv).split(" \\\n  ") == [
        "spark-submit",
        "--master k8s://https://h:1",
        "--conf 'spark.app.name=word count'",
        "wc.py 'a b'",
    ]


def test_submit_takes_an_app_or_a_workload_not_both():
    from mesoskube.cli import build_parser
    from mesoskube.frameworks.spark.cli import cmd_submit

    both = build_parser().parse_args(["spark", "submit", "--workload", "w.yaml", "app.py"])
    assert both.app == "app.py" and cmd_submit(both) == 2
    neither = build_parser().parse_args(["spark", "submit"])
    assert cmd_submit(neither) == 2
    real = build_parser().parse_args(
        ["spark", "submit", "--conf", "spark.cores.max=4", "pi.py", "100", "--x"]
    )
    assert real.app == "pi.py" and real.app_args == ["100", "--x"] and real.scheduler_name == "mesoskube"


# ------------------------------------------------------------------ cluster deploy mode

CLUSTER = {
    **IMAGE,
    "spark.executor.cores": "1",
    "spark.cores.max": "2",
    "spark.kubernetes.authenticate.driver.serviceAccountName": "sa",
}


def test_cluster_mode_names_the_driver_pod_and_returns_at_once():
    s = translate(
        {**CLUSTER, "spark.app.name": "Word Count", "spark.mesos.role": "batch"},
        "spark",
        deploy_mode="cluster",
        app="local:///apps/wc.py",
        suffix="a1b2c3",
    )
    c = s.conf
    assert c["spark.kubernetes.driver.pod.name"] == "word-count-a1b2c3-driver"
    assert s.submission_id == "spark:word-count-a1b2c3-driver"  # Spark's own id: namespace:pod
    assert c["spark.kubernetes.submission.waitAppCompletion"] == "false"
    # The Framework takes its role from the application's first pod: the driver carries it too.
    assert c["spark.kubernetes.driver.annotation.mesoskube.io/role"] == "batch"
    assert c["spark.kubernetes.executor.annotation.mesoskube.io/role"] == "batch"
    assert c["spark.kubernetes.driver.annotation.mesoskube.io/refuse-seconds"] == "120"
    assert s.warnings == ()
    argv = s.argv("spark-submit", "k8s://https://h:1", "local:///apps/wc.py", ["x"], "/t/e.yaml", "/t/d.yaml")
    assert argv[3:5] == ["--deploy-mode", "cluster"]
    assert "spark.kubernetes.driver.podTemplateFile=/t/d.yaml" in argv
    assert "spark.kubernetes.executor.podTemplateFile=/t/e.yaml" in argv
    assert argv[-2:] == ["local:///apps/wc.py", "x"]


def test_client_mode_has_no_submission_id_and_no_driver_settings():
    s = translate({**CLUSTER}, "ns", app="wc.py")
    assert s.submission_id is None and s.driver_template is None
    assert not any(k.startswith("spark.kubernetes.driver.") for k in s.conf)
    argv = s.argv("spark-submit", "k8s://https://h:1", "wc.py", [], "/t/e.yaml", "/t/d.yaml")
    assert "--deploy-mode" in argv and argv[argv.index("--deploy-mode") + 1] == "client"
    assert not any("driver.podTemplateFile" in a for a in argv)


def test_cluster_mode_driver_name_defaults_to_the_app_file_and_a_given_name_is_kept():
    s = translate(CLUSTER, "ns", deploy_mode="cluster", app="local:///opt/My_App.py", suffix="ff")
    assert s.conf["spark.kubernetes.driver.pod.name"] == "my-app-ff-driver"
    given = {**CLUSTER, "spark.kubernetes.driver.pod.name": "wc-driver"}
    assert translate(given, "ns", deploy_mode="cluster", app="local:///a.py").submission_id == "ns:wc-driver"
    unique = {
        translate(CLUSTER, "ns", deploy_mode="cluster", app="local:///a.py").submission_id for _ in range(5)
    }
    assert len(unique) == 5


def test_driver_constraints_become_the_driver_pods_affinity():
    s = translate(
        {**CLUSTER, "spark.mesos.constraints": "zone:a", "spark.mesos.driver.constraints": "ssd"},
        "ns",
        deploy_mode="cluster",
        app="local:///a.py",
    )
    driver = s.driver_template["spec"]["affinity"]["nodeAffinity"]
    executor = s.executor_template["spec"]["affinity"]["nodeAffinity"]
    term = "requiredDuringSchedulingIgnoredDuringExecution"
    assert driver[term]["nodeSelectorTerms"] == [{"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}]
    assert executor[term]["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "zone"
    client = translate({**CLUSTER, "spark.mesos.driver.constraints": "ssd"}, "ns")
    assert any("spark.mesos.driver.constraints is not used in client mode" in w for w in client.warnings)


@pytest.mark.parametrize(
    ("conf", "app", "message"),
    [
        ({"spark.driver.host": "10.0.0.1"}, "local:///a.py", "spark.driver.host: in cluster mode"),
        ({}, "wc.py", "wc.py: in cluster mode the driver runs in a pod"),
        (
            {"spark.kubernetes.driver.pod.name": "Driver_1"},
            "local:///a.py",
            "spark.kubernetes.driver.pod.name=",
        ),
        ({"spark.kubernetes.driver.pod.name": "d" * 64}, "local:///a.py", "at most 63 characters"),
    ],
)
def test_bad_cluster_mode_submissions_name_the_key_or_the_app(conf, app, message):
    with pytest.raises(SparkConfError) as e:
        translate({**CLUSTER, **conf}, "ns", deploy_mode="cluster", app=app)
    assert message in str(e.value)


def test_a_local_app_is_fine_in_cluster_mode_with_an_upload_path_and_no_service_account_is_warned():
    s = translate(
        {**IMAGE, "spark.executor.cores": "1", "spark.kubernetes.file.upload.path": "s3a://b/up"},
        "ns",
        deploy_mode="cluster",
        app="wc.py",
    )
    assert any("serviceAccountName is unset" in w for w in s.warnings)
    with pytest.raises(SparkConfError, match="--deploy-mode 'remote'"):
        translate(CLUSTER, "ns", deploy_mode="remote")


# ------------------------------------------------------------------ the fine-grained equivalent


def test_fine_equivalent_is_one_task_executors_under_dynamic_allocation_with_a_short_idle_timeout():
    s = translate(
        {**IMAGE, "spark.mesos.coarse": "false", "spark.cores.max": "6", "spark.task.cpus": "2"},
        "ns",
        fine_equivalent=True,
    )
    c = s.conf
    assert c["spark.executor.cores"] == "2"  # = spark.task.cpus: one task per executor
    assert c["spark.dynamicAllocation.enabled"] == "true"
    assert c["spark.dynamicAllocation.shuffleTracking.enabled"] == "true"
    assert c["spark.dynamicAllocation.minExecutors"] == "0"
    assert c["spark.dynamicAllocation.initialExecutors"] == "0"
    assert c["spark.dynamicAllocation.executorIdleTimeout"] == "2s"
    assert c["spark.dynamicAllocation.maxExecutors"] == "3"  # cores.max / task.cpus
    assert "spark.executor.instances" not in c
    assert not any("spark.executor.cores is unset" in w for w in s.warnings)


def test_fine_equivalent_keeps_the_users_dynamic_allocation_keys_and_says_what_it_replaced():
    s = translate(
        {
            **IMAGE,
            "spark.executor.cores": "4",
            "spark.dynamicAllocation.executorIdleTimeout": "10s",
        },
        "ns",
        fine_equivalent=True,
    )
    assert s.conf["spark.dynamicAllocation.executorIdleTimeout"] == "10s"
    assert s.conf["spark.executor.cores"] == "1"
    assert any("spark.executor.cores=4 is replaced by spark.task.cpus=1" in w for w in s.warnings)
    assert not any("replaces the translated" in w for w in s.warnings)


def test_coarse_false_points_at_the_fine_equivalent_and_coarse_true_contradicts_it():
    with pytest.raises(SparkConfError, match="--fine-equivalent"):
        translate({**IMAGE, "spark.mesos.coarse": "false"}, "ns")
    with pytest.raises(SparkConfError, match="contradicts --fine-equivalent"):
        translate({**IMAGE, "spark.mesos.coarse": "true"}, "ns", fine_equivalent=True)


def test_a_users_pod_template_keeps_its_fields_and_gets_the_constraints_anded_in():
    from mesoskube.frameworks.spark.k8s import merge_template, pod_template

    ours = pod_template(parse_constraints("zone:a"))
    user = {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}]
                    }
                }
            },
        },
    }
    merged = merge_template(user, ours)
    assert merged["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    terms = merged["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "ssd", "operator": "Exists"},
                {"key": "zone", "operator": "In", "values": ["a"]},
            ]
        }
    ]
    assert "affinity" not in user["spec"]["tolerations"][0]  # the user's dict is not changed
    assert user["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"] == [{"key": "ssd", "operator": "Exists"}]
    plain = merge_template({"spec": {"tolerations": []}}, ours)
    assert plain["spec"]["affinity"] == ours["spec"]["affinity"]
    assert merge_template(None, ours) == ours and merge_template(
        {"spec": {}}, pod_template(parse_constraints(""))
    ) == {"spec": {}}
