"""The ``aci`` runtime's I/O: container groups through ``azure-mgmt-containerinstance``
(api-version 2023-05-01), the homes' file shares through ``azure-mgmt-storage``, images
checked in their registry (OCI distribution API). Every call is bounded (connect 10 s,
read 60 s, azure-core's retries for throttling and server errors, then an answer)."""
from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance import models as m
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage import models as sm

from dev8.azurecred import default_credential
from dev8.runtimes.aci import builders
from dev8.runtimes.aci.options import AciOptions
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
from dev8.runtimes.pulled import PulledImages, first_line, registry_status

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
POLL_EVERY = 2  # seconds between polls of a long-running operation that sends no Retry-After
DNS_POLL_EVERY = 0.5  # seconds between lookups of a new deployment's FQDN
# ARM error codes a retry cannot heal: the user (or the operator) must change something.
USER_ACTION = {
    "InaccessibleImage": "ACI cannot pull its image {image}: check the name, that the registry has it "
                         "(dev8 image push) and dev8's registry settings",
    "RegistryErrorResponse": "ACI's registry refused to serve {image}: check the registry settings",
    "ContainerGroupQuotaReached": "the subscription's quota for container groups in {location} is used up: "
                                  "stop or delete environments, or ask Azure for more",
    "ResourceRequestsNotSupported": "{location} does not offer this CPU and memory: choose fewer CPUs or less memory",
    "ServiceUnavailable": "{location} has no capacity for this environment right now: try again later, "
                          "or with fewer CPUs or less memory",
    "SkuNotAvailable": "{location} has no capacity for this environment right now: try again later",
    "ContainerGroupNameInvalid": "Azure refused the name {group}",
    "InvalidRequestContent": "Azure refused dev8's request",
    "MissingSubscriptionRegistration": "the subscription is not registered for Microsoft.ContainerInstance: "
                                       "az provider register --namespace Microsoft.ContainerInstance",
}


def resolve(name: str) -> set[str]:
    """The addresses the system's resolver gives for ``name`` now (none when it has none)."""
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(name, 22, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError):
        return set()


