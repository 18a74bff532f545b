"""A loopback TCP proxy that a test can cut and restore: "the database stopped" without touching the
shared PostgreSQL server. Point DATABASE_URL at `proxy.port` (with sslmode=disable, so statements can be
recognised on the wire) and call `cut()`, `stall()`, `restore()`, or `cut_when(b'COPY "usage_record"')`."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed server's kernel would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class CuttableProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._down = False
        self._stalled = False
        self._closed = False
        self._trigger: tuple[bytes, int] | None = None
        self._seen = 0
        self.tripped = threading.Event()
        self.refused = 0  # connections turned away while down
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # -- controls -------------------------------------------------------------------------------
    def cut(self) -> None:
        """The database is gone: every open connection is reset, new ones are refused."""
        with self._lock:
            self._down = True
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            _reset(client)
            _reset(server)

    def stall(self) -> None:
        """The database stops answering (a partition, a frozen server): connections stay open, new ones are
        accepted, and nothing is passed on either way until `restore()`."""
        with self._lock:
            self._stalled = True

    def restore(self) -> None:
        with self._lock:
            self._down, self._stalled, self._trigger = False, False, None

    def cut_when(self, pattern: bytes, occurrence: int = 1) -> None:
        """Cut everything when the client sends `pattern` for the `occurrence`-th time (that send is dropped)."""
        with self._lock:
            self._trigger, self._seen = (pattern, occurrence), 0
            self.tripped.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        _reset(self._listener)
        self._thread.join(timeout=5)

    # -- plumbing -------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                self.refused += 1
                _reset(client)
                continue
            try:
                client.settimeout(None)
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        tail = b""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                _reset(target)
                _reset(source)
                return
            if from_client and self._should_trip(tail, data):
                self.cut()
                self.tripped.set()
                return
            if from_client:
                tail = data[-64:]
            while self._stalled and not self._closed:
                time.sleep(0.02)
            try:
                target.sendall(data)
            except OSError:
                _reset(source)
                return

    def _should_trip(self, tail: bytes, data: bytes) -> bool:
        with self._lock:
            if self._trigger is None:
                return False
            pattern, occurrence = self._trigger
            found = (tail + data).count(pattern) - tail.count(pattern)  # a pattern split over two reads counts once
            if not found:
                return False
            self._seen += found
            if self._seen < occurrence:
                return False
            self._trigger = None
            return True


@contextmanager
def cuttable_proxy(host: str, port: int) -> Iterator[CuttableProxy]:
    proxy = CuttableProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
