#!/usr/bin/python3
"""Per-test overhead of the pytest plugin's `testpool_db` (issue 14), beside the raw primitive.

What a test pays before it runs is `WorkerLease.begin_test()`: nothing for the first test, then a
reset back to the base (the template, or a checkpoint) when the previous test used the database.
Measured against the real `testpool serve` (started here on a scratch state directory, embedded
PostgreSQL), for both recycle modes, after a test that only read ("clean") and after one that
wrote ("dirty"), starting from the template and from a checkpoint; beside the raw isolation
primitive of a transaction-per-test fixture on a direct connection to the same server: BEGIN and
ROLLBACK (two round trips; the test's write between them is not timed).

usage: /usr/bin/python3 bench/plugin_overhead_bench.py [ROUNDS]   (default 200; clone-mode dirty
rounds are a quarter of it). Needs $TESTPOOL_BIN (the daemon) and the plugin importable
(PYTHONPATH=clients/python, or a venv with it installed); psycopg 3 from python3-psycopg.
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
import urllib.request

import psycopg

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))
from pytest_testpool.lease import WorkerLease  # noqa: E402

EXAMPLE = ROOT / "examples" / "shop-pytest"
WRITE = "UPDATE products SET stock = stock + 1 WHERE sku = 'PLENTY'"
READ = "SELECT count(*) FROM products"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, method: str, path: str, body: dict | None = None, timeout: float = 600):
    req = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def pct(ms: list[float], p: float) -> float:
    s = sorted(ms)
    return s[min(len(s) - 1, int(p * len(s)))] if s else 0.0


def row(what: str, ms: list[float]) -> None:
    print(f"{what:<52} {len(ms):5d} {pct(ms, 0.5):9.3f} {pct(ms, 0.99):9.3f} {sum(ms) / max(len(ms), 1):9.3f}")


def measure(url: str, template: str, rounds: int, dirty: bool, checkpoint: bool) -> list[float]:
    """begin_test() times over `rounds` simulated tests that each read (or write)."""
    lease = WorkerLease(url, template, 3600, 120, "bench")
    lease.acquire()
    try:
        if checkpoint:
            lease.register_teardown = lambda fn: None  # as a session fixture would
            with psycopg.connect(lease.dsn, autocommit=True) as c:
                c.execute("INSERT INTO customers (email) VALUES ('bench@example.test')")
            lease.checkpoint("bench")
            lease.register_teardown = None
        out = []
        for _ in range(rounds + 1):
            t0 = time.perf_counter()
            lease.begin_test()
            ms = (time.perf_counter() - t0) * 1000
            with psycopg.connect(lease.dsn, autocommit=True) as c:
                c.execute(WRITE if dirty else READ)
            out.append(ms)
        return out[1:]  # the first test of a lease pays nothing
    finally:
        lease.release()


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    binary = os.environ.get("TESTPOOL_BIN") or shutil.which("testpool")
    if not binary:
        print("plugin_overhead_bench: set TESTPOOL_BIN", file=sys.stderr)
        return 2
    work = pathlib.Path(tempfile.mkdtemp(prefix="tp-plugin-bench-"))
    work.chmod(0o755)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "daemon.log", "wb")
    daemon = subprocess.Popen([binary, "serve", "--state-dir", str(work / "state"), "--listen", f"127.0.0.1:{port}",
                               "--proxy-listen", "127.0.0.1:0"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                call(url, "GET", "/healthz", timeout=5)
                break
            except OSError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the daemon did not come up: {(work / 'daemon.log').read_text()[-2000:]}")
                time.sleep(0.1)
        schema = [{"name": p.name, "sql": p.read_text()} for p in sorted((EXAMPLE / "schema").glob("*.sql"))]
        seed = [{"name": "golden.sql", "sql": (EXAMPLE / "golden.sql").read_text()}]
        for mode in ("clone", "rollback"):
            call(url, "PUT", f"/v1/templates/bench_{mode}",
                 {"migrations": schema, "seed": seed, "recycle": mode, "pool": {"min_ready": 1, "max": 2}})

        results = {}
        for mode in ("rollback", "clone"):
            for checkpoint in (False, True):
                for dirty in (False, True):
                    n = rounds // 4 if (mode == "clone" and dirty) else rounds
                    results[(mode, checkpoint, dirty)] = measure(url, f"bench_{mode}", n, dirty, checkpoint)

        # The raw primitive: a transaction per test on a direct connection to a database of the
        # same server (a clone-mode lease's DSN reaches the server itself), BEGIN and ROLLBACK
        # timed, the test's write between them not.
        raw = []
        lease = WorkerLease(url, "bench_clone", 3600, 120, "bench-raw")
        lease.acquire()
        try:
            with psycopg.connect(lease.dsn, autocommit=True) as c:
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    c.execute("BEGIN")
                    t1 = time.perf_counter()
                    c.execute(WRITE)
                    t2 = time.perf_counter()
                    c.execute("ROLLBACK")
                    raw.append(((t1 - t0) + (time.perf_counter() - t2)) * 1000)
        finally:
            lease.release()

        print(f"per-test overhead of testpool_db (begin_test), one lease per case, load {os.getloadavg()[0]:.2f}")
        print(f"{'ms':<52} {'n':>5} {'p50':>9} {'p99':>9} {'mean':>9}")
        for (mode, checkpoint, dirty), ms in results.items():
            base = "checkpoint" if checkpoint else "template"
            row(f"{mode}: from the {base}, after a test that {'wrote' if dirty else 'read'}", ms)
        row("  raw: BEGIN + ROLLBACK on a direct connection", raw)
        raw50 = max(pct(raw, 0.5), 0.001)
        for (mode, checkpoint, dirty), ms in results.items():
            base = "checkpoint" if checkpoint else "template"
            print(f"{mode:>8} {base:>10} {'dirty' if dirty else 'clean'}: p50 {pct(ms, 0.5):.2f} ms = "
                  f"{pct(ms, 0.5) / raw50:.1f}x the raw BEGIN + ROLLBACK ({raw50:.3f} ms)")
        return 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        if not os.environ.get("TESTPOOL_BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
