"""The pytest plugin: options, the session's lease, and the fixtures.

Loaded through the `pytest11` entry point. It is active when --testpool-url, --testpool-template
or --testpool-migrations (or the ini keys of the same names) is given; otherwise it does nothing
and its fixtures raise a usage error naming the options.

xdist: the controller checks the daemon and builds the template (when --testpool-migrations is
given) once in pytest_sessionstart, before any worker starts, and tells the workers through
`workerinput`; each worker (and a run without xdist) takes its own lease.
"""
from __future__ import annotations

import atexit
import os
import pathlib
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pytest

from .client import DEFAULT_URL, ApiError, Client, TestpoolError, Unreachable
from .lease import Claim, WorkerLease

_STATE_KEY = pytest.StashKey["_State"]()


@dataclass
class Settings:
    url: str
    template: str
    migrations: pathlib.Path | None
    ttl_s: int
    wait_s: int
    export_env: bool
    build_dsn: str | None
    active: bool


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testpool", "testpool: a leased PostgreSQL database per worker")
    group.addoption("--testpool-url", dest="testpool_url", default=None,
                    help="the testpool daemon (default: ini testpool_url, $TESTPOOL_URL, " + DEFAULT_URL + ")")
    group.addoption("--testpool-template", dest="testpool_template", default=None,
                    help="template to lease databases of (default with --testpool-migrations: pytest)")
    group.addoption("--testpool-migrations", dest="testpool_migrations", default=None, metavar="DIR",
                    help="directory of *.sql migrations: the template is defined from it at session start "
                         "(built once per content hash, reused while unchanged)")
    group.addoption("--testpool-ttl", dest="testpool_ttl", default=None, type=int, metavar="S",
                    help="lease TTL in seconds, renewed every TTL/3 (default 300)")
    group.addoption("--testpool-wait", dest="testpool_wait", default=None, type=int, metavar="S",
                    help="how long to wait for a free database (default 60)")
    group.addoption("--testpool-env", dest="testpool_env", action="store_true", default=None,
                    help="take the lease at session start and export DATABASE_URL, PG* and TESTPOOL_LEASE_ID")
    group.addoption("--testpool-build-dsn", dest="testpool_build_dsn", default=None, metavar="DSN",
                    help="build testpool_build rows in this shared database (under a namespace per worker "
                         "and test, dropped at teardown) instead of the worker's own database")
    parser.addini("testpool_build_dsn", "shared database for testpool_build (instead of the worker's own)")
    parser.addini("testpool_url", "the testpool daemon's URL")
    parser.addini("testpool_template", "template to lease databases of")
    parser.addini("testpool_migrations", "directory of migrations defining the template (relative to the ini file)")
    parser.addini("testpool_ttl", "lease TTL in seconds")
    parser.addini("testpool_wait", "seconds to wait for a free database")
    parser.addini("testpool_env", "export DATABASE_URL and PG* (true/false)", type="bool", default=False)


