"""The Mesos master as a kopf operator: thin handlers feeding a cache, an engine that allocates,
launches and reports, and pure builders/mappers it calls."""

LABEL_FRAMEWORK = "mesoskube.io/framework"
LABEL_TASK = "mesoskube.io/task"
LABEL_AGENT = "mesoskube.io/agent-name"
# The task id a Task object stands for when its name cannot be it: a Mesos id that is not a DNS
# label (the HTTP API), or a launch refused because the id is taken (its TASK_ERROR lives apart).
LABEL_TASK_ID = "mesoskube.io/mesos-task-id"
# A Task the master created only to report a refused launch (TASK_ERROR, TASK_LOST): it gets no pod.
LABEL_REFUSED = "mesoskube.io/refused"
# A Task the master created (from an accept's inline tasks). A framework's own Tasks (answered by
# name, `taskNames`) lack it, and the chart's task-create policy keeps frameworks from setting it:
# a restarted master trusts the Tasks it finds that carry it, and checks the others against their
# Offer before any gets a pod.
LABEL_MASTER_MADE = "mesoskube.io/made-by-master"
FINALIZER = "mesoskube.io/master"
ANNOTATION_RUN_DURATION = "mesoskube.io/run-duration"
FIELD_MANAGER = "mesoskube-master"
