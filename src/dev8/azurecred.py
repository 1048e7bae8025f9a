"""The Azure credential every Azure client of dev8 uses (the aci runtime, the Key Vault
key provider): azure-identity's DefaultAzureCredential (environment variables, a managed
identity, ``az login``), nothing of dev8's own."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def default_credential(ca_bundle: Path | None = None, instance_discovery: bool = True) -> Any:
    """``ca_bundle``: the CAs to trust for Microsoft Entra (a proxy that intercepts TLS);
    ``instance_discovery`` false for an authority Entra does not know (another cloud)."""
    from azure.identity import DefaultAzureCredential
    kw: dict[str, Any] = {"exclude_interactive_browser_credential": True}
    if ca_bundle:
        kw["connection_verify"] = str(ca_bundle)
    if not instance_discovery:
        kw["disable_instance_discovery"] = True
    return DefaultAzureCredential(**kw)
