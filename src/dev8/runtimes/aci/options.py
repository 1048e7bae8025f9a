"""The ``aci`` runtime's settings, from ``DEV8_RUNTIME_*`` (documented in the README's
settings table and ``dev8 server --help``). Azure credentials are not among them: they come
from ``azure-identity``'s DefaultAzureCredential (environment, managed identity, ``az login``)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AciOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEV8_RUNTIME_", extra="ignore")

    subscription_id: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    location: str = Field(min_length=1)
    # public: a public IP per environment (only TCP 22 open); private: an IP on a delegated
    # subnet of a VNet dev8 itself reaches (SUBNET_ID required).
    network: Literal["public", "private"] = "public"
    subnet_id: str | None = None
    # public only: a DNS name label (the group's name) whose FQDN is the endpoint dev8 reaches
    # (the IP changes at every start; dev8 waits until the name points at the new one);
    # false: the endpoint is the IP ARM reports. The scope keeps the name from being taken
    # over once freed (Azure adds a hash of tenant, subscription or group to it).
    dns_label: bool = True
    dns_label_scope: Literal["Unsecure", "TenantReuse", "SubscriptionReuse", "ResourceGroupReuse",
                             "Noreuse"] = "TenantReuse"
    dns_timeout: float = Field(default=120, ge=1)  # a name that does not point at the new IP by then: failed
    # Homes: one Azure Files share per environment in this account (archives of the home).
    storage_account: str = Field(min_length=3)
    share_quota_gb: int = Field(default=100, ge=1, le=102400)
    # How ACI pulls images: the registry server with a username and password (an ACR
    # token, say), or a user-assigned managed identity (its resource id) with AcrPull on it;
    # neither: anonymous pulls.
    registry_server: str | None = None
    registry_username: str | None = None
    registry_password: str | None = None
    registry_identity: str | None = None
    default_cpus: float | None = None       # when set, over the server's DEV8_DEFAULT_CPUS
    save_every: int = Field(default=300, ge=30, le=86400)  # seconds between saves of a home
    # Another Azure cloud (or a local stand-in): ARM's URL, the CA bundle its TLS and the
    # token endpoint are checked against, and no Microsoft instance discovery.
    arm_endpoint: str = "https://management.azure.com"
    ca_bundle: Path | None = None
    instance_discovery: bool = True
    operation_timeout: float = Field(default=600, ge=10)  # a deployment that is not running by then failed

    @property
    def named(self) -> bool:
        """Whether groups get a DNS name label, their FQDN the endpoint (public IPs only)."""
        return self.network == "public" and self.dns_label

    @model_validator(mode="after")
    def _consistent(self) -> AciOptions:
        if self.network == "private" and not self.subnet_id:
            raise ValueError("DEV8_RUNTIME_NETWORK=private needs DEV8_RUNTIME_SUBNET_ID (a subnet delegated to "
                             "Microsoft.ContainerInstance/containerGroups)")
        if bool(self.registry_username) != bool(self.registry_password):
            raise ValueError("DEV8_RUNTIME_REGISTRY_USERNAME and DEV8_RUNTIME_REGISTRY_PASSWORD go together")
        if (self.registry_username or self.registry_identity) and not self.registry_server:
            raise ValueError("registry credentials need DEV8_RUNTIME_REGISTRY_SERVER")
        return self
