"""Workspaces, their API keys and quotas. Keys are random and only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from altdub.db.models import ApiKey, Workspace
from altdub.service.errors import NotFound

KEY_PREFIX = "altdub_"


def hash_key(raw_key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def get_or_create_workspace(session: Session, name: str) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.name == name))
    if workspace is None:
        workspace = Workspace(name=name)
        session.add(workspace)
        session.flush()
    return workspace


def create_key(session: Session, workspace_name: str) -> tuple[str, ApiKey]:
    """Make a key for the workspace (created if new); the raw key is returned once, never stored."""
    workspace = get_or_create_workspace(session, workspace_name)
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(workspace_id=workspace.id, prefix=raw[: len(KEY_PREFIX) + 6], key_hash=hash_key(raw))
    session.add(key)
    session.flush()
    return raw, key


def authenticate(session: Session, raw_key: str | None) -> Workspace | None:
    if not raw_key:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw_key)))
    if key is None or key.revoked_at is not None:
        return None
    return key.workspace


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(session: Session, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
    return key


def has_any_workspace(session: Session) -> bool:
    return session.scalar(select(Workspace.id).limit(1)) is not None


def list_workspaces(session: Session) -> list[Workspace]:
    return list(session.scalars(select(Workspace).order_by(Workspace.id)))


def set_quota(session: Session, workspace_name: str, minutes: float | None) -> Workspace:
    """Set (or, with None, clear to the server default) a workspace's export quota."""
    workspace = session.scalar(select(Workspace).where(Workspace.name == workspace_name))
    if workspace is None:
        raise NotFound(f"no workspace named {workspace_name!r}")
    workspace.quota_minutes = minutes
    return workspace