def _settings(config: pytest.Config) -> Settings:
    def pick(name: str) -> Any:
        value = config.getoption(name)
        if value is None or value == "":
            value = config.getini(name)
        return value if value not in ("", None, []) else None

    url, template, migrations = pick("testpool_url"), pick("testpool_template"), pick("testpool_migrations")
    active = any(v is not None for v in (url, template, migrations))
    mig_path = None
    if migrations is not None:
        mig_path = pathlib.Path(migrations)
        if config.getoption("testpool_migrations") is None and config.inipath is not None:
            mig_path = config.inipath.parent / mig_path  # an ini path is relative to its file
        mig_path = mig_path.resolve()
    env = config.getoption("testpool_env")
    if env is None:
        env = config.getini("testpool_env")

    def number(name: str, default: int, low: int, high: int) -> int:
        raw = pick(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError:
            raise pytest.UsageError(f"testpool: {name} must be an integer, not {raw!r}") from None
        if not low <= value <= high:
            raise pytest.UsageError(f"testpool: {name} must be from {low} to {high}, not {value}")
        return value

    return Settings(url=url or os.environ.get("TESTPOOL_URL") or DEFAULT_URL,
                    template=template or ("pytest" if mig_path is not None else ""),
                    migrations=mig_path, ttl_s=number("testpool_ttl", 300, 1, 86400),
                    wait_s=number("testpool_wait", 60, 0, 600), export_env=bool(env),
                    build_dsn=pick("testpool_build_dsn"), active=active)


class _State:
    """Per pytest process: the settings and, once taken, the worker's lease."""

    def __init__(self, config: pytest.Config, settings: Settings):
        self.config = config
        self.settings = settings
        workerinput = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        self.worker = (workerinput or {}).get("workerid") or os.environ.get("PYTEST_XDIST_WORKER") or "main"
        self.template_ready = bool((workerinput or {}).get("testpool_template_ready"))
        self.lease: WorkerLease | None = None
        self.lease_error: BaseException | None = None

    def usage_error(self, fixtures: str) -> pytest.UsageError:
        return pytest.UsageError(
            f"{fixtures} need(s) testpool: give --testpool-template NAME (or --testpool-migrations DIR) and "
            f"--testpool-url (or $TESTPOOL_URL), or the ini keys testpool_template / testpool_url")

    def ensure_template(self) -> None:
        """Checks the daemon is reachable; defines the template from --testpool-migrations."""
        s = self.settings
        client = Client(s.url)
        try:
            try:
                client.healthz(timeout=10)
            except Unreachable as e:
                raise pytest.UsageError(
                    f"testpool: the daemon at {s.url} cannot be reached ({e}). Start it with `testpool serve` "
                    f"(it listens on {DEFAULT_URL} by default), or point --testpool-url / $TESTPOOL_URL at it.")
            except ApiError as e:
                raise pytest.UsageError(f"testpool: the daemon at {s.url} is not healthy: {e}")
            if not s.template:
                raise pytest.UsageError("testpool: give --testpool-template NAME or --testpool-migrations DIR")
            if s.migrations is not None and not self.template_ready:
                definition = _definition_from_dir(s.migrations)
                try:
                    client.put_template(s.template, definition)
                except ApiError as e:
                    raise pytest.UsageError(f"testpool: template {s.template!r} from {s.migrations} could "
                                            f"not be built: {e}")
            elif s.migrations is None:
                try:
                    client.get_template(s.template)
                except ApiError as e:
                    if e.status != 404:
                        raise pytest.UsageError(f"testpool: cannot look template {s.template!r} up: {e}")
                    raise pytest.UsageError(
                        f"testpool: the daemon at {s.url} has no template {s.template!r}: define it with "
                        f"`testpool template create {s.template} --migrations DIR`, or give --testpool-migrations DIR")
        finally:
            client.close()
        self.template_ready = True

    def get_lease(self) -> WorkerLease:
        if self.lease_error is not None:
            raise self.lease_error
        if self.lease is None:
            s = self.settings
            lease = WorkerLease(s.url, s.template, s.ttl_s, s.wait_s, self.worker)
            try:
                lease.acquire()
            except BaseException as e:
                self.lease_error = e
                raise
            self.lease = lease
            atexit.register(lease.release)
            if s.export_env:
                _export(lease)
        return self.lease


def _definition_from_dir(directory: pathlib.Path) -> dict:
    if not directory.is_dir():
        raise pytest.UsageError(f"testpool: --testpool-migrations {directory} is not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix == ".sql" and p.is_file())
    if not files:
        raise pytest.UsageError(f"testpool: no *.sql migrations in {directory}")
    return {"migrations": [{"name": p.name, "sql": p.read_text(encoding="utf-8")} for p in files]}


def _export(lease: WorkerLease) -> None:
    i = lease.info
    os.environ.update({"DATABASE_URL": lease.dsn, "PGHOST": str(i.get("host", "")), "PGPORT": str(i.get("port", "")),
                       "PGUSER": str(i.get("user", "")), "PGPASSWORD": str(i.get("password", "")),
                       "PGDATABASE": str(i.get("database", "")), "TESTPOOL_LEASE_ID": lease.id})


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE_KEY]


# ---- hooks ---------------------------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE_KEY] = _State(config, _settings(config))
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "testpool-xdist")


class _XdistHooks:
    """Registered only where pytest-xdist is installed (its hook specs must exist)."""

    @pytest.hookimpl
    def pytest_configure_node(self, node) -> None:
        state = _state(node.config)
        node.workerinput["testpool_template_ready"] = state.template_ready


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # tryfirst: before xdist's controller starts the workers, so they never race to build.
    state = _state(session.config)
    if not state.settings.active:
        return
    if not state.is_worker:
        state.ensure_template()
    if state.settings.export_env and not _is_xdist_controller(session.config):
        try:
            state.get_lease()
        except TestpoolError as e:
            pytest.exit(f"testpool: --testpool-env needs the lease at session start: {e}", returncode=1)


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("dsession")


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = _state(config).settings
    if not s.active:
        return []
    source = f" from {s.migrations}" if s.migrations else ""
    return [f"testpool: {s.url}, template {s.template!r}{source}, lease ttl {s.ttl_s} s, wait {s.wait_s} s"]


