"""KeyRing: checks a presented API key against the master key and the hashed virtual keys."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Engine, select

from proxy.accounting.tables import api_keys
from proxy.directives.policy import KeyPolicy
from proxy.errors import AuthenticationFailed
from proxy.limits.policy import KeyLimits

log = logging.getLogger(__name__)

MASTER_KEY_ID = "master"


def key_sha256(key: str) -> str:
    """The stored form of a virtual key."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """In-memory view of the keys; the request path never touches the database."""

    def __init__(
        self,
        master_key: SecretStr | None,
        virtual: dict[str, str] | None = None,
        policies: dict[str, KeyPolicy] | None = None,
    ):
        self._master = master_key.get_secret_value().encode() if master_key else None
        self._virtual = dict(virtual or {})  # sha256 hex -> key id
        self._policies = dict(policies or {})  # key id -> directive policy

    def policy(self, key_id: str | None) -> KeyPolicy | None:
        """The key's directive policy, if it has one."""
        return self._policies.get(key_id) if key_id else None

    def limits(self) -> dict[str, KeyLimits]:
        """Each active virtual key's limits (set or not)."""
        return {key_id: policy.limits for key_id, policy in self._policies.items()}

    def replace_virtual(self, virtual: dict[str, str],
                        policies: dict[str, KeyPolicy] | None = None) -> None:
        """Swap in fresh copies of the virtual keys and policies (after a change)."""
        self._virtual = dict(virtual)
        if policies is not None:
            self._policies = dict(policies)

    def authenticate(self, authorization: str | None) -> str:
        """The key id for an `Authorization: Bearer …` header, or 401."""
        if not authorization:
            raise AuthenticationFailed(
                "You didn't provide an API key. Provide it in the Authorization header as "
                "'Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed(
                "Malformed Authorization header; expected 'Bearer YOUR_KEY'.",
                code="invalid_api_key",
            )
        if self._master is not None and hmac.compare_digest(token.encode(), self._master):
            return MASTER_KEY_ID
        key_id = self._virtual.get(key_sha256(token))
        if key_id is None:
            raise AuthenticationFailed("Incorrect API key provided.", code="invalid_api_key")
        return key_id


def load_virtual_keys(engine: Engine) -> tuple[dict[str, str], dict[str, KeyPolicy]]:
    """Active virtual keys (hash -> id) and their policies, from the database."""
    query = select(api_keys.c.key_sha256, api_keys.c.key_id, api_keys.c.policy_json).where(
        api_keys.c.revoked_at.is_(None))
    digests: dict[str, str] = {}
    policies: dict[str, KeyPolicy] = {}
    with engine.connect() as connection:
        for digest, key_id, policy_json in connection.execute(query):
            digests[digest] = key_id
            if policy_json:
                policies[key_id] = KeyPolicy.model_validate_json(policy_json)
    return digests, policies


def resolve_master_key(
    configured: SecretStr | None, key_file: Path, *, create: bool
) -> SecretStr | None:
    """The configured master key, else the one saved in `key_file` (made there if `create`)."""
    if configured is not None:
        return configured
    if key_file.exists():
        return SecretStr(key_file.read_text(encoding="utf-8").strip())
    if not create:
        return None
    key = "sk-sprout-" + secrets.token_urlsafe(24)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    log.warning("no PROXY_MASTER_KEY set: generated one and saved it to %s", key_file)
    return SecretStr(key)
