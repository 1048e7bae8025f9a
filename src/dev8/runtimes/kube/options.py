"""The ``kubernetes`` runtime's settings, from ``DEV8_RUNTIME_*`` (documented in the README's
settings table and ``dev8 server --help``). Cluster credentials are not among them: dev8 uses
its pod's service account inside a cluster, else a kubeconfig (``KUBECONFIG`` or the file named here)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Kubernetes quantities (resource.Quantity's grammar, binary and decimal suffixes).
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class KubernetesOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEV8_RUNTIME_", extra="ignore")

    namespace: str = Field(default="dev8-environments", pattern=DNS_LABEL.pattern)
    # Outside a cluster: this kubeconfig (else $KUBECONFIG or ~/.kube/config) and context.
    kubeconfig: Path | None = None
    context: str | None = None
    # Homes: one claim per environment of this size, from this storage class (the
    # cluster's default class when unset).
    storage_class: str | None = Field(default=None, pattern=DNS_SUBDOMAIN.pattern)
    storage_size: str = Field(default="10Gi", pattern=QUANTITY.pattern)
    # Comma-separated Secret names (type kubernetes.io/dockerconfigjson) the pods pull with.
    image_pull_secrets: Annotated[list[str], NoDecode] = []
    # Where environments run: node labels (k=v,k2=v2) and tolerations (a JSON list, as in a pod spec).
    node_selector: Annotated[dict[str, str], NoDecode] = {}
    tolerations: Annotated[list[dict[str, Any]], NoDecode] = []
    # sudo inside environments needs privilege escalation (setuid); off unless the operator allows it.
    allow_privilege_escalation: bool = False
    # Seconds a pod may stay unschedulable (a full cluster, a claim not provisioned) before
    # the start fails with the scheduler's reason; an autoscaler may need minutes.
    schedule_timeout: float = Field(default=120, ge=1)
    operation_timeout: float = Field(default=600, ge=10)  # a pod not ready by then failed

    @field_validator("image_pull_secrets", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        for name in value:
            if not DNS_SUBDOMAIN.fullmatch(name):
                raise ValueError(f"{name!r} is not a Secret name")
        return value

    @field_validator("node_selector", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = [p.strip() for p in value.split(",") if p.strip()]
            if any("=" not in p for p in pairs):
                raise ValueError("node selector: key=value pairs separated by commas")
            value = dict(p.split("=", 1) for p in pairs)
        return value

    @field_validator("tolerations", mode="before")
    @classmethod
    def _tolerations(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError as exc:
                raise ValueError(f"tolerations: a JSON list as in a pod spec ({exc})") from None
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            raise ValueError("tolerations: a JSON list of objects as in a pod spec")
        return value
