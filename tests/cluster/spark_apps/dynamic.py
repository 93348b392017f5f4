"""A plain PySpark application for dynamic allocation: one slow stage (16 tasks of 1.5 s), then
idle until RELEASE_FILE exists (at most 120 s). Arguments: DONE_FILE RELEASE_FILE."""

import os
import sys
import time

from pyspark.sql import SparkSession

done, release = sys.argv[1:3]
spark = SparkSession.builder.appName("dynamic").getOrCreate()
sc = spark.sparkContext
total = sc.parallelize(range(16), 16).map(lambda i: (time.sleep(1.5), i)[1]).sum()
with open(done, "w") as f:
    f.write(str(total))
deadline = time.monotonic() + 120
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.2)
spark.stop()
