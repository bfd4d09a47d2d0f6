"""Bearer-token auth: ``Authorization: Bearer <key>`` checked against the keys.

Keys never sit in ``serve_config.yaml``: the config only says where they are, an
environment variable (default ``ASR_SERVE_API_KEYS``, comma- or newline-separated, taken
verbatim: ``#`` is part of a key there) and/or a file with one key per line (a mounted
secret), where whole-line ``#`` comments and `` # `` after a key are allowed. Auth is on as
soon as any key is found. Auth fails closed: with no key found the ingress does not start
unless the config says ``auth.anonymous: true``, and a variable that is set, or a file that
is named, but yields no key stops it even then, instead of leaving the API open.
Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every key,
so neither the length nor the position of a match shows in the answer's timing. Neither a
key nor the header is ever logged.

WebSocket clients cannot always send headers: a browser's ``WebSocket`` takes only a URL and
subprotocols. :meth:`APIKeyVerifier.check_websocket` takes the key from
``Authorization: Bearer`` first, else from the ``openai-insecure-api-key.<key>`` subprotocol
(what OpenAI's browser clients send), else from ``?api_key=``. The last two are less safe:
the subprotocol is sent in the clear inside the handshake like the header, but the query
string also lands in access logs, proxies' logs and browser history; use them only where the
client can do nothing else, over TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping

from starlette.requests import HTTPConnection

from asr_serve.config import AuthConfig
from asr_serve.errors import AuthenticationError


class AuthConfigError(RuntimeError):
    """The auth settings cannot be honoured; the ingress does not start."""


#: Where a comment starts in a key-file line: ``#`` at its start or after whitespace.
_COMMENT = re.compile(r"(^|\s)#")


def keys_from_env(value: str) -> list[str]:
    """Comma- or newline-separated keys, taken verbatim (``#`` is part of a key here)."""
    return [k.strip() for line in value.splitlines() for k in line.split(",") if k.strip()]


def keys_from_file(text: str) -> list[str]:
    """One key per line (commas allowed); a ``#`` at a line's start or after whitespace
    opens a comment, so a key that contains ``#`` (``sk-abc#def``) stays whole."""
    lines = (_COMMENT.split(line, maxsplit=1)[0] for line in text.splitlines())
    return keys_from_env("\n".join(lines))


def load_keys(config: AuthConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Collect the keys from the environment variable and the file the config names.

    Raises :class:`AuthConfigError` when keys were configured but none can be used (a set,
    non-empty variable or a named file that parse to nothing), or when none is found and
    ``anonymous`` is off: a typo in a secret must not silently switch auth off.
    """
    env = os.environ if environ is None else environ
    raw_env = env.get(config.api_keys_env, "")
    keys = keys_from_env(raw_env)
    if raw_env and not keys:
        raise AuthConfigError(
            f"${config.api_keys_env} is set but holds no API key (keys are separated by "
            "commas or newlines); fix it or unset it"
        )
    if config.api_keys_file is not None:
        try:
            file_keys = keys_from_file(config.api_keys_file.read_text())
        except OSError as exc:
            raise AuthConfigError(
                f"cannot read auth.api_keys_file {str(config.api_keys_file)!r}: {exc.strerror}"
            ) from None
        if not file_keys:
            raise AuthConfigError(
                f"auth.api_keys_file {str(config.api_keys_file)!r} holds no API key "
                "(only blank or '#' comment lines); put one key per line"
            )
        keys += file_keys
    if not keys and not config.anonymous:
        raise AuthConfigError(
            f"no API key was found in ${config.api_keys_env}"
            + (f" or {config.api_keys_file}" if config.api_keys_file else "")
            + "; set one, or auth.anonymous: true to serve without keys"
        )
    return keys


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_name(key: str) -> str:
    """A key's name as a client (``key:`` and the start of its digest): it does not give
    the key away, so logs and metrics may carry it."""
    return f"key:{_digest(key).hex()[:16]}"


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
        self.check_key(token.strip())

    def check_websocket(self, connection: HTTPConnection) -> None:
        """Raise :class:`AuthenticationError` unless a WebSocket handshake carries a known key:
        in ``Authorization: Bearer`` if it has that header, else in the
        ``openai-insecure-api-key.<key>`` subprotocol or ``?api_key=``
        (:func:`websocket_api_key`). Call it before accepting the socket."""
        if not self.enabled:
            return
        header = connection.headers.get("authorization")
        if header is not None:
            self.check(header)
            return
        key = websocket_api_key(connection)
        if not key:
            raise AuthenticationError(
                "Missing API key: send it as 'Authorization: Bearer <key>', or where a client "
                f"cannot set headers as the subprotocol '{KEY_SUBPROTOCOL_PREFIX}<key>' or the "
                f"query parameter '{KEY_QUERY_PARAM}=<key>'."
            )
        self.check_key(key)

    def key_id(self, connection: HTTPConnection) -> str | None:
        """With keys on, a name for the key ``connection`` presented (it was checked), from
        its digest, which does not give the key away; ``None`` with keys off."""
        if not self.enabled:
            return None
        scheme, _, token = connection.headers.get("authorization", "").strip().partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else websocket_api_key(connection)
        return key_name(key or "")

    def check_key(self, key: str) -> None:
        """Raise :class:`AuthenticationError` (401) unless ``key`` is a configured key."""
        if not self.enabled:
            return
        candidate = _digest(key)
        # Compare with every key, without stopping early, so timing does not tell which matched.
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        if not matched:
            raise AuthenticationError("Incorrect API key provided.")


#: The subprotocol prefix OpenAI's browser clients put the key in (``openai`` JS SDK:
#: ``new WebSocket(url, ["realtime", "openai-insecure-api-key." + key])``).
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
#: The query parameter WebSocket clients that can set neither may put the key in.
KEY_QUERY_PARAM = "api_key"


def websocket_api_key(connection: HTTPConnection) -> str | None:
    """The key a WebSocket client sent in a subprotocol or in ``?api_key=`` (not the header).

    A browser's ``WebSocket`` can set no header, so these are the ways it has.
    """
    for protocol in connection.scope.get("subprotocols", ()):
        if protocol.startswith(KEY_SUBPROTOCOL_PREFIX):
            return protocol.removeprefix(KEY_SUBPROTOCOL_PREFIX)
    return connection.query_params.get(KEY_QUERY_PARAM)


def authenticated(connection: HTTPConnection) -> None:
    """FastAPI dependency: the request's key, checked against the app's verifier
    (``app.state.api_keys``, set by :func:`asr_serve.api.asgi.build_api`) before the route
    runs, so an unauthenticated upload is refused before its body is read."""
    verifier: APIKeyVerifier = connection.app.state.api_keys
    verifier.check(connection.headers.get("authorization"))
