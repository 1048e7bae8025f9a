"""Pure builders for the ``aci`` runtime: an environment's Azure names, its container
group (the body of the ARM PUT, as the SDK's models), what a group read back says, and
the host key the entrypoint prints into the container's log. No I/O."""
from __future__ import annotations

import math
import re
from dataclasses import replace

from azure.mgmt.containerinstance import models as m

from dev8.envimage import dev8_env as layout
from dev8.runtimes.aci.options import AciOptions
from dev8.runtimes.base import EnvSpec, Observed
from dev8.runtimes.pulled import fit_name

CONTAINER = "env"  # the one container of an environment's group
HOME_VOLUME = "home"  # the Azure Files share that holds the home's archive
HOME_DISK = "home-disk"  # an emptyDir at the home: the host's disk, not the container's overlay
# (20k small files restore in 0.7 s there against 11 s on overlay: bench/aci.py)
SHARE_MOUNT = "/mnt/dev8-home"  # where the home's share is mounted; the home itself is on the container's disk
HOME_ARCHIVE = f"{SHARE_MOUNT}/home.tar.gz"
SEED_VOLUME = "seed"  # a prebuild's share, read-only, while a new home is made from its archive
SEED_MOUNT = "/mnt/dev8-seed"
# Container groups and file shares: 3-63 lowercase letters, digits and single hyphens,
# starting and ending with a letter or digit.
_AZURE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")


def azure_name(name: str) -> str:
    """``name`` where Azure allows it; otherwise a valid, unique stand-in (:func:`fit_name`)."""
    return fit_name(name, _AZURE_NAME)


def group_name(spec: EnvSpec) -> str:
    return azure_name(spec.object_name)


def share_name(spec: EnvSpec) -> str:
    return azure_name(spec.volume_name)


def seed_share_name(spec: EnvSpec) -> str | None:
    """The share of the prebuild ``spec.seed`` names (``share_name`` of its environment)."""
    return azure_name(spec.seed_volume_name) if spec.seed_volume_name else None


def memory_gb(memory_bytes: int) -> float:
    """ACI's memory is in GB with one decimal: rounded up, never less than asked."""
    return max(0.1, math.ceil(memory_bytes / (1 << 30) * 10) / 10)


def container_group(spec: EnvSpec, opts: AciOptions, storage_key: str) -> m.ContainerGroup:
    """The container group of ``spec``: one container running the image with only TCP 22
    exposed, CPU and memory requested as asked, restarted always; the home's share mounted
    for its archive (and, for a new home made from a prebuild, the prebuild's share, read-only:
    its archive becomes this home's). No secret of the user's is in it: they go over SSH after start."""
    env = [m.EnvironmentVariable(name="DEV8_CONTROL_KEY", value=spec.control_public_key),  # a public key
           m.EnvironmentVariable(name="DEV8_HOME_ARCHIVE", value=HOME_ARCHIVE),
           m.EnvironmentVariable(name="DEV8_HOME_SAVE_EVERY", value=str(opts.save_every))]
    mounts = [m.VolumeMount(name=HOME_VOLUME, mount_path=SHARE_MOUNT),
              m.VolumeMount(name=HOME_DISK, mount_path=layout.HOME)]
    volumes = [m.Volume(name=HOME_VOLUME, azure_file=m.AzureFileVolume(
                   share_name=share_name(spec), storage_account_name=opts.storage_account,
                   storage_account_key=storage_key)), m.Volume(name=HOME_DISK, empty_dir={})]
    seed = seed_share_name(spec)
    if seed is not None:
        env.append(m.EnvironmentVariable(name="DEV8_HOME_SEED", value=f"{SEED_MOUNT}/home.tar.gz"))
        mounts.append(m.VolumeMount(name=SEED_VOLUME, mount_path=SEED_MOUNT, read_only=True))
        volumes.append(m.Volume(name=SEED_VOLUME, azure_file=m.AzureFileVolume(
            share_name=seed, read_only=True, storage_account_name=opts.storage_account,
            storage_account_key=storage_key)))
    container = m.Container(
        name=CONTAINER, image=spec.image,
        resources=m.ResourceRequirements(requests=m.ResourceRequests(cpu=spec.cpus,
                                                                     memory_in_gb=memory_gb(spec.memory_bytes))),
        ports=[m.ContainerPort(port=22, protocol="TCP")], environment_variables=env, volume_mounts=mounts)
    public = opts.network == "public"
    ip = m.IpAddress(type="Public" if public else "Private", ports=[m.Port(port=22, protocol="TCP")])
    if opts.named:
        ip.dns_name_label = group_name(spec)
        ip.auto_generated_domain_name_label_scope = opts.dns_label_scope
    credentials = None
    identity = None
    if opts.registry_server and opts.registry_identity:
        credentials = [m.ImageRegistryCredential(server=opts.registry_server, identity=opts.registry_identity)]
        identity = m.ContainerGroupIdentity(
            type="UserAssigned", user_assigned_identities={opts.registry_identity: m.UserAssignedIdentities()})
    elif opts.registry_server and opts.registry_username:
        credentials = [m.ImageRegistryCredential(server=opts.registry_server, username=opts.registry_username,
                                                 password=opts.registry_password)]
    return m.ContainerGroup(
        location=opts.location, tags=spec.labels, identity=identity, containers=[container],
        os_type="Linux", restart_policy="Always", ip_address=ip, image_registry_credentials=credentials,
        subnet_ids=None if public else [m.ContainerGroupSubnetId(id=opts.subnet_id or "")], volumes=volumes)


