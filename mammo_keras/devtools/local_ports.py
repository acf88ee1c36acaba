"""Free TCP ports on this machine: for a cluster tried on one host (`TF_CONFIG` with
127.0.0.1 workers) or a dashboard served beside others."""

from __future__ import annotations

import socket


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports nothing listens on now (held open together while chosen, so
    they differ; another process may still take one before it is used)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for item in sockets:
            item.bind((host, 0))
        return [item.getsockname()[1] for item in sockets]
    finally:
        for item in sockets:
            item.close()
