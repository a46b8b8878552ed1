"""The worker's lease and what hangs off it: resets with dirty tracking, claims and builders.

One `WorkerLease` per pytest process (an xdist worker, or the lone process): taken on first use
(or at session start with --testpool-env), renewed by a background thread every ttl/3, released
at session end (`release` is idempotent and also runs at interpreter exit). The test thread and
the renewer use separate HTTP clients; the lease's own fields are only changed by the test thread.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any

from .client import ApiError, Client, TestpoolError, Unreachable, host_name


class LeaseLost(TestpoolError):
    """The lease ended before the session did (expired, released elsewhere, daemon lost it)."""


class PoolExhausted(TestpoolError):
    """No slot (or no matching row) came free within the wait; the message has the figures."""


def _bounded(call, what: str, wait_s: float):
    """Runs `call()`, retrying while the daemon answers 503 draining/unavailable, up to wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return call()
        except ApiError as e:
            if e.status != 503 or e.code not in ("draining", "unavailable") or time.monotonic() >= deadline:
                raise
            time.sleep(min(e.retry_after or 1.0, max(0.0, deadline - time.monotonic())))


class WorkerLease:
    """The lease of this pytest process. Fields: id, dsn, template, holder, info (the lease JSON)."""

    def __init__(self, url: str, template: str, ttl_s: int, wait_s: int, worker: str):
        self.template = template
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.worker = worker
        self.holder = f"pytest {worker}@{host_name()}"
        self._url = url
        self._client = Client(url)
        self.info: dict[str, Any] = {}
        self.id = ""
        self.dsn = ""
        self.resets = 0          # resets this process asked for
        self._used = False       # a test requested the database since the last reset
        self._released = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renew_error: BaseException | None = None
        self._recipes: dict[str, dict] | None = None
        self._build_seq = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Takes the lease (waiting up to wait_s for a slot) and starts the renewer."""
        start = time.monotonic()
        try:
            self.info = _bounded(lambda: self._client.lease(self.template, self.ttl_s, self.wait_s, self.holder),
                                 "lease", self.wait_s)
        except ApiError as e:
            if e.code == "pool_exhausted":
                raise PoolExhausted(f"testpool: no database of template {self.template!r} came free after "
                                    f"{time.monotonic() - start:.1f} s (--testpool-wait {self.wait_s}); "
                                    f"{self._pool_figures()}; {e.message}") from None
            raise TestpoolError(f"testpool: cannot lease template {self.template!r}: {e}") from None
        self.id = self.info["id"]
        self.dsn = self.info["dsn"]
        self._renewer = threading.Thread(target=self._renew_loop, name=f"testpool-renew-{self.id}", daemon=True)
        self._renewer.start()

    def _pool_figures(self) -> str:
        try:
            pools = [p for p in self._client.status().get("pools", [])
                     if p.get("template") == self.template and p.get("current", True)]
        except TestpoolError as e:
            return f"pool figures unavailable ({e})"
        if not pools:
            return "no pool for this template on the daemon"
        p = pools[0]
        return (f"pool: max {p.get('max')}, leased {p.get('leased')}, ready {p.get('ready')}, "
                f"warming {p.get('warming')}, recycling {p.get('recycling')}, waiting {p.get('waiting')}")

    def _renew_loop(self) -> None:
        client = Client(self._url)
        interval = max(self.ttl_s / 3.0, 0.2)
        try:
            while not self._stop.wait(interval):
                try:
                    client.renew(self.id, self.ttl_s)
                except ApiError as e:
                    if e.status in (404, 410):
                        self._renew_error = e
                        return
                except Unreachable:
                    pass  # a restarting daemon: try again at the next tick, the TTL covers a few
        finally:
            client.close()

    def check_alive(self) -> None:
        if self._renew_error is not None:
            raise LeaseLost(f"testpool: lease {self.id} of {self.holder} ended before the session did "
                            f"({self._renew_error}); raise --testpool-ttl if tests outlast it")

    def release(self) -> None:
        """Stops the renewer and releases the lease; idempotent, never raises."""
        if self._released or not self.id:
            self._released = True
            return
        self._released = True
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=10)
        for client in (self._client, Client(self._url)):
            try:
                _bounded(lambda: client.release(self.id), "release", 15)
                break
            except TestpoolError:
                continue  # a fresh connection once; then the TTL ends it
        self._client.close()

    # ---- the database ------------------------------------------------------------------------------

    def begin_test(self) -> None:
        """Called when a test asks for the database: resets it when a previous test may have written."""
        self.check_alive()
        if self._used:
            self.reset()
        self._used = True

    def reset(self) -> None:
        """Brings the database back to the template's state (the daemon skips the clone when clean)."""
        self.check_alive()
        try:
            self.info = self._client.reset(self.id)
        except ApiError as e:
            if e.status in (404, 410):
                raise LeaseLost(f"testpool: lease {self.id} of {self.holder} ended before the session did ({e}); "
                                f"raise --testpool-ttl if tests outlast it") from None
            raise
        self.resets += 1
        self._used = False

    # ---- claims ------------------------------------------------------------------------------------

    def claim(self, pool: str, ttl: int = 300, wait: int = 10, **match: Any) -> "Claim":
        body: dict[str, Any] = {"ttl_s": int(ttl), "wait_s": int(wait), "holder": self.holder}
        if match:
            body["match"] = match
        start = time.monotonic()
        try:
            answer = _bounded(lambda: self._client.claim(pool, body, int(wait)), "claim", wait)
        except ApiError as e:
            if e.code == "pool_exhausted":
                try:
                    p = self._client.get_record_pool(pool)
                    figures = (f"pool {pool}: rows {p.get('rows')}, claimed {p.get('claimed')}, free {p.get('free')}, "
                               f"expired {p.get('expired')}, waiting {p.get('waiting')}")
                except TestpoolError as e2:
                    figures = f"pool figures unavailable ({e2})"
                raise PoolExhausted(f"testpool: no row of record pool {pool!r} matching {match or {}} came free "
                                    f"after {time.monotonic() - start:.1f} s (wait {wait} s); {figures}") from None
            raise
        return Claim(answer)

    def unclaim(self, claim_id: str) -> None:
        self._client.unclaim(claim_id)

    # ---- builders ----------------------------------------------------------------------------------

    def recipe(self, name: str) -> dict:
        if self._recipes is None:
            self._recipes = {r["name"]: r for r in self._client.recipes().get("recipes", [])}
        if name not in self._recipes:
            raise TestpoolError(f"testpool: no builder recipe {name!r} on the daemon "
                                f"(it has: {', '.join(sorted(self._recipes)) or 'none'}; see serve --recipes)")
        return self._recipes[name]

    def new_namespace(self, nodeid: str) -> str:
        """A namespace unique to this worker and test: [a-z0-9_-]{1,40}."""
        self._build_seq += 1
        worker = re.sub(r"[^a-z0-9]", "", self.worker.lower())[:8] or "w"
        digest = hashlib.sha1(f"{self.id}/{nodeid}".encode()).hexdigest()[:12]
        return f"pt-{worker}-{digest}-{self._build_seq}"

    def build(self, recipe: str, namespace: str, count: int = 1, seed: int | None = None,
              overrides: dict | None = None, dsn: str | None = None) -> dict:
        """Builds in the lease's database, or in the shared database `dsn` (tied to this lease, so
        a crashed worker's rows go when its lease ends)."""
        self.check_alive()
        body: dict[str, Any] = {"recipe": recipe, "count": count, "namespace": namespace}
        if overrides:
            body["overrides"] = overrides
        if seed is not None:
            body["seed"] = seed
        if dsn is not None:
            return self._client.build_in_dsn({**body, "dsn": dsn, "lease": self.id})
        self._used = True  # the database now holds rows the template does not
        return self._client.build_in_lease(self.id, body)

    def drop_namespace(self, namespace: str) -> int:
        """Deletes what was built under `namespace` in shared databases; returns the rows deleted."""
        answer = self._client.drop_namespace(namespace)
        return int(answer.get("deleted", 0)) if answer else 0


class Claim:
    """A claimed row: `.id`, `.key`, `.row` (dict), `.token`, `.pool`, `.expires_at`."""

    def __init__(self, answer: dict):
        self.info = answer
        self.id = answer["id"]
        self.key = answer["key"]
        self.row = dict(answer.get("row") or {})
        self.token = answer["token"]
        self.pool = answer.get("pool")
        self.expires_at = answer.get("expires_at")

    def __repr__(self) -> str:
        return f"Claim(pool={self.pool!r}, key={self.key!r}, token={self.token})"