def made_for(group: m.ContainerGroup, spec: EnvSpec) -> bool:
    """Whether ``group`` runs what ``spec`` asks (image, CPUs, memory): else it is re-created."""
    containers = group.containers or []
    if len(containers) != 1:
        return False
    c = containers[0]
    requests = c.resources.requests if c.resources else None
    return (c.image == spec.image and requests is not None and requests.cpu == spec.cpus
            and requests.memory_in_gb == memory_gb(spec.memory_bytes))


def _addresses(group: m.ContainerGroup) -> tuple[str | None, str | None]:
    """The group's IP and FQDN as ARM reports them (none while it is not deployed)."""
    address = group.ip_address
    return (address.ip, address.fqdn) if address else (None, None)


def observed_of(group: m.ContainerGroup) -> Observed:
    """What a group read with its instance view says. Each start of a group is a new
    deployment (the IP changes, the container's memory-backed run dir is empty), and a
    restart of its container empties it too: the instance is the start time and the
    restart count. The endpoint is the group's FQDN when it has a DNS name label, else its
    IP; ``state["ip"]`` is the IP ARM reports either way (what the FQDN must resolve to)."""
    view = group.instance_view
    group_state = (view.state if view else None) or ""
    container = group.containers[0] if group.containers else None
    cview = container.instance_view if container else None
    current = cview.current_state if cview else None
    ip, fqdn = _addresses(group)
    running = group_state == "Running" and current is not None and current.state == "Running"
    instance = None
    if running and current is not None and current.start_time is not None:
        instance = f"{group.id}@{current.start_time.isoformat()}#{cview.restart_count if cview else 0}"
    events: list[m.Event] = [*((view.events or []) if view else []), *((cview.events or []) if cview else [])]
    detail = "; ".join(f"{e.name}: {e.message}" for e in events[-3:] if e.message) or group_state
    return Observed(exists=True, running=running and bool(ip), host=(fqdn or ip) if running and ip else None,
                    port=22 if running and ip else None, instance_id=instance if ip else None,
                    state={"group": group.name, "provisioning": group.provisioning_state, "state": group_state,
                           "ip": ip, "fqdn": fqdn},
                    detail=detail)


assert not layout.HOME.startswith(SHARE_MOUNT)  # never the home itself: SMB keeps no modes, owners or symlinks


def listed_of(group: m.ContainerGroup) -> Observed:
    """A group from a listing, which may come without its instance view: running then
    means deployed with an IP (a stopped group has none); no instance id (``observe`` has it)."""
    if group.instance_view is not None:
        return replace(observed_of(group), instance_id=None)
    ip, fqdn = _addresses(group)
    running = group.provisioning_state == "Succeeded" and bool(ip)
    return Observed(exists=True, running=running, host=(fqdn or ip) if running else None,
                    port=22 if running else None,
                    state={"group": group.name, "provisioning": group.provisioning_state, "ip": ip, "fqdn": fqdn},
                    detail="")
