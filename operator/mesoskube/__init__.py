"""mesoskube: Mesos-style two-level scheduling, native to Kubernetes."""

API_GROUP = "mesoskube.io"
API_VERSION = "v1alpha1"
# What a task runs when it names no image: Debian's static busybox, built offline by `make images`
# and imported into every real node (kwok fake nodes run nothing and ignore it).
TASK_IMAGE = "mesoskube.local/task-base:1"
