"""Optional bearer-token auth: ``Authorization: Bearer <key>`` checked against the keys.

Keys never sit in ``serve_config.yaml``: the config only says where they are, an
environment variable (default ``ASR_SERVE_API_KEYS``, comma- or newline-separated) and/or
a file with one key per line (a mounted secret). Auth is on as soon as any key is found.
Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every key,
so neither the length nor the position of a match shows in the answer's timing. Neither a
key nor the header is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from asr_serve.errors import AuthenticationError

DEFAULT_KEYS_ENV = "ASR_SERVE_API_KEYS"


class AuthConfig(BaseModel):
    """``args.auth``: where the API keys are, never the keys themselves."""

    model_config = ConfigDict(extra="forbid")

    #: Environment variable holding keys, comma- or newline-separated.
    api_keys_env: str = DEFAULT_KEYS_ENV
    #: File with one key per line (``#`` starts a comment), e.g. a mounted Kubernetes secret.
    api_keys_file: Path | None = None
    #: Refuse to start without a key, so a missing secret cannot silently open the API.
    required: bool = False


class AuthConfigError(RuntimeError):
    """The auth settings cannot be honoured; the ingress does not start."""


def _split_keys(text: str) -> list[str]:
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        keys.extend(k.strip() for k in line.split(","))
    return [k for k in keys if k]


def load_keys(config: AuthConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Collect the keys from the environment variable and the file the config names."""
    env = os.environ if environ is None else environ
    keys = _split_keys(env.get(config.api_keys_env, ""))
    if config.api_keys_file is not None:
        try:
            keys += _split_keys(config.api_keys_file.read_text())
        except OSError as exc:
            raise AuthConfigError(
                f"cannot read auth.api_keys_file {str(config.api_keys_file)!r}: {exc.strerror}"
            ) from None
    if config.required and not keys:
        raise AuthConfigError(
            f"auth.required is set but no API key was found in ${config.api_keys_env}"
            + (f" or {config.api_keys_file}" if config.api_keys_file else "")
        )
    return keys


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class APIKeyVerifier:
    """Checks an ``Authorization`` header; with no keys configured everyone is let in."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(k) for k in keys]

    @classmethod
    def from_config(
        cls, config: AuthConfig, environ: Mapping[str, str] | None = None
    ) -> APIKeyVerifier:
        return cls(load_keys(config, environ))

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None) -> None:
        """Raise :class:`AuthenticationError` (401) unless the header carries a known key."""
        if not self.enabled:
            return
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Missing API key: send it as 'Authorization: Bearer <key>'.")
        candidate = _digest(token.strip())
        # Compare with every key, without stopping early, so timing does not tell which matched.
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        if not matched:
            raise AuthenticationError("Incorrect API key provided.")
