"""The ``kubernetes`` runtime's I/O, through the official ``kubernetes`` client: an
environment is a pod and a PersistentVolumeClaim (see :mod:`.builders` for why a bare pod),
in the namespace the settings name. Objects are read and sent as plain JSON (what the API
serialises; no model round trip), long waits follow a watch, every call is bounded
(connect 10 s, read 60 s)."""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from dev8.runtimes.base import (
    LABEL_ENV_ID,
    LABEL_INSTALLATION,
    EnvSpec,
    NeedsUserAction,
    Observed,
    Progress,
    RuntimeUnavailable,
    StorageGone,
)
from dev8.runtimes.kube import builders
from dev8.runtimes.kube.options import KubernetesOptions
from dev8.runtimes.pulled import PulledImages, first_line, registry_status

TIMEOUT = (10, 60)  # (connect, read) seconds of every call
WATCH_SLICE = 30  # seconds one watch request lasts before it is made again
GONE_TIMEOUT = 90  # seconds a deleted pod or claim may take to go (its grace period, volume detach)


class KubernetesRuntime(PulledImages):
    name = "kubernetes"
    pulls = "each node pulls it at the first start there"
    before_stop: str | None = None  # the claim is the live home
    boot_slots: int | None = None  # on the cluster's nodes
    copies_storage = True  # a new claim cloned from the prebuild's (dataSource)

    def __init__(self, opts: KubernetesOptions, api: client.ApiClient | None = None) -> None:
        self.opts = opts
        self._api_client = api
        self.start_timeout: float = opts.operation_timeout + 30

    @classmethod
    def from_settings(cls, data_dir: Path) -> KubernetesRuntime:
        return cls(KubernetesOptions())

    # --- the API ------------------------------------------------------------------------------

    @property
    def core(self) -> client.CoreV1Api:
        if self._api_client is None:
            cfg = client.Configuration()
            try:
                if self.opts.kubeconfig is None and config.incluster_config.SERVICE_HOST_ENV_NAME in os.environ:
                    config.load_incluster_config(client_configuration=cfg)
                else:
                    config.load_kube_config(config_file=str(self.opts.kubeconfig) if self.opts.kubeconfig else None,
                                            context=self.opts.context, client_configuration=cfg)
            except (config.ConfigException, OSError) as exc:
                raise RuntimeUnavailable(f"no Kubernetes credentials: {exc}") from None
            cfg.retries = 1  # connect failures are answered, not retried for long
            self._api_client = client.ApiClient(cfg)
        return client.CoreV1Api(self._api_client)

    @property
    def _where(self) -> str:
        host = self._api_client.configuration.host if self._api_client else "?"
        return f"the Kubernetes API at {host}"

    @contextlib.contextmanager
    def _api(self) -> Iterator[None]:
        """The API's failures as the contract's: unreachable, unauthenticated, forbidden (RBAC)
        or failing → RuntimeUnavailable (the operator fixes it; environments converge after);
        an object the API refuses (422) → NeedsUserAction; both in the API's own words."""
        try:
            yield
        except ApiException as exc:
            message = _status_message(exc)
            if exc.status in (401, 403):
                raise RuntimeUnavailable(f"{self._where} refused dev8 ({exc.status}): {message}") from None
            if exc.status is None or exc.status >= 500 or exc.status == 429:
                raise RuntimeUnavailable(f"{self._where} answered {exc.status}: {message}") from None
            if exc.status in (400, 422):
                raise NeedsUserAction(f"Kubernetes refused it: {message}") from None
            raise RuntimeError(f"{self._where} answered {exc.status}: {message}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise RuntimeUnavailable(f"{self._where} is unreachable ({first_line(exc)})") from None

    def _raw(self, call: Callable[..., Any], *args: Any, **kw: Any) -> dict[str, Any] | None:
        """``call``'s answer as the API's JSON; None for a 404."""
        try:
            answer = call(*args, _preload_content=False, _request_timeout=TIMEOUT, **kw)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(json.loads(answer.data))

    def _pod(self, spec: EnvSpec) -> dict[str, Any] | None:
        return self._raw(self.core.read_namespaced_pod, builders.pod_name(spec), self.opts.namespace)

    def _claim(self, spec: EnvSpec) -> dict[str, Any] | None:
        return self._raw(self.core.read_namespaced_persistent_volume_claim, builders.claim_name(spec),
                         self.opts.namespace)

    def _follow(self, kind: str, name: str, done: Callable[[dict[str, Any] | None], bool],
                deadline: float | Callable[[], float]) -> bool:
        """Watch one pod or claim until ``done(object)`` (None once deleted) or the deadline
        (a time, or a function of what was seen: it may come sooner): whether it got there.
        A watch the API ends (its time slice, a 410 Gone for an old resource version) is
        made again from a fresh read."""
        due = deadline if callable(deadline) else (lambda: deadline)
        read, listing = {"pod": (self.core.read_namespaced_pod, self.core.list_namespaced_pod),
                         "claim": (self.core.read_namespaced_persistent_volume_claim,
                                   self.core.list_namespaced_persistent_volume_claim)}[kind]
        while True:
            current = self._raw(read, name, self.opts.namespace)
            if done(current):
                return True
            remaining = due() - time.monotonic()
            if remaining <= 0:
                return False
            slice_end = time.monotonic() + min(remaining, WATCH_SLICE)
            w = watch.Watch()
            version = (current or {}).get("metadata", {}).get("resourceVersion")
            kw: dict[str, Any] = {"field_selector": f"metadata.name={name}",
                                  "timeout_seconds": max(1, round(min(remaining, WATCH_SLICE))),
                                  "_request_timeout": (TIMEOUT[0], min(remaining, WATCH_SLICE) + 10)}
            if version:
                kw["resource_version"] = version
            try:
                for event in w.stream(listing, self.opts.namespace, **kw):
                    if event["type"] == "ERROR":
                        break  # 410 Gone and the like: read again
                    if done(None if event["type"] == "DELETED" else event["raw_object"]):
                        w.stop()
                        return True
                    if due() < slice_end - 0.5:  # the deadline came nearer: a shorter watch
                        w.stop()
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise
            except urllib3.exceptions.ReadTimeoutError:
                pass  # a quiet watch: read again

    # --- the contract -------------------------------------------------------------------------

    def ping(self) -> None:
        with self._api():
            self._raw(self.core.list_namespaced_pod, self.opts.namespace, limit=1)

    def prepare(self, spec: EnvSpec, progress: Progress) -> None:
        self._registry_status(spec.image)  # no ping: the claim's calls below say whether the API answers
        with self._api():
            self._ensure_claim(spec, progress)

    def _ensure_claim(self, spec: EnvSpec, progress: Progress) -> None:
        """The home's claim, made unless it existed before (then StorageGone), and labelled
        as this environment's (a kept claim is adopted by the next environment of its name)."""
        name = builders.claim_name(spec)
        found = self._claim(spec)
        if found is not None and found["metadata"].get("deletionTimestamp"):
            if spec.storage_expected:
                raise StorageGone(f"its home's claim {name} is being deleted")
            self._follow("claim", name, lambda c: c is None, time.monotonic() + GONE_TIMEOUT)
            found = self._claim(spec)
        if found is None:
            if spec.storage_expected:
                raise StorageGone(f"its home's claim {name} in {self.opts.namespace} is gone")
            seed = builders.seed_claim_name(spec)
            if seed is not None:
                if self._raw(self.core.read_namespaced_persistent_volume_claim, seed, self.opts.namespace) is None:
                    raise StorageGone(f"the prebuild's claim {seed} in {self.opts.namespace} is gone")
                progress(f"cloning the prebuild's claim {seed} into {name}")
            progress(f"creating the home's claim {name} ({self.opts.storage_size})")
            try:
                self._raw(self.core.create_namespaced_persistent_volume_claim, self.opts.namespace,
                          builders.claim(spec, self.opts))
            except ApiException as exc:
                if exc.status != 409:  # made meanwhile by another attempt: adopted below
                    raise
                found = self._claim(spec)
        if found is not None and not builders.is_ours(found, spec):
            self._label_claim(name, spec.env_id)

    def _label_claim(self, name: str, env_id: str | None) -> None:
        self._raw(self.core.patch_namespaced_persistent_volume_claim, name, self.opts.namespace,
                  {"metadata": {"labels": {LABEL_ENV_ID: env_id}}})

    def _delete_pod(self, name: str) -> None:
        """Delete the pod and wait until it is gone (its claim is then free for the next pod)."""
        try:
            self._raw(self.core.delete_namespaced_pod, name, self.opts.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        if not self._follow("pod", name, lambda p: p is None, time.monotonic() + GONE_TIMEOUT):
            raise RuntimeError(f"pod {name} was not gone {GONE_TIMEOUT} s after its deletion")

    def ensure_running(self, spec: EnvSpec) -> Observed:
        name = builders.pod_name(spec)
        with self._api():
            self._ensure_claim(spec, lambda _m: None)
            pod = self._pod(spec)
            if pod is not None:
                observed = builders.observed_of(pod)
                if (not builders.is_ours(pod, spec) or pod["metadata"].get("deletionTimestamp")
                        or (not observed.running and not builders.is_made_for(pod, spec))):
                    # an earlier environment's pod, one being stopped, or one made for another image or limits
                    self._delete_pod(name)
                    pod = None
            if pod is None:
                try:
                    self._raw(self.core.create_namespaced_pod, self.opts.namespace, builders.pod(spec, self.opts))
                except ApiException as exc:
                    if exc.status != 409:  # made meanwhile: followed below
                        raise
            return self._wait_running(spec)

    def _wait_running(self, spec: EnvSpec) -> Observed:
        """Follow the pod until it is ready; an image the cluster cannot pull, or a pod no
        node takes within the schedule timeout, fails in the cluster's words (the pod is
        deleted; the claim kept)."""
        name = builders.pod_name(spec)
        deadline = time.monotonic() + self.opts.operation_timeout
        unschedulable_since: list[float] = []
        seen: list[dict[str, Any] | None] = [None]

        def done(pod: dict[str, Any] | None) -> bool:
            seen[0] = pod
            if pod is None:
                return True
            if builders.observed_of(pod).reachable or builders.image_failure(pod):
                return True
            if builders.unschedulable(pod):
                unschedulable_since[:] = unschedulable_since or [time.monotonic()]
                return time.monotonic() - unschedulable_since[0] >= self.opts.schedule_timeout
            unschedulable_since.clear()
            return False

        def due() -> float:  # sooner once the pod is unschedulable: when the schedule timeout ends
            if unschedulable_since:
                return min(deadline, unschedulable_since[0] + self.opts.schedule_timeout + 0.1)
            return deadline
        self._follow("pod", name, done, due)
        pod = seen[0]
        if pod is None:
            raise RuntimeError(f"pod {name} was deleted while it started")
        observed = builders.observed_of(pod)
        if observed.reachable:
            return observed
        failure = builders.image_failure(pod)
        if failure:
            self._delete_pod(name)
            raise NeedsUserAction(f"the cluster cannot pull {spec.image}: {failure}")
        reason = builders.unschedulable(pod)
        if reason:
            claim = self._claim(spec)
            if claim is not None and (claim.get("status") or {}).get("phase") == "Pending":
                reason += (f"; its home's claim {builders.claim_name(spec)} is still Pending: "
                           f"{self._claim_events(claim)}")
            self._delete_pod(name)
            raise NeedsUserAction(f"no node can run it: {reason}")
        raise RuntimeError(f"not ready after {self.opts.operation_timeout:.0f} s ({observed.detail})")

    def _claim_events(self, claim: dict[str, Any]) -> str:
        events = self._raw(self.core.list_namespaced_event, self.opts.namespace,
                           field_selector=f"involvedObject.name={claim['metadata']['name']}") or {}
        messages = [e.get("message", "") for e in events.get("items") or [] if e.get("message")]
        return messages[-1] if messages else "no storage class provides it (set DEV8_RUNTIME_STORAGE_CLASS)"

    def observe(self, spec: EnvSpec) -> Observed:
        with self._api():
            pod = self._pod(spec)
            if pod is not None and builders.is_ours(pod, spec):
                return builders.observed_of(pod)
            claim = self._claim(spec)
        if claim is not None and builders.is_ours(claim, spec):
            return Observed(exists=True, detail="stopped")
        return Observed(exists=False)

    def observe_all(self, installation: str) -> dict[str, Observed]:
        selector = f"{LABEL_INSTALLATION}={installation}"
        with self._api():
            claims = self._raw(self.core.list_namespaced_persistent_volume_claim, self.opts.namespace,
                               label_selector=selector) or {}
            pods = self._raw(self.core.list_namespaced_pod, self.opts.namespace, label_selector=selector) or {}
        found: dict[str, Observed] = {}
        for item in claims.get("items") or []:
            env_id = (item["metadata"].get("labels") or {}).get(LABEL_ENV_ID)
            if env_id:
                found[env_id] = Observed(exists=True, detail="stopped")
        for item in pods.get("items") or []:
            env_id = (item["metadata"].get("labels") or {}).get(LABEL_ENV_ID)
            if env_id:
                found[env_id] = builders.observed_of(item)
        return found

    def stop(self, spec: EnvSpec) -> None:
        with self._api():
            pod = self._pod(spec)
            if pod is not None and builders.is_ours(pod, spec):
                self._delete_pod(builders.pod_name(spec))

    def remove(self, spec: EnvSpec, *, keep_storage: bool) -> None:
        with self._api():
            self.stop(spec)
            claim = self._claim(spec)
            if claim is None:
                return
            owner = (claim["metadata"].get("labels") or {}).get(LABEL_ENV_ID)
            if owner not in (spec.env_id, None):
                return  # another environment's now
            name = builders.claim_name(spec)
            if keep_storage:
                if owner is not None:
                    self._label_claim(name, None)  # kept, nobody's: the next environment of its name adopts it
                return
            with contextlib.suppress(ApiException):  # gone already
                self._raw(self.core.delete_namespaced_persistent_volume_claim, name, self.opts.namespace)
            if not self._follow("claim", name, lambda c: c is None, time.monotonic() + GONE_TIMEOUT):
                raise RuntimeError(f"claim {name} was not gone {GONE_TIMEOUT} s after its deletion")

    def logs(self, spec: EnvSpec, tail: int) -> list[str]:
        with self._api():
            pod = self._pod(spec)
            if pod is None or not builders.is_ours(pod, spec):
                return []
            try:
                answer = self.core.read_namespaced_pod_log(builders.pod_name(spec), self.opts.namespace,
                                                           container=builders.CONTAINER, tail_lines=tail,
                                                           _preload_content=False, _request_timeout=TIMEOUT)
            except ApiException as exc:
                if exc.status in (400, 404):  # not started yet, or gone
                    return []
                raise
        return bytes(answer.data).decode(errors="replace").splitlines()  # type: ignore[attr-defined]

    def image_status(self, image: str) -> str:
        self.ping()  # the cluster pulls for itself: a create while the API is down should say so
        return self._registry_status(image)

    def _registry_status(self, image: str) -> str:
        # with pull secrets the kubelet may be let in where dev8 is not
        return registry_status(image, "Kubernetes", unverifiable_ok=bool(self.opts.image_pull_secrets))


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)[:500]
    except (ValueError, AttributeError):
        return str(exc.reason)
