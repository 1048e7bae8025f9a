"""Everything a request handler or the gateway needs, built once at start."""
from __future__ import annotations

from dataclasses import dataclass, field

from dev8.core.activity import Activity
from dev8.core.connections import EnvConnections
from dev8.core.crypto import Keyring
from dev8.core.environments import Limits
from dev8.core.image_jobs import ImageJobs
from dev8.core.quotas import default_quota
from dev8.core.reconciler import Reconciler
from dev8.core.throttle import LoginThrottle
from dev8.runtimes.base import Runtime
from dev8.server.apps.ptysessions import PtySessions
from dev8.server.apps.sessions import AppSessions
from dev8.server.apps.tunnels import Tunnels
from dev8.server.live import LiveConnections
from dev8.settings import Settings
from dev8.store.db import Database


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    keyring: Keyring
    runtime: Runtime
    reconciler: Reconciler
    connections: EnvConnections
    tunnels: Tunnels
    terminals: PtySessions = field(default_factory=PtySessions)
    app_sessions: AppSessions = field(init=False)  # in the database: any replica serves them
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    activity: Activity = field(default_factory=Activity)  # use of environments, for idle auto-stop
    # browser_auth.resolve_env's short memory: (token hash, owner, env) → (expires, user, env)
    recent_auth: dict = field(default_factory=dict)
    gateway_host_key: str = ""
    # api.environments.image_status's short memory: image → (expires, status or the error)
    image_checks: dict = field(default_factory=dict)
    image_jobs: ImageJobs = field(init=False)  # builds and pulls admins started, on any replica
    live: LiveConnections | None = None  # set by the server (tests of handlers run without it)

    def __post_init__(self) -> None:
        self.app_sessions = AppSessions(self.db)
        self.image_jobs = ImageJobs(self.db, self.reconciler.leases.replica)

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(default_image=s.default_image, default_cpus=s.default_cpus, default_memory=s.default_memory,
                      max_secret_bytes=s.max_secret_bytes,
                      quota=default_quota(s))
