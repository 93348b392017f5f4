"""A plain PySpark application for `make compare-modes` (nothing mesoskube-specific): jobs of
sleeping tasks with the driver idle between them, as an interactive session or a pipeline with a
driver-side step would be. Arguments: RESULT.json JOBS, JOBS as `tasks x seconds, gap` items:
`8x3,20;8x3,0` = 8 tasks of 3 s, 20 s with no job, 8 tasks of 3 s.

Each task records where it ran (SPARK_EXECUTOR_POD_NAME, set by Spark on Kubernetes) and its
wall-clock start and end (the executors share this machine's clock), so the bench can compute
cores busy and each executor's first task. No shuffle: with shuffle tracking an executor holding
shuffle files would be kept, which is not what is measured here."""

import json
import os
import sys
import time

from pyspark.sql import SparkSession

result, plan = sys.argv[1], sys.argv[2]
t_submit = float(os.environ.get("MODES_SUBMITTED_AT", time.time()))
spark = SparkSession.builder.appName("compare-modes").getOrCreate()
sc = spark.sparkContext
t_context = time.time()


def sleeper(seconds):
    def run(i):
        start = time.time()
        time.sleep(seconds)
        return (i, os.environ.get("SPARK_EXECUTOR_POD_NAME", "?"), start, time.time())

    return run


jobs = []
for item in plan.split(";"):
    shape, _, gap = item.partition(",")
    n, _, seconds = shape.partition("x")
    started = time.time()
    tasks = sc.parallelize(range(int(n)), int(n)).map(sleeper(float(seconds))).collect()
    jobs.append(
        {
            "tasks": int(n),
            "seconds": float(seconds),
            "start": started,
            "end": time.time(),
            "intervals": [list(t) for t in tasks],
        }
    )
    time.sleep(float(gap or 0))
out = {
    "app_id": sc.applicationId,
    "submitted": t_submit,
    "context": t_context,
    "jobs": jobs,
    "end": time.time(),
}
with open(result + ".tmp", "w") as f:
    json.dump(out, f)
os.rename(result + ".tmp", result)
spark.stop()
