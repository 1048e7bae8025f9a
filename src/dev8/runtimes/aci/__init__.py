"""Azure Container Instances: each environment a container group whose one container runs
the environment image pulled from a registry, only TCP 22 exposed; its home on the
container's disk, archived to an Azure Files share of its own (saved every few minutes
and before each stop, restored at start). ``options`` holds the settings, ``builders``
the pure spec → container group translation, ``runtime`` the calls to Azure."""
from dev8.runtimes.aci.runtime import AciRuntime

__all__ = ["AciRuntime"]
