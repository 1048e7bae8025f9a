"""Request and response bodies of the REST API."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SetupIn(BaseModel):
    token: str = Field(max_length=200)
    email: str = Field(max_length=254)
    password: str = Field(min_length=8, max_length=1024)


class LoginIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    token: str


class UserOut(BaseModel):
    email: str
    username: str
    is_admin: bool


class KeyIn(BaseModel):
    public_key: str = Field(max_length=16384)
    name: str | None = Field(default=None, max_length=128)


class KeyOut(BaseModel):
    id: int
    name: str
    fingerprint: str
    created_at: datetime


class SecretIn(BaseModel):
    value: str


class SecretOut(BaseModel):
    name: str
    created_at: datetime
    updated_at: datetime


class EnvironmentIn(BaseModel):
    name: str = Field(max_length=64)
    image: str | None = Field(default=None, max_length=255)
    cpus: float | None = None
    memory: str | None = Field(default=None, max_length=16)
    secrets: list[str] = Field(default_factory=list, max_length=64)


class EnvironmentOut(BaseModel):
    id: str
    name: str
    owner: str
    state: str
    desired_state: str
    status_message: str
    image: str
    cpus: float
    memory: str
    secrets: list[str]
    created_at: datetime
    started_at: datetime | None
    ssh_command: str


class EventOut(BaseModel):
    id: int
    ts: datetime
    step: str
    status: str
    message: str


class SshInfo(BaseModel):
    host: str
    port: int
    host_key: str
