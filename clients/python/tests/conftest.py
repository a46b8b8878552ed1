"""The harness of the plugin's own tests: a real `testpool serve` (embedded local PostgreSQL), a
real redis-server, and real pytest sessions (subprocesses, often with `-n 4`) using the plugin.

$TESTPOOL_BIN names the daemon binary (run.sh passes ctest's). Every wait is for an event (an
answer, a file, a process exit) with a bounded deadline; none is a fixed sleep.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
MIGRATIONS = HERE / "migrations"
RECIPES = HERE / "recipes"
TEMPLATE = "plugintest"
READY_TIMEOUT_S = 180  # an ASan daemon on a busy CI machine initdb's slowly


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Polls condition() until it returns truthy (returned) or fails naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """Plain HTTP calls the harness makes to the daemon (independent of the plugin's client)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 120):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body: dict | None = None):
        status, answer = self.call(method, path, body)
        assert status < 300, f"{method} {path}: {status} {answer}"
        return answer

    def lease_state(self, lease_id: str) -> str:
        return self.ok("GET", f"/v1/leases/{lease_id}")["state"]

    def counters(self) -> dict:
        return self.ok("GET", "/v1/status")["counters"]


class Daemon:
    def __init__(self, binary: str, workdir: pathlib.Path):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "daemon.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--state-dir", str(workdir / "state"), "--listen", f"127.0.0.1:{self.port}",
             "--proxy-listen", "127.0.0.1:0", "--recipes", str(RECIPES), "--drain-timeout", "2"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)
        self.api = Api(self.url)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"testpool serve exited with {self.proc.returncode}: {self.log()}")
            try:
                return self.api.call("GET", "/healthz", timeout=5)[0] == 200
            except OSError:
                return False

        wait_for(ready, READY_TIMEOUT_S, "testpool serve to answer /healthz", interval=0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)  # drains, stops postgres; ASan checks leaks
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def daemon():
    binary = os.environ.get("TESTPOOL_BIN") or shutil.which("testpool")
    assert binary, "set TESTPOOL_BIN to the testpool binary"
    # 0755 all the way: run as root, the daemon's postgres runs as an unprivileged user.
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="tp-pytest-"))
    workdir.chmod(0o755)
    d = Daemon(binary, workdir)
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_dsn(daemon) -> str:
    """A database outside the pools, on the daemon's own server, with the tests' schema: where
    builds with --testpool-build-dsn go (as a shared staging database would be)."""
    import psycopg

    pg = daemon.workdir / "state" / "pg"
    port = (pg / "port").read_text().strip()
    password = (pg / "superuser.password").read_text().strip()
    admin = f"postgresql://postgres:{password}@127.0.0.1:{port}"
    with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE plugin_shared")
    with psycopg.connect(admin + "/plugin_shared", autocommit=True) as conn:
        for p in sorted(MIGRATIONS.glob("*.sql")):
            conn.execute(p.read_text())
    return admin + "/plugin_shared"


@pytest.fixture(scope="session")
def api(daemon) -> Api:
    return daemon.api


def _definition(pool: dict | None = None) -> dict:
    body = {"migrations": [{"name": p.name, "sql": p.read_text()} for p in sorted(MIGRATIONS.glob("*.sql"))]}
    if pool:
        body["pool"] = pool
    return body


@pytest.fixture(scope="session")
def shared_lease(api) -> dict:
    """A database the harness holds for the whole run: the record pool `premium_users` lives there."""
    api.ok("PUT", f"/v1/templates/{TEMPLATE}", _definition())
    lease = api.ok("POST", f"/v1/templates/{TEMPLATE}/leases", {"ttl_s": 3600, "holder": "harness"})
    api.ok("PUT", "/v1/record-pools/premium_users",
           {"lease": lease["id"], "table": "users", "key": "id", "match": {"tier": "premium"}})
    yield lease
    api.call("DELETE", f"/v1/leases/{lease['id']}")


class Run:
    """One finished pytest subprocess: returncode, stdout, stderr, and the records its tests wrote."""

    def __init__(self, proc: subprocess.CompletedProcess | subprocess.Popen, out: str, err: str,
                 records_dir: pathlib.Path):
        self.returncode = proc.returncode
        self.stdout = out
        self.stderr = err
        self.records_dir = records_dir

    def records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.records_dir.glob("*.json"))]

    def __repr__(self) -> str:
        return f"rc={self.returncode}\n--- stdout\n{self.stdout[-6000:]}\n--- stderr\n{self.stderr[-3000:]}"


# What every inner test file can import: `record(name, **fields)` writes one JSON record that the
# outer test reads back.
INNER_CONFTEST = '''
import json, os, pathlib
import pytest

@pytest.fixture
def record():
    def write(name, **fields):
        d = pathlib.Path(os.environ["TP_RECORDS"])
        tmp = d / (name + ".tmp")
        tmp.write_text(json.dumps(fields))
        tmp.rename(d / (name + ".json"))  # a reader never sees half a record
    return write
'''


class Pytester:
    """Writes test files into a fresh directory and runs pytest on them in a subprocess."""

    def __init__(self, tmp_path: pathlib.Path, daemon: Daemon):
        self.dir = tmp_path / "suite"
        self.dir.mkdir()
        self.records_dir = tmp_path / "records"
        self.records_dir.mkdir()
        self.daemon = daemon
        (self.dir / "pytest.ini").write_text("[pytest]\n")
        (self.dir / "conftest.py").write_text(INNER_CONFTEST)

    def write(self, name: str, source: str) -> None:
        (self.dir / name).write_text(source)

    def command(self, *args: str, plugin: bool = True) -> list[str]:
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args]
        if plugin:
            cmd += ["--testpool-url", self.daemon.url, "--testpool-template", TEMPLATE,
                    "--testpool-migrations", str(MIGRATIONS)]
        return cmd

    def env(self) -> dict:
        env = dict(os.environ)
        env.pop("TESTPOOL_URL", None)
        env.update({"TP_RECORDS": str(self.records_dir), "TP_URL": self.daemon.url, "PYTHONDONTWRITEBYTECODE": "1"})
        return env

    def run(self, *args: str, plugin: bool = True, timeout: float = 240) -> Run:
        proc = subprocess.run(self.command(*args, plugin=plugin), cwd=self.dir, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        return Run(proc, proc.stdout, proc.stderr, self.records_dir)

    def start(self, *args: str, plugin: bool = True) -> subprocess.Popen:
        """Starts pytest in a session of its own (a terminal's Ctrl-C reaches its whole group)."""
        return subprocess.Popen(self.command(*args, plugin=plugin), cwd=self.dir, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def finish(self, proc: subprocess.Popen, timeout: float = 120) -> Run:
        out, err = proc.communicate(timeout=timeout)
        return Run(proc, out, err, self.records_dir)


@pytest.fixture
def suite(tmp_path, daemon) -> Pytester:
    return Pytester(tmp_path, daemon)


class RecordingProxy:
    """An HTTP proxy in front of the daemon that records each request's method and path."""

    def __init__(self, target: str):
        import http.client
        import http.server
        import threading
        import urllib.parse

        parsed = urllib.parse.urlsplit(target)
        self.requests: list[tuple[str, str]] = []
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                with lock:
                    outer.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "content-length", "transfer-encoding", "keep-alive"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording_proxy(daemon):
    proxy = RecordingProxy(daemon.url)
    yield proxy
    proxy.close()
