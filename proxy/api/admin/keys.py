"""`/admin/keys`: virtual API keys, stored hashed, each with a policy and its usage.

The policy holds the directive, capture and routing choices and the key's fleet-wide limits
(requests and tokens per minute, a carbon budget per day or month). Listing shows each key's
usage against those limits as this replica last read the fleet's totals (about a second old).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Engine, insert, select, update

from proxy.accounting.tables import api_keys
from proxy.api.admin.deps import AdminDep
from proxy.auth.keys import key_sha256, load_virtual_keys
from proxy.directives.policy import KeyPolicy
from proxy.errors import InvalidRequest, NotFound
from proxy.limits.usage import KeyUsageView
from proxy.state import AppState

router = APIRouter(prefix="/admin/keys", tags=["admin"])


class KeyCreate(BaseModel):
    """A new key's name and policy."""

    # Printable text: a NUL or other control character is a 400, not a database error.
    name: str = Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
    policy: KeyPolicy = Field(default_factory=KeyPolicy)


class KeyUpdate(BaseModel):
    """A replacement policy for an existing key."""

    policy: KeyPolicy


class KeyUsageInfo(BaseModel):
    """A key's usage against its limits (fleet-wide; gCO2e provisional until settled)."""

    requests_last_minute: float
    tokens_last_minute: float
    requests_per_minute: int | None
    tokens_per_minute: int | None
    carbon_g_co2e: float | None = Field(description="spent in the budget's current period")
    carbon_budget_g_co2e: float | None
    carbon_budget_period: str | None
    period_resets_at: datetime | None
    budget_state: str = Field(description="none | ok | nearing | spent")
    shortened_to: str | None = Field(
        description="the directive level the budget imposes at least, while nearing it")
    fleet_read_at: datetime | None


class KeyInfo(BaseModel):
    """A key as listed (never the key itself)."""

    key_id: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    policy: KeyPolicy
    usage: KeyUsageInfo | None = None


class KeyCreated(KeyInfo):
    """The answer to a creation: the only time the plain key is shown."""

    key: str


@router.post("", status_code=201, summary="Create a virtual key (shown once)")
async def create_key(body: KeyCreate, state: AdminDep) -> KeyCreated:
    """Create a key; the response is the only place its plain value appears."""
    _validate(state, body.policy)
    key = "sk-sprout-" + secrets.token_urlsafe(24)
    info = KeyCreated(key_id="key_" + secrets.token_hex(6), name=body.name,
                      created_at=datetime.now(UTC), revoked_at=None, policy=body.policy, key=key)
    await asyncio.to_thread(_insert, state.engine, info, key_sha256(key))
    await _reload(state)
    return info


@router.get("", summary="List virtual keys")
async def list_keys(state: AdminDep) -> list[KeyInfo]:
    """Every key, newest first (revoked ones included, marked), with its usage."""
    found = await asyncio.to_thread(_list, state.engine)
    return [_with_usage(state, info) for info in found]


@router.patch("/{key_id}", summary="Replace a virtual key's policy (limits included)")
async def update_key(key_id: str, body: KeyUpdate, state: AdminDep) -> KeyInfo:
    """Replace the policy; every replica applies it within `PROXY_KEYS_REFRESH_S`."""
    _validate(state, body.policy)
    found = await asyncio.to_thread(_update, state.engine, key_id, body.policy)
    if found is None:
        raise NotFound(f"No active key {key_id!r}.", code="key_not_found", param="key_id")
    await _reload(state)
    return _with_usage(state, found)


@router.delete("/{key_id}", summary="Revoke a virtual key")
async def revoke_key(key_id: str, state: AdminDep) -> KeyInfo:
    """Revoke now; requests with the key are refused from this moment."""
    found = await asyncio.to_thread(_revoke, state.engine, key_id)
    if found is None:
        raise NotFound(f"No key {key_id!r}.", code="key_not_found", param="key_id")
    await _reload(state)
    return found


def _validate(state: AppState, policy: KeyPolicy) -> None:
    catalogue_ids = state.serving.director.catalogue.ids
    if policy.directive not in ("off", "auto", *catalogue_ids):
        raise InvalidRequest(f"policy.directive must be off, auto or one of {catalogue_ids}",
                             param="policy.directive")
    for step in policy.limits.budget_steps or []:
        if step.level not in catalogue_ids:
            raise InvalidRequest(
                f"policy.limits.budget_steps: level {step.level!r} is not one of "
                f"{catalogue_ids}", param="policy.limits.budget_steps")


def _with_usage(state: AppState, info: KeyInfo) -> KeyInfo:
    if info.revoked_at is not None:
        return info
    view: KeyUsageView = state.usage.view(info.key_id, info.policy.limits)
    return info.model_copy(update={"usage": KeyUsageInfo(**dataclasses.asdict(view))})


def _update(engine: Engine, key_id: str, policy: KeyPolicy) -> KeyInfo | None:
    with engine.begin() as connection:
        updated = connection.execute(update(api_keys).where(
            api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)).values(
            policy_json=policy.model_dump_json())).rowcount
        row = connection.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
    return _row(row) if updated and row is not None else None


async def _reload(state: AppState) -> None:
    digests, policies = await asyncio.to_thread(load_virtual_keys, state.engine)
    state.keys.replace_virtual(digests, policies)


def _insert(engine: Engine, info: KeyCreated, digest: str) -> None:
    with engine.begin() as connection:
        connection.execute(insert(api_keys).values(
            key_id=info.key_id, key_sha256=digest, name=info.name, created_at=info.created_at,
            policy_json=info.policy.model_dump_json()))


def _row(row: object) -> KeyInfo:
    values = row._mapping  # type: ignore[attr-defined]
    policy = KeyPolicy.model_validate_json(values["policy_json"]) if values["policy_json"] else (
        KeyPolicy())
    return KeyInfo(key_id=values["key_id"], name=values["name"],
                   created_at=values["created_at"], revoked_at=values["revoked_at"],
                   policy=policy)


def _list(engine: Engine) -> list[KeyInfo]:
    with engine.connect() as connection:
        rows = connection.execute(select(api_keys).order_by(api_keys.c.created_at.desc()))
        return [_row(row) for row in rows]


def _revoke(engine: Engine, key_id: str) -> KeyInfo | None:
    with engine.begin() as connection:
        connection.execute(update(api_keys).where(
            api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)).values(
            revoked_at=datetime.now(UTC)))
        row = connection.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
    return _row(row) if row is not None else None
