"""Local TCP ports for what a run starts: DeepSpeed's rendezvous, a retrieval service."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now: the kernel's pick for port 0 (another
    process may still take it before it is used)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