class AciRuntime(PulledImages):
    name = "aci"
    pulls = "ACI pulls it at each start"
    # Its home lives on the container's own disk; the share holds its archive, saved by the
    # environment every few minutes and by this command before a stop (see the README).
    before_stop: str | None = "sudo -n dev8-env save-home"
    boot_slots: int | None = None  # on Azure's machines
    copies_storage = True  # a new home's first deployment mounts the prebuild's share and takes its archive

    def __init__(self, opts: AciOptions, credential: Any = None, resolver: Callable[[str], set[str]] = resolve) -> None:
        self.opts = opts
        self._credential = credential
        self._resolve = resolver  # the system's resolver; a test's stand-in of Azure DNS
        self._aci: ContainerInstanceManagementClient | None = None
        self._storage: StorageManagementClient | None = None
        self._storage_key: str | None = None
        # the deployment, then its name pointing at it (a public IP with a DNS label)
        self.start_timeout: float = opts.operation_timeout + (opts.dns_timeout if opts.named else 0) + 30

    @classmethod
    def from_settings(cls, data_dir: Path) -> AciRuntime:
        return cls(AciOptions())  # type: ignore[call-arg]  # pydantic-settings reads DEV8_RUNTIME_*

    # --- clients ------------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"base_url": self.opts.arm_endpoint, "connection_timeout": CONNECT_TIMEOUT,
                              "read_timeout": READ_TIMEOUT, "retry_total": 3, "retry_backoff_factor": 0.5,
                              "retry_backoff_max": 20, "polling_interval": POLL_EVERY}
        if self.opts.ca_bundle:
            kw["connection_verify"] = str(self.opts.ca_bundle)
        return kw

    def _cred(self) -> Any:
        if self._credential is None:
            self._credential = default_credential(self.opts.ca_bundle, self.opts.instance_discovery)
        return self._credential

    @property
    def aci(self) -> ContainerInstanceManagementClient:
        if self._aci is None:
            self._aci = ContainerInstanceManagementClient(self._cred(), self.opts.subscription_id,
                                                          **self._client_kwargs())
        return self._aci

    @property
    def storage(self) -> StorageManagementClient:
        if self._storage is None:
            self._storage = StorageManagementClient(self._cred(), self.opts.subscription_id, **self._client_kwargs())
        return self._storage

    @contextlib.contextmanager
    def _api(self, spec: EnvSpec | None = None) -> Iterator[None]:
        """Azure's failures as the contract's: unreachable or refused credentials →
        RuntimeUnavailable; what a retry cannot heal → NeedsUserAction, in a sentence."""
        try:
            yield
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise RuntimeUnavailable(f"Azure unreachable at {self.opts.arm_endpoint} ({first_line(exc)})") from None
        except ClientAuthenticationError as exc:
            raise RuntimeUnavailable(f"Azure refused dev8's credentials ({first_line(exc)})") from None
        except ResourceNotFoundError:
            raise
        except HttpResponseError as exc:
            code = exc.error.code if exc.error else ""
            if exc.status_code in (401, 403):
                raise RuntimeUnavailable(f"Azure refused dev8's credentials: {code} {first_line(exc)}") from None
            if exc.status_code is not None and exc.status_code >= 500:  # still so after azure-core's retries
                raise RuntimeUnavailable(f"Azure answered {exc.status_code} ({first_line(exc)})") from None
            template = USER_ACTION.get(code or "")
            if template is not None:
                names = {"image": spec.image if spec else "", "location": self.opts.location,
                         "group": builders.group_name(spec) if spec else ""}
                raise NeedsUserAction(f"{template.format(**names)} ({first_line(exc)})") from None
            raise RuntimeError(f"Azure answered {exc.status_code} {code}: {first_line(exc)}") from None
        except AzureError as exc:  # credential chains that found nothing, timeouts of token calls
            raise RuntimeUnavailable(f"Azure cannot be used: {first_line(exc)}") from None

    # --- the contract -------------------------------------------------------------------------

    def ping(self) -> None:
        with self._api():
            next(iter(self.aci.container_groups.list_by_resource_group(self.opts.resource_group)), None)

    def prepare(self, spec: EnvSpec, progress: Progress) -> None:
        self._registry_status(spec.image)  # no ping: the share's calls below say whether Azure answers
        with self._api(spec):
            self._ensure_share(spec, progress)

    def _ensure_share(self, spec: EnvSpec, progress: Progress) -> None:
        """The home's file share, made unless it existed before (then StorageGone)."""
        share = builders.share_name(spec)
        try:
            self.storage.file_shares.get(self.opts.resource_group, self.opts.storage_account, share)
            return
        except ResourceNotFoundError:
            pass
        if spec.storage_expected:
            raise StorageGone(f"its home's file share {share} in {self.opts.storage_account} is gone")
        seed = builders.seed_share_name(spec)
        if seed is not None:
            try:
                self.storage.file_shares.get(self.opts.resource_group, self.opts.storage_account, seed)
            except ResourceNotFoundError:
                raise StorageGone(f"the prebuild's file share {seed} in {self.opts.storage_account} is gone") from None
            progress(f"the home starts from the prebuild's file share {seed}")
        progress(f"creating the home's file share {share}")
        self.storage.file_shares.create(self.opts.resource_group, self.opts.storage_account, share,
                                        sm.FileShare(file_share_properties=sm.FileShareProperties(
                                            share_quota=self.opts.share_quota_gb)))

    def _key(self) -> str:
        if self._storage_key is None:
            keys = self.storage.storage_accounts.list_keys(self.opts.resource_group, self.opts.storage_account)
            self._storage_key = next(k.value for k in keys.keys_property or [] if k.value)
        return self._storage_key

    def _get(self, spec: EnvSpec) -> m.ContainerGroup | None:
        try:
            group = self.aci.container_groups.get(self.opts.resource_group, builders.group_name(spec))
        except ResourceNotFoundError:
            return None
        return group if (group.tags or {}).get(LABEL_ENV_ID) == spec.env_id else None

    def ensure_running(self, spec: EnvSpec) -> Observed:
        name = builders.group_name(spec)
        rg = self.opts.resource_group
        with self._api(spec):
            try:
                group: m.ContainerGroup | None = self.aci.container_groups.get(rg, name)
            except ResourceNotFoundError:
                group = None
            if group is not None and (group.tags or {}).get(LABEL_ENV_ID) != spec.env_id:
                # an earlier environment's group of the same name: its home share is kept, the group is not ours
                self.aci.container_groups.begin_delete(rg, name).result()
                group = None
            if group is not None and not builders.observed_of(group).running and not builders.made_for(group, spec):
                # another image, or new limits: made again on the same share
                self.aci.container_groups.begin_delete(rg, name).result()
                group = None
            if group is None:
                self._ensure_share(spec, lambda _m: None)
                body = builders.container_group(spec, self.opts, self._key())
                # polling=False: the group's own state says when it runs (and why not), sooner than the
                # operation's status does
                self.aci.container_groups.begin_create_or_update(rg, name, body, polling=False)
            elif group.instance_view is not None and group.instance_view.state in ("Stopped", "Failed", "Terminated"):
                self.aci.container_groups.begin_start(rg, name, polling=False)
            return self._wait_running(spec)

    def _wait_running(self, spec: EnvSpec) -> Observed:
        """The group once its container runs with an IP; a deployment that does not get
        there within the operation timeout fails with ACI's own events. Asked often at
        first (a cached image starts in seconds), then every POLL_EVERY seconds (ARM's
        read limits are per subscription)."""
        deadline = time.monotonic() + self.opts.operation_timeout
        delay = 0.25
        while True:
            group = self._get(spec)
            if group is None:
                raise RuntimeError("the container group vanished while it started")
            observed = builders.observed_of(group)
            if observed.reachable:
                return self._wait_named(observed)
            if group.provisioning_state == "Failed" or observed.state.get("state") == "Failed":
                raise RuntimeError(f"ACI could not start it: {observed.detail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not running after {self.opts.operation_timeout:.0f} s "
                                   f"(ACI says: {observed.detail or 'nothing'})")
            time.sleep(delay)
            delay = min(POLL_EVERY, delay * 1.5)

    def _wait_named(self, observed: Observed) -> Observed:
        """``observed`` once its FQDN resolves to the new deployment's IP. Each start gets a
        new IP and Azure's DNS follows within moments; until it does the name may still point
        at the previous deployment's address (since given to someone else's group), so dev8
        does not connect before. An endpoint that is the IP itself needs no wait."""
        ip, name = observed.state.get("ip"), observed.host
        if not name or not ip or name == ip:
            return observed
        deadline = time.monotonic() + self.opts.dns_timeout
        while True:
            found = self._resolve(name)
            if ip in found:
                return observed
            if time.monotonic() > deadline:
                raise RuntimeError(f"the DNS name {name} does not point at the environment's new address {ip} "
                                   f"after {self.opts.dns_timeout:.0f} s (it resolves to "
                                   f"{', '.join(sorted(found)) or 'nothing'})")
            time.sleep(DNS_POLL_EVERY)

    def observe(self, spec: EnvSpec) -> Observed:
        with self._api(spec):
            group = self._get(spec)
        return Observed(exists=False) if group is None else builders.observed_of(group)

    def observe_all(self, installation: str) -> dict[str, Observed]:
        with self._api():
            groups = list(self.aci.container_groups.list_by_resource_group(self.opts.resource_group))
        return {g.tags[LABEL_ENV_ID]: builders.listed_of(g) for g in groups
                if g.tags and g.tags.get(LABEL_INSTALLATION) == installation and LABEL_ENV_ID in g.tags}

    def stop(self, spec: EnvSpec) -> None:
        with self._api(spec):
            group = self._get(spec)
            if group is not None and builders.observed_of(group).state.get("state") != "Stopped":
                self.aci.container_groups.stop(self.opts.resource_group, builders.group_name(spec))

    def remove(self, spec: EnvSpec, *, keep_storage: bool) -> None:
        with self._api(spec):
            if self._get(spec) is not None:
                self.aci.container_groups.begin_delete(self.opts.resource_group, builders.group_name(spec)).result()
            if not keep_storage:
                with contextlib.suppress(ResourceNotFoundError):  # removed already
                    self.storage.file_shares.delete(self.opts.resource_group, self.opts.storage_account,
                                                    builders.share_name(spec))

    def logs(self, spec: EnvSpec, tail: int) -> list[str]:
        with self._api(spec):
            if self._get(spec) is None:
                return []
            try:
                found = self.aci.containers.list_logs(self.opts.resource_group, builders.group_name(spec),
                                                      builders.CONTAINER, tail=tail)
            except ResourceNotFoundError:
                return []
        return (found.content or "").splitlines()

    def image_status(self, image: str) -> str:
        self.ping()  # ACI pulls for itself: a create while Azure is down should say so
        return self._registry_status(image)

    def _registry_status(self, image: str) -> str:
        creds = None
        if self.opts.registry_username and image.startswith(f"{self.opts.registry_server}/"):
            creds = (self.opts.registry_username, self.opts.registry_password or "")
        identity = bool(self.opts.registry_identity) and image.startswith(f"{self.opts.registry_server}/")
        return registry_status(image, "ACI", creds, unverifiable_ok=identity)  # ACI's identity is not dev8's
