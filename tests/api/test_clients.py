"""Who a connection's client is: its key's digest, else its address (or a trusted proxy's
forwarded address); never the key itself, never an arbitrary string."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from asr_serve.api.auth import APIKeyVerifier
from asr_serve.api.clients import client_of
from asr_serve.config import ClientsConfig

KEYS = APIKeyVerifier(["sk-one", "sk-two"])
NO_KEYS = APIKeyVerifier([])


def _connection(
    headers: dict[str, str] | None = None, *, peer: str = "10.1.2.3", websocket: bool = False
) -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "websocket" if websocket else "http",
        "headers": raw,
        "client": (peer, 5555),
        "query_string": b"",
        "subprotocols": [],
    }
    return HTTPConnection(scope)


def test_with_keys_each_key_is_a_client_named_by_its_digest() -> None:
    one = client_of(_connection({"Authorization": "Bearer sk-one"}), KEYS, ClientsConfig())
    two = client_of(_connection({"Authorization": "Bearer sk-two"}), KEYS, ClientsConfig())
    assert one.keyed and one.id.startswith("key:") and one.id != two.id
    assert "sk-one" not in one.id
    # The same key from elsewhere is the same client.
    again = _connection({"Authorization": "Bearer sk-one"}, peer="192.0.2.9")
    assert client_of(again, KEYS, ClientsConfig()) == one


def test_a_websocket_key_from_the_query_is_the_same_client_as_from_the_header() -> None:
    scope_query = _connection(websocket=True)
    scope_query.scope["query_string"] = b"api_key=sk-one"
    header = _connection({"Authorization": "Bearer sk-one"}, websocket=True)
    assert client_of(scope_query, KEYS, ClientsConfig()) == client_of(header, KEYS, ClientsConfig())


def test_without_keys_the_client_is_its_address() -> None:
    client = client_of(_connection(peer="10.1.2.3"), NO_KEYS, ClientsConfig())
    assert client.id == "addr:10.1.2.3" and not client.keyed


def test_the_forwarded_address_counts_only_when_its_header_is_configured() -> None:
    forged = _connection({"X-Forwarded-For": "203.0.113.7"})
    assert client_of(forged, NO_KEYS, ClientsConfig()).id == "addr:10.1.2.3"
    trusted = ClientsConfig(forwarded_for_header="X-Forwarded-For")
    chain = _connection({"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    assert client_of(chain, NO_KEYS, trusted).id == "addr:203.0.113.7"  # what the proxy saw
    junk = _connection({"X-Forwarded-For": "not-an-address\x1b[31m"})
    assert client_of(junk, NO_KEYS, trusted).id == "addr:10.1.2.3"
