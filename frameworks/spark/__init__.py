"""Spark on mesoskube: Spark's Mesos backends (coarse- and fine-grained) as a mesoskube framework,
driving an EMULATED Spark workload (stages of timed tasks; no Spark code runs)."""

from mesoskube.frameworks.spark.app import AppSummary, SparkApplication
from mesoskube.frameworks.spark.conf import KEYS, SparkConf, SparkConfError
from mesoskube.frameworks.spark.constraints import Constraints, parse_constraints
from mesoskube.frameworks.spark.workload import EmulatedStage, EmulatedWorkload

__all__ = [
    "KEYS",
    "AppSummary",
    "Constraints",
    "EmulatedStage",
    "EmulatedWorkload",
    "SparkApplication",
    "SparkConf",
    "SparkConfError",
    "parse_constraints",
]
