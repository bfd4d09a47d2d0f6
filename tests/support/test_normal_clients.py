"""The ordinary clients the abuse tests measure, against a server in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.normal_clients import NormalClients, p95


def test_p95_is_the_nearest_rank() -> None:
    assert p95([1.0]) == 1.0
    assert p95([float(i) for i in range(1, 21)]) == 19.0  # 19 of 20 at or below it
    assert p95([3.0, 1.0, 2.0]) == 3.0  # few values: the largest


class _Slow(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.05)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_they_run_beside_the_block_and_do_at_least_their_minimum(url: str) -> None:
    with NormalClients(url, b"RIFF", clients=2, min_requests=6) as clients:
        pass  # the block ends at once: they still do six
    assert len(clients.results) >= 6 and clients.statuses == {200}
    assert all(0.05 <= seconds < 5 for seconds in clients.latencies)
    assert len(NormalClients.alone(url, b"RIFF", 3)) == 3
