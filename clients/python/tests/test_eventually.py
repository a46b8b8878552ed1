"""`eventually` against a real Redis cache in front of a real PostgreSQL (a leased database), with
asynchronous cache invalidation: a thread copies each committed change to Redis after a delay."""
from __future__ import annotations

import pathlib
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest
import redis

from conftest import TEMPLATE, free_port, wait_for
from pytest_testpool import EventuallyTimeout, eventually


@pytest.fixture(scope="module")
def redis_server():
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    workdir = tempfile.mkdtemp(prefix="tp-redis-")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def up():
        assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    try:
        wait_for(up, 30, "redis-server to answer PING")
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def database(api):
    api.ok("PUT", f"/v1/templates/{TEMPLATE}", {"migrations": [
        {"name": p.name, "sql": p.read_text()}
        for p in sorted((pathlib.Path(__file__).parent / "migrations").glob("*.sql"))]})
    lease = api.ok("POST", f"/v1/templates/{TEMPLATE}/leases", {"ttl_s": 600, "holder": "eventually"})
    yield lease["dsn"]
    api.call("DELETE", f"/v1/leases/{lease['id']}")


class CachedNotes:
    """notes in PostgreSQL, cached in Redis as note:<id>; the cache is updated `delay` s after each
    commit by a background thread (the way a queue consumer invalidates a cache), or never for the
    ids in `lost` (an invalidation message that went missing)."""

    def __init__(self, dsn: str, cache: redis.Redis, delay: float):
        self.dsn = dsn
        self.db = psycopg.connect(dsn, autocommit=True)
        self.cache = cache
        self.delay = delay
        self.lost: set[int] = set()
        self._events: queue.Queue = queue.Queue()
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def write(self, note_id: int, body: str) -> None:
        self.db.execute("INSERT INTO notes (id, worker, body) VALUES (%s, 'cache', %s) "
                        "ON CONFLICT (id) DO UPDATE SET body = excluded.body", (note_id, body))
        self._events.put((time.monotonic() + self.delay, note_id))

    def cached(self, note_id: int) -> str | None:
        value = self.cache.get(f"note:{note_id}")
        return None if value is None else value.decode()

    def _copy(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as db:
            while True:
                item = self._events.get()
                if item is None:
                    return
                due, note_id = item
                time.sleep(max(0.0, due - time.monotonic()))  # the simulated propagation delay
                if note_id in self.lost:
                    continue
                row = db.execute("SELECT body FROM notes WHERE id = %s", (note_id,)).fetchone()
                self.cache.set(f"note:{note_id}", row[0])

    def close(self) -> None:
        self._events.put(None)
        self._copier.join(timeout=30)
        self.db.close()


@pytest.fixture
def notes(database, redis_server):
    redis_server.flushall()
    n = CachedNotes(database, redis_server, delay=1.5)
    yield n
    n.close()


def test_eventually_passes_once_the_cache_catches_up(notes):
    notes.write(1, "v1")
    eventually(lambda: notes.cached(1) == "v1", timeout=30)
    notes.write(1, "v2")
    assert notes.cached(1) == "v1"  # committed in PostgreSQL, not yet in Redis
    calls = []

    def cache_has_v2():
        calls.append(1)
        assert notes.cached(1) == "v2"
        return True

    assert eventually(cache_has_v2, timeout=30, first=0.01, max_interval=0.2) is True
    assert len(calls) > 1  # it had to poll


def test_eventually_fails_with_attempts_time_and_last_value_when_it_never_holds(notes):
    notes.write(2, "v1")
    eventually(lambda: notes.cached(2) == "v1", timeout=30)
    notes.lost.add(2)
    notes.write(2, "v2")  # this invalidation never arrives
    started = time.monotonic()
    with pytest.raises(EventuallyTimeout) as e:
        eventually(lambda: notes.cached(2) if notes.cached(2) == "v2" else None, timeout=1.0, max_interval=0.1)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 10
    message = str(e.value)
    assert re.search(r"did not hold after (\d+) attempts in 1\.\d\d s \(timeout 1 s\); last value: None", message), message
    assert e.value.attempts > 3 and e.value.last_value is None

    with pytest.raises(EventuallyTimeout) as e:
        def cache_is_v2():
            assert notes.cached(2) == "v2", f"cache still has {notes.cached(2)}"
        eventually(cache_is_v2, timeout=0.5)
    assert "cache_is_v2 did not hold" in str(e.value)
    assert "last exception: AssertionError: cache still has v1" in str(e.value), str(e.value)


def test_backoff_is_exponential_with_full_jitter_and_stops_at_the_deadline():
    now = [0.0]
    pauses: list[float] = []

    def sleep(s):
        pauses.append(s)
        now[0] += s

    with pytest.raises(EventuallyTimeout) as e:
        eventually(lambda: False, timeout=10, first=0.1, max_interval=1.0,
                   _clock=lambda: now[0], _sleep=sleep, _random=lambda: 1.0)
    # jitter at its top: 0.1, 0.2, 0.4, 0.8, then capped at 1.0, the last one cut to the deadline
    assert pauses[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert sum(pauses) == pytest.approx(10.0) and e.value.attempts == len(pauses) + 1
    pauses.clear()
    now[0] = 0.0
    with pytest.raises(EventuallyTimeout):
        eventually(lambda: False, timeout=1, first=0.1, _clock=lambda: now[0], _sleep=sleep, _random=lambda: 0.5)
    assert pauses[:3] == pytest.approx([0.05, 0.1, 0.2])


def test_an_unexpected_exception_propagates_at_once():
    calls = []

    def broken():
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        eventually(broken, timeout=30)
    assert len(calls) == 1
