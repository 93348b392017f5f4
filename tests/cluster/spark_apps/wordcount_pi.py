"""A plain PySpark application (nothing mesoskube-specific): a word count over a file and a pi
estimate, both computed on the executors. Arguments: INPUT RESULT.json RELEASE_FILE.

It writes RESULT.json (counts, pi, the executors that ran), then holds its executors until
RELEASE_FILE exists (at most 120 s), so the test can read the Tasks while they are running."""

import json
import os
import random
import sys
import time
from operator import add

from pyspark.sql import SparkSession

src, result, release = sys.argv[1:4]
spark = SparkSession.builder.appName("wordcount-pi").getOrCreate()
sc = spark.sparkContext
with open(src) as f:  # read by the driver, counted by the executors
    lines = f.read().splitlines()
counts = dict(sc.parallelize(lines, 4).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add).collect())


def inside(i: int) -> int:
    rnd = random.Random(i)
    x, y = rnd.random(), rnd.random()
    return 1 if x * x + y * y <= 1 else 0


n = 200_000
hits = sc.parallelize(range(n), 4).map(inside).reduce(add)
hosts = sc.parallelize(range(8), 8).map(lambda _: os.environ.get("SPARK_EXECUTOR_POD_NAME", "?")).distinct()
out = {
    "counts": counts,
    "pi": 4.0 * hits / n,
    "executor_pods": sorted(hosts.collect()),
    "app_id": sc.applicationId,
}
with open(result + ".tmp", "w") as f:
    json.dump(out, f)
os.rename(result + ".tmp", result)
deadline = time.monotonic() + 120
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.2)
spark.stop()
