"""``chalice local`` with a listen backlog that survives a burst of clients.

``chalice local`` serves with Python's ``http.server``, whose listen queue holds 5 connections:
beyond that the kernel resets them (100 concurrent POSTs lost about 30 in tests/reliability).
API Gateway has no such limit, so locally the queue is made as deep as the system allows.

    python -m infra.local.serve --no-autoreload --host 127.0.0.1 --port 8000 --stage local
"""

from __future__ import annotations

import socket
import sys

from chalice import local
from chalice.cli import main as chalice_main


def main(argv: list[str] | None = None) -> int:
    local.ThreadedHTTPServer.request_queue_size = socket.SOMAXCONN
    sys.argv = ["chalice", "local", *(sys.argv[1:] if argv is None else argv)]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
