"""The gateway under test: a real nginx rendered from deploy/nginx/hoithi.conf.template by
deploy/nginx/render.py and started by scripts/nginx.sh (its own prefix, `daemon off`, a
free port), in front of four small real HTTP servers standing in for the services.

Each stand-in answers with its own service name and echoes what it received (method,
path, headers), so a test sees where the gateway sent a request and what it added. A
request header `X-Echo-Answer` makes a stand-in misbehave the way a real service can:
answer its own problem+json, be slow, or drop the connection.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from services.core.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("registration", "quiz", "scoring", "notify")
ANSWER_HEADER = "X-Echo-Answer"
# What a stand-in sends for `X-Echo-Answer: problem-503`: a service's own 503, which the
# gateway must pass on byte for byte.
SERVICE_PROBLEM_503 = (
    b'{"type":"urn:hoithi:problem:board_rebuilding","title":"Service Unavailable","status":503,'
    b'"detail":"from the service","code":"board_rebuilding"}'
)
SLOW_ANSWER_S = 3.0


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn answers the gateway
    server: EchoServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        behaviour = self.headers.get(ANSWER_HEADER, "")
        if behaviour == "close":
            self.close_connection = True
            self.connection.shutdown(2)  # a crashed worker: no status line at all
            return
        if behaviour == "slow":
            time.sleep(SLOW_ANSWER_S)
        if behaviour == "problem-503":
            self._send(503, SERVICE_PROBLEM_503, "application/problem+json", {"Retry-After": "7"})
            return
        echoed = {
            "service": self.server.service,
            "method": self.command,
            "path": self.path,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body_bytes": len(body),
        }
        extra = {"Cache-Control": "public, max-age=30"} if behaviour == "public" else {}
        self._send(200, json.dumps(echoed).encode(), "application/json", extra)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the gateway gave up waiting (504)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: str) -> None:
        super().__init__(("127.0.0.1", free_port()), EchoHandler)
        self.service = service

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"


@contextmanager
def echo_services() -> Iterator[dict[str, EchoServer]]:
    servers = {service: EchoServer(service) for service in SERVICES}
    threads = [threading.Thread(target=s.serve_forever, name=f"echo-{n}", daemon=True) for n, s in servers.items()]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


@dataclass
class Gateway:
    base_url: str
    port: int
    key: str
    prefix: Path
    web_root: Path
    process: subprocess.Popen[bytes]

    def client(self, timeout_s: float = 10) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def log(self) -> str:
        try:
            return (self.prefix / "logs" / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""


def _private_dir(prefix: str) -> Path:
    """nginx started as root runs its workers as `nobody`, who must read the web root and
    write the prefix; mkdtemp's own folders are private (0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def write_web_root(root: Path) -> None:
    """A tiny build in web/build.py's layout: the entry page, a hashed asset."""
    (root / "assets").mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(
        "<!doctype html><title>Hội thi</title><script type=module src=/assets/app.0123456789.js></script>\n"
    )
    (root / "assets" / "app.0123456789.js").write_text("export const app = 1;\n")
    for path in (root, root / "assets"):
        path.chmod(0o755)
    for path in (root / "index.html", root / "assets" / "app.0123456789.js"):
        path.chmod(0o644)


# Test-only changes to the rendered config, each found exactly once (or the test stops):
# a read timeout short enough to reach a 504 in a second.
ConfigEdit = tuple[str, str]
SHORT_READ_TIMEOUT: ConfigEdit = (r"proxy_read_timeout \d+s;", "proxy_read_timeout 1s;")


def render_config(env: dict[str, str], edits: tuple[ConfigEdit, ...] = ()) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "nginx" / "render.py"), "-"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"{pattern!r} is in the rendered config {count} times, not once"
    return text


@contextmanager
def running_gateway(
    upstreams: dict[str, str], *, edits: tuple[ConfigEdit, ...] = (), extra_server: str = ""
) -> Iterator[Gateway]:
    """nginx from the template, with `upstreams` {service: host:port}. `extra_server` is
    appended inside the server block (test-only locations)."""
    prefix = _private_dir("hoithi-gateway-test-")
    web_root = _private_dir("hoithi-gateway-web-")
    write_web_root(web_root)
    port = free_port()
    key = f"gateway-test-{os.urandom(8).hex()}"
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "NGINX_PREFIX": str(prefix),
        "WEB_ROOT": str(web_root),
        "GATEWAY_KEY": key,
        **{f"{service.upper()}_UPSTREAM": address for service, address in upstreams.items()},
    }
    text = render_config(env, edits)
    if extra_server:
        closing = text.rstrip().rstrip("}").rstrip()
        assert closing.endswith("}"), "the rendered config no longer ends with the server block"
        text = closing[:-1] + extra_server + "\n    }\n}\n"
    # render.py made the prefix's folders; the config goes where scripts/nginx.sh looks for it.
    (prefix / "nginx.conf").write_text(text)
    stderr = (prefix / "logs" / "stderr.log").open("wb")
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "nginx.sh")], env=env, cwd=ROOT,
        stdout=stderr, stderr=subprocess.STDOUT, start_new_session=True,
    )
    gateway = Gateway(f"http://127.0.0.1:{port}", port, key, prefix, web_root, process)
    try:
        _wait_until_answering(gateway, timeout_s=15)
        yield gateway
    finally:
        _stop(process)
        stderr.close()
        shutil.rmtree(prefix, ignore_errors=True)
        shutil.rmtree(web_root, ignore_errors=True)


def _wait_until_answering(gateway: Gateway, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with gateway.client(timeout_s=1) as client:
        while time.monotonic() < deadline:
            if gateway.process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{gateway.log()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not answer in {timeout_s} s:\n{gateway.log()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # nginx's fast shutdown; the master stops its workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

