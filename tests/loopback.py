"""Real servers on loopback for the client tests: a uvicorn server in a thread, a server that
trickles its reply a byte at a time, and a port nothing listens on."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class LoopbackServer:
    """A real uvicorn server for `app` on 127.0.0.1, on a port the OS picked, in a thread."""

    def __init__(self, app, startup_timeout_s: float = 20.0) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + startup_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


class TricklingServer:
    """Accepts, then sends `reply` one byte every `interval_s` until `reply` runs out or the
    client hangs up; records the bytes each connection got."""

    def __init__(self, reply: bytes, interval_s: float = 0.02) -> None:
        self.reply, self.interval_s = reply, interval_s
        self.sent: list[int] = []
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.sent.append(0)
            with conn:
                conn.recv(65536)
                for byte in self.reply:
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
                    self.sent[-1] += 1
                    time.sleep(self.interval_s)

    def close(self) -> None:
        self.socket.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
