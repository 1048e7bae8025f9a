"""The ``kubernetes`` runtime: each environment a pod and a PersistentVolumeClaim in one
namespace of a cluster (``DEV8_RUNTIME=kubernetes``; settings in :mod:`.options`)."""
from dev8.runtimes.kube.runtime import KubernetesRuntime

__all__ = ["KubernetesRuntime"]
