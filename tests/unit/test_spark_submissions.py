"""`spark status|kill SUBMISSION`: submission ids as Spark takes them, and the driver's report
(pure: API dicts in, text out)."""

from __future__ import annotations

import pytest

from mesoskube.frameworks.spark.submissions import (
    SubmissionId,
    SubmissionIdError,
    matching,
    parse_submission_id,
    report,
)


def test_submission_ids_are_sparks_namespace_colon_pod_with_an_optional_glob():
    assert parse_submission_id("spark:wc-1-driver", "default") == SubmissionId("spark", "wc-1-driver", False)
    assert parse_submission_id("wc-1-driver", "ns") == SubmissionId("ns", "wc-1-driver", False)
    assert parse_submission_id("spark:wc-*", "default") == SubmissionId("spark", "wc-", True)
    assert str(parse_submission_id("spark:wc-*", "x")) == "spark:wc-*"


@pytest.mark.parametrize("bad", ["", "spark:", ":wc", "spark:Wc_Driver", "a:b:c"])
def test_a_bad_submission_id_says_what_is_expected(bad):
    with pytest.raises(SubmissionIdError, match="expected NAMESPACE:DRIVER-POD or DRIVER-POD"):
        parse_submission_id(bad, "default")


def pod(name, phase="Running", node="real-0", role="driver", app="spark-abc", terminated=None):
    status = {"phase": phase}
    if terminated is not None:
        status["containerStatuses"] = [{"state": {"terminated": terminated}}]
    return {
        "metadata": {
            "name": name,
            "namespace": "spark",
            "labels": {"spark-role": role, "spark-app-selector": app},
        },
        "spec": {"nodeName": node} if node else {},
        "status": status,
    }


def task(name, state, agent):
    return {"metadata": {"name": name}, "spec": {"agent": agent}, "status": {"state": state}}


def test_a_glob_matches_driver_pods_by_prefix_only_and_a_name_matches_exactly():
    pods = [pod("wc-2-driver"), pod("wc-1-driver"), pod("wc-1-exec-1", role="executor"), pod("pi-driver")]
    names = [p["metadata"]["name"] for p in matching(pods, SubmissionId("spark", "wc-", True))]
    assert names == ["wc-1-driver", "wc-2-driver"]
    assert [p["metadata"]["name"] for p in matching(pods, SubmissionId("spark", "pi-driver", False))] == [
        "pi-driver"
    ]


def test_the_report_names_the_drivers_task_state_agent_framework_and_executors():
    fw = {"metadata": {"name": "spark-abc"}, "spec": {"roles": ["batch"]}}
    tasks = [
        task("wc-driver", "TASK_RUNNING", "real-0"),
        task("wc-exec-1", "TASK_RUNNING", "real-1"),
        task("wc-exec-2", "TASK_RUNNING", "real-0"),
        task("wc-exec-3", "TASK_FINISHED", "real-1"),
    ]
    r = report(pod("wc-driver"), tasks, fw)
    assert r.state == "TASK_RUNNING" and r.task_agent == "real-0" and r.role == "batch"
    assert r.executors == {
        "wc-exec-1": "TASK_RUNNING",
        "wc-exec-2": "TASK_RUNNING",
        "wc-exec-3": "TASK_FINISHED",
    }
    text = "\n".join(r.lines())
    assert "submission spark:wc-driver" in text
    assert "driver      TASK_RUNNING (pod Running on real-0)" in text
    assert "framework   spark-abc (role batch), app spark-abc" in text
    assert "executors   1 TASK_FINISHED, 2 TASK_RUNNING on real-0, real-1" in text
    assert r.to_dict()["submission"] == "spark:wc-driver"


def test_a_waiting_driver_is_staging_with_a_hint_and_an_ended_one_reports_its_exit_code():
    waiting = report(pod("wc-driver", phase="Pending", node=None), [], None)
    assert waiting.state == "TASK_STAGING" and not waiting.finished
    assert "waiting for an offer" in waiting.message
    assert "executors   none" in "\n".join(waiting.lines())
    failed = report(
        pod("wc-driver", phase="Failed", terminated={"exitCode": 1, "reason": "Error"}),
        [task("wc-driver", "TASK_FAILED", "real-0")],
        None,
    )
    assert failed.state == "TASK_FAILED" and failed.finished and failed.exit_code == 1
    assert "exit code 1" in "\n".join(failed.lines()) and failed.message == "Error"
    # The Framework was torn down (10 s after the last pod), the pod's phase still tells.
    done = report(pod("wc-driver", phase="Succeeded", terminated={"exitCode": 0}), [], None)
    assert done.state == "TASK_FINISHED" and done.message is None
