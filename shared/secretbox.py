"""Webhook secrets at rest: sealed with a key from `LEADFLOW_SECRET_KEY`, opened to sign.

The gateway seals a destination's secret when it records the job (and when a secret is
rotated); the router opens it only to sign a batch. The store never holds a secret in
plain text, so a copy of the database (a backup, a support dump) does not let anyone
forge webhooks.

Fernet (the `cryptography` package) is authenticated encryption with a versioned token
format: a tampered or foreign token fails loudly instead of signing with garbage.
`LEADFLOW_SECRET_KEY` may list several keys, comma-separated (each one from
`Fernet.generate_key()`): the first seals, every one opens, so the key itself can be
rotated without losing the secrets sealed under the old one.

In production the key is required. In dev a fixed, public key is used so that a fresh
machine runs with nothing set and the gateway and router (separate processes, possibly
separate data dirs in tests) agree without coordination; it protects nothing, and the
first seal logs a warning saying so. A key derived per data dir was the alternative:
it would need a key file written at start by whichever service comes first (a race
between processes) and would still be readable beside the database it protects.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.config import CommonSettings, EnvReader, require_in_production
from shared.errors import ConfigError
from shared.logging import get_logger

log = get_logger(__name__)
SECRET_KEY_VAR = "LEADFLOW_SECRET_KEY"  # noqa: S105 - the variable's name, not a key
# Public on purpose (base64 of "leadflow-dev-only-not-a-secret-k"): production never
# reaches it, as the key is required there.
DEV_SECRET_KEY = "bGVhZGZsb3ctZGV2LW9ubHktbm90LWEtc2VjcmV0LWs="  # noqa: S105
# Sealed values carry a prefix so that a plain secret left by an older version is told
# apart from a token (and opened as what it is).
SEALED_PREFIX = "fernet:"


class SecretUnreadable(Exception):
    """A sealed secret does not open with any configured key (wrong or rotated-out key)."""


class SecretBox:
    """Seals and opens webhook secrets; its repr never shows a key."""

    def __init__(self, keys: list[str], *, dev_key: bool = False) -> None:
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        self.dev_key = dev_key
        self._warned = False

    def __repr__(self) -> str:
        return f"SecretBox(dev_key={self.dev_key})"

    def seal(self, secret: str) -> str:
        if self.dev_key and not self._warned:
            self._warned = True
            log.warning(
                "secrets.dev_key",
                detail=f"webhook secrets are sealed with the public dev key; set {SECRET_KEY_VAR}",
            )
        return SEALED_PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(SEALED_PREFIX):
            return stored  # written before secrets were sealed
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken as e:
            raise SecretUnreadable(f"no key in {SECRET_KEY_VAR} opens this secret") from e


def load_secret_box(env: EnvReader, common: CommonSettings) -> SecretBox:
    require_in_production(
        env, common, SECRET_KEY_VAR, "a Fernet key (Fernet.generate_key()) in production"
    )
    raw = env.raw(SECRET_KEY_VAR)
    if raw is None:
        return SecretBox([DEV_SECRET_KEY], dev_key=True)
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    for key in keys:
        try:
            Fernet(key.encode())
        except ValueError:
            raise ConfigError(
                SECRET_KEY_VAR,
                "comma-separated Fernet keys (32 url-safe base64-encoded bytes each)",
                key[:4] + "…",
            ) from None
    return SecretBox(keys)
