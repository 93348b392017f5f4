"""The Mesos master as a kopf operator: thin handlers feeding a cache, an engine that allocates,
launches and reports, and pure builders/mappers it calls."""

LABEL_FRAMEWORK = "mesoskube.io/framework"
LABEL_TASK = "mesoskube.io/task"
LABEL_AGENT = "mesoskube.io/agent-name"
FINALIZER = "mesoskube.io/master"
ANNOTATION_RUN_DURATION = "mesoskube.io/run-duration"
FIELD_MANAGER = "mesoskube-master"
