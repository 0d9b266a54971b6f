"""Slow clients ("slowloris") against a server on 127.0.0.1, for bench/serving_peers.py and the
router's tests: ``n`` connections that each send a little every ``interval`` seconds and never
finish their request. Half never finish their headers (one more header line each time), half send
complete headers announcing a body and then trickle it one byte at a time. Bounded: everything
stops after ``max_seconds`` or when the ``with`` block ends, and every socket is closed.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class SlowClients:
    host: str
    port: int
    n: int = 50
    interval: float = 1.0
    max_seconds: float = 60.0
    body_bytes: int = 10_000
    connected: int = 0
    closed_by_server: int = 0   # connections the server ended (it may time slow ones out)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> SlowClients:
        socks = []
        for k in range(self.n):
            s = socket.create_connection((self.host, self.port), timeout=5)
            if k % 2 == 0:  # headers that never end
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            else:           # a body that never arrives in full
                s.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {self.body_bytes}\r\n\r\n{{".encode())
            s.setblocking(False)
            socks.append(s)
        self.connected = len(socks)
        self._thread = threading.Thread(target=self._trickle, args=(socks,), daemon=True)
        self._thread.start()
        return self

    def _trickle(self, socks: list[socket.socket]) -> None:
        deadline = time.monotonic() + self.max_seconds
        open_ = dict(enumerate(socks))
        tick = 0
        try:
            while not self._stop.wait(self.interval) and time.monotonic() < deadline and open_:
                tick += 1
                for k, s in list(open_.items()):
                    try:
                        s.send(f"X-Slow-{tick}: {k}\r\n".encode() if k % 2 == 0 else b" ")
                    except (BlockingIOError, InterruptedError):
                        continue  # the server reads nothing yet: keep the connection
                    except OSError:  # reset or closed by the server
                        self.closed_by_server += 1
                        del open_[k]
        finally:
            for s in socks:
                s.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 10)