_OWN_FIXTURES = frozenset({"testpool_lease", "testpool_dsn"})


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest):
    """Around every fixture's setup, once the lease exists: a fixture of a wider scope than a
    test's starts from the current base (the innermost live checkpoint, or the template), so what
    it writes and checkpoints holds nothing a previous test left; while it runs, a checkpoint it
    takes is tied to its teardown."""
    state = request.config.stash.get(_STATE_KEY, None)
    lease = state.lease if state is not None else None
    if lease is None or fixturedef.argname in _OWN_FIXTURES:
        yield
        return
    if fixturedef.scope != "function":
        lease.begin_scope(may_write=bool(_OWN_FIXTURES.intersection(fixturedef.argnames)))
    outer = lease.register_teardown
    lease.register_teardown = fixturedef.addfinalizer
    try:
        yield
    finally:
        lease.register_teardown = outer


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is not None and state.lease is not None:
        state.lease.release()


# ---- fixtures ------------------------------------------------------------------------------------

class TestpoolDatabase:
    """The worker's database for one test: `.dsn`, `.lease_id`, `.template`, `.checkpoint` (the
    label of the checkpoint it starts from, None for the template); str() is the DSN."""

    __test__ = False

    def __init__(self, lease: WorkerLease):
        self.dsn = lease.dsn
        self.lease_id = lease.id
        self.template = lease.template
        self.checkpoint = lease.checkpoints[-1].label if lease.checkpoints else None
        self.info = dict(lease.info)

    def __str__(self) -> str:
        return self.dsn

    def __repr__(self) -> str:
        return f"TestpoolDatabase(lease_id={self.lease_id!r}, template={self.template!r})"


@pytest.fixture(scope="session")
def testpool_lease(request: pytest.FixtureRequest) -> WorkerLease:
    """The worker's lease (session): `.id`, `.dsn`, `.checkpoint(name)` (from a wider-scoped
    fixture: the tests in its scope then start from it), `.reset()`, `.claim(...)`, `.build(...)`."""
    state = _state(request.config)
    if not state.settings.active:
        requested = [f for f in request.fixturenames if f.startswith("testpool_")]
        raise state.usage_error(", ".join(requested) or "testpool_lease")
    return state.get_lease()


@pytest.fixture(scope="session")
def testpool_dsn(testpool_lease: WorkerLease) -> str:
    """The worker's DSN (session). Not reset between tests: use testpool_db for that."""
    return testpool_lease.dsn


@pytest.fixture
def testpool_db(testpool_lease: WorkerLease) -> TestpoolDatabase:
    """The worker's database at the template's state, or at the checkpoint of the innermost
    fixture that took one: reset first when a previous test used it."""
    testpool_lease.begin_test()
    return TestpoolDatabase(testpool_lease)


@pytest.fixture
def testpool_conn(testpool_db: TestpoolDatabase):
    """A psycopg 3 connection (autocommit) to testpool_db, closed at teardown."""
    try:
        import psycopg
    except ImportError:
        raise pytest.UsageError("testpool_conn needs psycopg 3 (pip install psycopg, or apt install python3-psycopg)")
    conn = psycopg.connect(testpool_db.dsn, autocommit=True, connect_timeout=30)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def testpool_claim(testpool_lease: WorkerLease):
    """claim(pool, ttl=300, wait=10, **match) -> Claim (.key, .row, .token); all released at teardown."""
    claims: list[Claim] = []

    def claim(pool: str, ttl: int = 300, wait: int = 10, **match: Any) -> Claim:
        c = testpool_lease.claim(pool, ttl=ttl, wait=wait, **match)
        claims.append(c)
        return c

    try:
        yield claim
    finally:
        errors = []
        for c in reversed(claims):
            try:
                testpool_lease.unclaim(c.id)
            except TestpoolError as e:
                errors.append(f"{c.id}: {e}")
        if errors:
            raise TestpoolError("testpool: releasing claims failed (their TTL ends them): " + "; ".join(errors))


