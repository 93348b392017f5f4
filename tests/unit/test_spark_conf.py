"""spark.* configuration: the reference defaults, Spark's value syntax, errors that name the key."""

from __future__ import annotations

import logging

import pytest

from mesoskube.frameworks.spark.conf import (
    KEYS,
    SparkConf,
    SparkConfError,
    parse_duration_s,
    parse_size_mb,
)


def test_defaults_are_the_reference_ones():
    c = SparkConf.parse({})
    assert c.coarse is True and c.mode == "coarse"
    assert c.cores_max is None and c.max_cores is None
    assert c.executor_cores is None
    assert c.executor_memory_mb == 1024
    assert c.overhead_mb == 384  # max(384, 10% of 1024)
    assert c.executor_total_memory_mb == 1408
    assert c.extra_cores == 0
    assert c.mesos_executor_cores == 1.0
    assert c.task_cpus == 1
    assert not c.constraints
    assert c.framework_role == "*"
    assert c.reject_offer_duration_s == 120
    assert c.unmet_constraints_refuse_s == 120 and c.reached_max_cores_refuse_s == 120
    assert c.gpus_max == 0
    assert c.failover_timeout_s == 0.0
    assert c.warnings == ()


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("512m", 512),
        ("2g", 2048),
        ("1024", 1024),
        ("1G", 1024),
        ("2048k", 2),
        ("1t", 1024 * 1024),
        ("3gb", 3072),
    ],
)
def test_sizes_parse_like_spark(text, mb):
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize(
    ("text", "seconds"), [("120s", 120), ("2min", 120), ("2m", 120), ("500ms", 0.5), ("30", 30), ("1h", 3600)]
)
def test_durations_parse_like_spark(text, seconds):
    assert parse_duration_s(text) == pytest.approx(seconds)


def test_memory_overhead_is_ten_percent_above_3840m_or_the_explicit_value():
    assert SparkConf.parse({"spark.executor.memory": "8g"}).overhead_mb == 819
    assert SparkConf.parse({"spark.executor.memory": "8g"}).executor_total_memory_mb == 8192 + 819
    c = SparkConf.parse({"spark.executor.memory": "8g", "spark.mesos.executor.memoryOverhead": "100"})
    assert c.overhead_mb == 100 and c.executor_total_memory_mb == 8292


def test_cores_max_rounds_down_to_a_multiple_of_executor_cores():
    assert SparkConf.parse({"spark.cores.max": "13", "spark.executor.cores": "4"}).max_cores == 12
    assert SparkConf.parse({"spark.cores.max": "13"}).max_cores == 13


def test_reject_durations_default_to_reject_offer_duration_and_can_be_set_apart():
    c = SparkConf.parse({"spark.mesos.rejectOfferDuration": "30s"})
    assert c.unmet_constraints_refuse_s == 30 and c.reached_max_cores_refuse_s == 30
    c = SparkConf.parse(
        {
            "spark.mesos.rejectOfferDuration": "30s",
            "spark.mesos.rejectOfferDurationForUnmetConstraints": "10min",
            "spark.mesos.rejectOfferDurationForReachedMaxCores": "5",
        }
    )
    assert c.unmet_constraints_refuse_s == 600 and c.reached_max_cores_refuse_s == 5


def test_fine_mode_and_the_rest_of_the_keys():
    c = SparkConf.parse(
        [
            "spark.mesos.coarse=false",
            "spark.mesos.mesosExecutor.cores=0.5",
            "spark.task.cpus=2",
            "spark.mesos.constraints=zone:a",
            "spark.mesos.role=analytics",
            "spark.mesos.gpus.max=2",
            "spark.mesos.driver.failoverTimeout=30.5",
            "spark.app.name=etl",
            "spark.mesos.extra.cores=1",
        ]
    )
    assert c.mode == "fine" and c.mesos_executor_cores == 0.5 and c.task_cpus == 2
    assert c.constraints.as_dict() == {"zone": frozenset({"a"})}
    assert c.framework_role == "analytics" and c.gpus_max == 2 and c.failover_timeout_s == 30.5
    assert c.app_name == "etl" and c.extra_cores == 1


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("spark.executor.memory", "1x", "512m"),
        ("spark.executor.memory", "1.5g", "whole number"),
        ("spark.cores.max", "abc", "whole number >= 1"),
        ("spark.cores.max", "0", "whole number >= 1"),
        ("spark.executor.cores", "2.5", "whole number"),
        ("spark.mesos.coarse", "yes", "true or false"),
        ("spark.mesos.rejectOfferDuration", "soon", "120s"),
        ("spark.mesos.rejectOfferDuration", "10parsecs", "unit"),
        ("spark.mesos.constraints", "zone:a:b", "more than one ':'"),
        ("spark.mesos.role", "-bad", "role name"),
        ("spark.mesos.mesosExecutor.cores", "-1", ">= 0"),
        ("spark.task.cpus", "0", ">= 1"),
    ],
)
def test_bad_values_name_the_key_and_what_is_expected(key, value, expect):
    with pytest.raises(SparkConfError) as e:
        SparkConf.parse({key: value})
    assert key in str(e.value) and repr(value) in str(e.value) and expect in str(e.value)


def test_impossible_combinations_are_refused_naming_both_keys():
    with pytest.raises(SparkConfError, match=r"spark.cores.max=2 .*spark.executor.cores=4"):
        SparkConf.parse({"spark.cores.max": "2", "spark.executor.cores": "4"})
    with pytest.raises(SparkConfError, match=r"spark.task.cpus=4 .*spark.executor.cores=2"):
        SparkConf.parse({"spark.task.cpus": "4", "spark.executor.cores": "2"})


def test_unknown_keys_are_warned_with_a_suggestion(caplog):
    with caplog.at_level(logging.WARNING):
        c = SparkConf.parse({"spark.cores.maxx": "4", "spark.sql.shuffle.partitions": "10"})
    assert len(c.warnings) == 2
    assert "'spark.cores.maxx'" in c.warnings[0] and "did you mean 'spark.cores.max'" in c.warnings[0]
    assert "spark.sql.shuffle.partitions" in caplog.text


def test_conf_pairs_without_equals_are_an_error():
    with pytest.raises(SparkConfError, match="KEY=VALUE"):
        SparkConf.parse(["spark.cores.max"])


def test_every_key_default_parses():
    for key in KEYS.values():
        if key.default is not None:
            key.parse(key.default)


def test_cores_max_in_fine_mode_is_warned_about_as_without_effect():
    """make demo gave its fine-mode app spark.cores.max=96 and it held up to 276 cores: the key caps
    coarse mode only (Spark's rule), and nothing said so."""
    fine = SparkConf.parse({"spark.mesos.coarse": "false", "spark.cores.max": "96"})
    assert any("spark.cores.max has no effect in fine-grained mode" in w for w in fine.warnings)
    coarse = SparkConf.parse({"spark.mesos.coarse": "true", "spark.cores.max": "96"})
    assert not coarse.warnings
