"""Who a connection's client is: its API key when keys are on, else its address.

The address is the connection's peer, or, when ``clients.forwarded_for_header`` names a
header a trusted proxy sets, the last address in that header (the one the proxy saw; an
entry that is not an IP address is not trusted, and the peer is used). The name never
holds the key itself (:meth:`asr_serve.api.auth.APIKeyVerifier.key_id`), nor anything but
an address, so it is safe in log lines.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection

from asr_serve.api.auth import APIKeyVerifier
from asr_serve.config import ClientsConfig
from asr_serve.serving.clients import Client


def client_of(
    connection: HTTPConnection, verifier: APIKeyVerifier, config: ClientsConfig
) -> Client:
    """The client of an authenticated HTTP request or WebSocket handshake."""
    key = verifier.key_id(connection)
    if key is not None:
        return Client(key, keyed=True)
    return Client(f"addr:{_address(connection, config)}")


def _address(connection: HTTPConnection, config: ClientsConfig) -> str:
    if config.forwarded_for_header is not None:
        forwarded = connection.headers.get(config.forwarded_for_header, "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            pass
    peer = connection.client
    return peer.host if peer is not None else "unknown"
