#!/bin/bash
# What Spark's Kubernetes backend expects of an image: `executor` starts the executor backend from
# the SPARK_* variables the driver puts in the pod, `driver` runs spark-submit in client mode inside
# the pod (cluster deploy mode); anything else runs as given. tini reaps and forwards signals.
set -euo pipefail

classpath="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$SPARK_HOME/jars/*${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}"
# SPARK_JAVA_OPT_0, _1, ... carry the executor's JVM options in order.
mapfile -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | cut -d= -f2-)

role=${1:-}
case "$role" in
  executor)
    shift
    cmd=("$JAVA_HOME/bin/java" "${java_opts[@]}" "-Xms$SPARK_EXECUTOR_MEMORY" "-Xmx$SPARK_EXECUTOR_MEMORY"
         -cp "$classpath" org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
         --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES"
         --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP"
         --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" --podName "$SPARK_EXECUTOR_POD_NAME")
    ;;
  driver)
    shift
    cmd=("$SPARK_HOME/bin/spark-submit" --conf "spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS"
         --deploy-mode client "$@")
    ;;
  *)
    cmd=("$@")
    ;;
esac
exec /usr/bin/tini -s -- "${cmd[@]}"