class LazyBuild:
    """One build of a recipe in the worker's database, made on first attribute access or create().

    After the build: `.key` (the recipe's row key, as text), `.keys`, `.namespace`, `.seed`,
    `.result` (the daemon's answer), `.row` (the row as a dict, read with psycopg), and any column of
    the row as an attribute (`customer.email`).
    """

    _OWN = frozenset({"_builder", "_recipe", "_fields", "_count", "_seed", "_result", "_row"})

    def __init__(self, builder: "Builder", recipe: str, fields: dict, count: int, seed: int | None):
        object.__setattr__(self, "_builder", builder)
        object.__setattr__(self, "_recipe", recipe)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_count", count)
        object.__setattr__(self, "_seed", seed)
        object.__setattr__(self, "_result", None)
        object.__setattr__(self, "_row", None)

    def create(self) -> "LazyBuild":
        if self._result is None:
            object.__setattr__(self, "_result", self._builder._build(self._recipe, self._fields, self._count, self._seed))
        return self

    @property
    def built(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> dict:
        return self.create()._result

    @property
    def keys(self) -> list[str]:
        return self.result["keys"][self._recipe]

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def namespace(self) -> str:
        return self.result["namespace"]

    @property
    def seed(self) -> int:
        return self.result["seed"]

    @property
    def row(self) -> dict:
        if self._row is None:
            object.__setattr__(self, "_row", self._builder._fetch_row(self._recipe, self.key))
        return self._row

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        row = self.row
        if name in row:
            return row[name]
        raise AttributeError(f"{self._recipe} row has no column {name!r} (columns: {', '.join(row)})")

    def __repr__(self) -> str:
        state = f"key={self._result['keys'][self._recipe][0]!r}" if self._result else "not built"
        return f"LazyBuild({self._recipe!r}, {state})"


class Builder:
    """`testpool_build.<recipe>(**fields)` → LazyBuild; `count=`/`seed=` are build options."""

    def __init__(self, lease: WorkerLease, nodeid: str, dsn: str | None):
        self._lease = lease
        self._nodeid = nodeid
        self.dsn = dsn  # None: the worker's own database
        self.namespace: str | None = None  # set by the first build of the test

    def __getattr__(self, recipe: str):
        if recipe.startswith("_"):
            raise AttributeError(recipe)

        def make(count: int = 1, seed: int | None = None, **fields: Any) -> LazyBuild:
            self._lease.recipe(recipe)  # an unknown recipe fails here, before anything is built
            return LazyBuild(self, recipe, fields, count, seed)

        return make

    def _build(self, recipe: str, fields: dict, count: int, seed: int | None) -> dict:
        if self.namespace is None:
            self.namespace = self._lease.new_namespace(self._nodeid)
        return self._lease.build(recipe, self.namespace, count=count, seed=seed, overrides=fields, dsn=self.dsn)

    def _fetch_row(self, recipe: str, key: str) -> dict:
        try:
            import psycopg
            from psycopg import sql
            from psycopg.rows import dict_row
        except ImportError:
            raise TestpoolError("testpool: reading a built row needs psycopg 3; .key works without it") from None
        r = self._lease.recipe(recipe)
        query = sql.SQL("SELECT * FROM {}.{} WHERE {}::text = %s").format(
            sql.Identifier(r.get("schema") or "public"), sql.Identifier(r["table"]), sql.Identifier(r["key"]))
        with psycopg.connect(self.dsn or self._lease.dsn, autocommit=True, connect_timeout=30, row_factory=dict_row) as conn:
            row = conn.execute(query, (key,)).fetchone()
        if row is None:
            raise TestpoolError(f"testpool: built {recipe} row {key} is not in the database (was it reset?)")
        return row


@pytest.fixture
def testpool_build(request: pytest.FixtureRequest, testpool_lease: WorkerLease):
    """Lazy builders; what a test built is gone after its teardown.

    In the worker's database (the default; the test gets testpool_db's clean state): the daemon
    records lease builds inside the leased database, where DELETE /v1/namespaces does not reach
    them, so the clean-up is a reset of that database at teardown (only when something was built).
    With --testpool-build-dsn: in that shared database, and the test's namespace is dropped at
    teardown (DELETE /v1/namespaces/{ns}); the builds are tied to the worker's lease, so a killed
    worker's rows go when its lease ends.
    """
    dsn = _state(request.config).settings.build_dsn
    if dsn is None:
        request.getfixturevalue("testpool_db")
    builder = Builder(testpool_lease, request.node.nodeid, dsn)
    yield builder
    if builder.namespace is not None:
        if dsn is None:
            testpool_lease.reset()
        else:
            testpool_lease.drop_namespace(builder.namespace)
