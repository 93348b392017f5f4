"""mesoskube: Mesos-style two-level scheduling, native to Kubernetes."""

API_GROUP = "mesoskube.io"
API_VERSION = "v1alpha1"
