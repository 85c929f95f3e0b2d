"""``chalice local`` as the edge the cloud has: a listen backlog that survives a burst of
clients, and every refusal in the product's error shape.

``chalice local`` serves with Python's ``http.server``, whose listen queue holds 5 connections:
beyond that the kernel resets them (tests/stack/reliability sends 100 concurrent POSTs). API
Gateway has no such limit, so locally the queue is made as deep as the system allows. Its refusals
are the development server's own: an unknown route is a 403 "Missing Authentication Token" and a
method ``http.server`` has no handler for (TRACE) a 501 HTML page; here the first is the product's
404 ``unknown_route`` (the cloud's gateway response says the same), any method reaches the app
(which answers 405 ``method_not_allowed``), and a malformed request is a 400 in the same shape.

API keys as API Gateway checks them: ``chalice local`` ignores ``api_key_required``. Where the
stage keys its routes (``API_KEY_REQUIRED=true``, as prod), a keyed route here answers only a
request whose ``x-api-key`` is ``LOCAL_API_KEY`` (which must then be set), and refuses any other
with the gateway's 403 ``api_key_required``.

    python -m infra.local.serve --no-autoreload --host 127.0.0.1 --port 8000 --stage local
    API_KEY_REQUIRED=true LOCAL_API_KEY=... python -m infra.local.serve ...   # a keyed stage

:func:`serving` runs it in a child process on a free port (the tests and the API benchmark).
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path

from chalice import Chalice, local
from chalice.cli import main as chalice_main
from chalice.config import Config

from chalicelib.api.edge import api_key_required, unknown_route
from chalicelib.api.errors import ApiError
from chalicelib.api.routes import api_key_required as stage_requires_key
from infra.local.processes import free_port
from infra.local.settings import HOST, REPO_ROOT


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, stage: str) -> Iterator[str]:
    """The API under ``chalice local`` (one process, no autoreload) with ``env`` and ``stage``,
    its output in ``log``, on a free loopback port; yields its URL once it answers."""
    url = f"http://{HOST}:{free_port()}"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.local.serve",
                "--no-autoreload",
                "--host",
                HOST,
                "--port",
                url.rsplit(":", 1)[1],
                "--stage",
                stage,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_until_answering(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_answering(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"chalice local exited:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/openapi.json", timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"chalice local did not answer on {url}:\n{log.read_text()[-2000:]}")


#: The key keyed routes answer to locally (``API_KEY_REQUIRED=true``).
LOCAL_API_KEY = "LOCAL_API_KEY"


class _NoApiKey(local.LocalGatewayException):
    CODE = 403


class _KeyedAuthorizer(local.LocalGatewayAuthorizer):
    """chalice local's authorizer step, checking ``x-api-key`` on a keyed route first."""

    def authorize(
        self, raw_path: str, lambda_event: local.EventType, lambda_context: local.LambdaContext
    ) -> local.LocalAuthPair:
        route = self._route_for_event(lambda_event)
        if route is not None and route.api_key_required:
            headers = {k.lower(): v for k, v in (lambda_event.get("headers") or {}).items()}
            given, key = headers.get("x-api-key", ""), os.environ.get(LOCAL_API_KEY, "")
            if not (key and hmac.compare_digest(given.encode(), key.encode())):
                raise _NoApiKey({})
        return super().authorize(raw_path, lambda_event, lambda_context)


class _EdgeHandler(local.ChaliceRequestHandler):
    """chalice local's request handler, refusing as the product does (module docstring)."""

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):  # any method: the app says whether the route answers it
            return self._generic_handle
        raise AttributeError(name)

    def _send_error_response(self, error: local.LocalGatewayException) -> None:
        if isinstance(error, _NoApiKey):
            self._send_error(api_key_required(), dict(error.headers))
        elif isinstance(error, local.ForbiddenError):  # no route matched (no authorizers here)
            self._send_error(unknown_route(), dict(error.headers))
        else:
            super()._send_error_response(error)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusal (a malformed request line, headers too long)."""
        self.close_connection = True
        reason = message or HTTPStatus(code).phrase
        self._send_error(ApiError(code, "bad_http_request", reason), {"Connection": "close"})

    def _send_error(self, error: ApiError, headers: dict[str, str]) -> None:
        headers["Content-Type"] = "application/json"
        self._send_http_response(error.status, headers, json.dumps(error.body()))


def _create_local_server(
    app_obj: Chalice, config: Config, host: str, port: int
) -> local.LocalDevServer:
    server = _chalice_local_server(app_obj, config, host, port)
    server.server.RequestHandlerClass = functools.partial(
        _EdgeHandler, app_object=app_obj, config=config
    )
    return server


_chalice_local_server = local.create_local_server


def main(argv: list[str] | None = None) -> int:
    if stage_requires_key() and not os.environ.get(LOCAL_API_KEY):
        print(
            f"API_KEY_REQUIRED=true: set {LOCAL_API_KEY} to the key this local stage accepts",
            file=sys.stderr,
        )
        return 2
    local.ThreadedHTTPServer.request_queue_size = socket.SOMAXCONN
    local.create_local_server = _create_local_server
    # chalice local has no hook for its authorizer step: its class is replaced.
    local.LocalGatewayAuthorizer = _KeyedAuthorizer  # type: ignore[misc]
    sys.argv = ["chalice", "local", *(sys.argv[1:] if argv is None else argv)]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
