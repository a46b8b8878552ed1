"""The worker's lease and what hangs off it: resets with dirty tracking, checkpoints, claims and
builders.

Checkpoints follow pytest's scopes: a fixture of a wider scope (session, module, class) sets data
up and calls `checkpoint(name)`; the checkpoint stays the base of every test until that fixture is
torn down, so each test that asks for the database starts from it. The daemon keeps checkpoints
as a stack (restoring one drops the later ones), which is exactly how pytest nests scopes.

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
from typing import Any, Callable

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


class Checkpoint:
    """One checkpoint of the worker's lease: `.name` (the daemon's), `.label` (the caller's)."""

    def __init__(self, name: str, label: str):
        self.name = name
        self.label = label

    def __repr__(self) -> str:
        return f"Checkpoint({self.label!r}, name={self.name!r})"


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
        self._at = ""            # the checkpoint the database was last made from ("": the template)
        self.checkpoints: list[Checkpoint] = []  # the live ones, outermost first
        self._checkpoint_seq = 0
        # Set by the plugin while a fixture is being set up: registers a call for its teardown.
        self.register_teardown: Callable[[Callable[[], None]], None] | None = None
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

    @property
    def base(self) -> str:
        """What a test starts from: the innermost live checkpoint's name, "" for the template."""
        return self.checkpoints[-1].name if self.checkpoints else ""

    def begin_test(self) -> None:
        """Called when a test asks for the database: back to the base first when a previous test
        may have written, or when the database is at another state."""
        self.check_alive()
        if self._used or self._at != self.base:
            self.reset(self.base)
        self._used = True

    def begin_scope(self, may_write: bool) -> None:
        """Before a fixture of a wider scope is set up: the database goes back to the base when it
        is not there, so what the fixture writes (and a checkpoint it takes) holds nothing a
        previous test left. `may_write`: the fixture uses the lease (a test after it must reset
        unless it takes a checkpoint)."""
        if self._used or self._at != self.base:
            self.reset(self.base)
        if may_write:
            self._used = True

    def reset(self, to: str = "") -> None:
        """Brings the database back to the template's state, or to checkpoint `to` (a daemon name);
        the checkpoints after it are dropped. Clone mode: the daemon skips the clone when nothing
        was written since the database was made from that state."""
        self.check_alive()
        try:
            self.info = self._client.reset(self.id, to or None)
        except ApiError as e:
            if e.status == 410 or (e.status == 404 and not to):
                raise LeaseLost(f"testpool: lease {self.id} of {self.holder} ended before the session did ({e}); "
                                f"raise --testpool-ttl if tests outlast it") from None
            raise
        names = [c.name for c in self.checkpoints]
        self.checkpoints = self.checkpoints[:names.index(to) + 1] if to in names else []
        self.resets += 1
        self._at = to
        self._used = False

    def checkpoint(self, label: str) -> Checkpoint:
        """Saves the database's committed state; it becomes the base of the tests that follow,
        until `drop_checkpoint` (the plugin calls it when the fixture that took it is torn down).
        Clone mode ends the lease's open sessions; rollback mode waits (up to 10 s) for an open
        transaction to end."""
        self.check_alive()
        if self.register_teardown is None:
            raise TestpoolError(f"testpool: checkpoint({label!r}) must be called from a fixture (session-, module- or "
                                "class-scoped): the checkpoint is the base of the tests in that fixture's scope and "
                                "ends with it")
        self._checkpoint_seq += 1
        name = f"{re.sub(r'[^A-Za-z0-9_.:-]', '_', label)[:48] or 'checkpoint'}.{self._checkpoint_seq}"
        try:
            self._client.checkpoint(self.id, name)
        except ApiError as e:
            if e.status in (404, 410):
                raise LeaseLost(f"testpool: lease {self.id} of {self.holder} ended before the session did ({e}); "
                                f"raise --testpool-ttl if tests outlast it") from None
            raise TestpoolError(f"testpool: checkpoint {label!r} of lease {self.id} failed: {e}") from None
        cp = Checkpoint(name, label)
        self.register_teardown(lambda: self.drop_checkpoint(cp))
        self.checkpoints.append(cp)
        self._at = name
        self._used = False
        return cp

    def drop_checkpoint(self, cp: Checkpoint) -> None:
        """The checkpoint stops being a base (its fixture was torn down). The daemon drops it with
        the next reset to an earlier state."""
        if cp in self.checkpoints:
            self.checkpoints = self.checkpoints[:self.checkpoints.index(cp)]

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
