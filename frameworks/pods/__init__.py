"""The pods framework: Kubernetes pods naming mesoskube's scheduler, placed through offers.

Each application's pods (Spark: one `spark-app-selector`; else the `mesoskube.io/framework`
annotation or label; else the pod alone) form one Framework in their namespace; its scheduler
accepts offers with tasks that adopt the pending pods, and the master binds them to the agent.
"""

from mesoskube.frameworks.pods.controller import PodsFramework
from mesoskube.frameworks.pods.groups import Group, group_of, role_of
from mesoskube.frameworks.pods.scheduler import PodGroupScheduler

__all__ = ["Group", "PodGroupScheduler", "PodsFramework", "group_of", "role_of"]
