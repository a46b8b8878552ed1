"""The plugin in real pytest sessions (subprocesses, -n 4) against a real daemon."""
from __future__ import annotations

import os
import signal
import socket

from conftest import MIGRATIONS, TEMPLATE, _definition, wait_for

WORKERS = 4


def test_each_worker_gets_one_lease_and_its_own_isolated_database(suite, api):
    suite.write("test_iso.py", '''
import os, socket, pytest

@pytest.mark.parametrize("i", range(12))
def test_write(i, testpool_db, testpool_conn, testpool_dsn, record):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    # The database is at the template's state although this worker's previous test wrote to it.
    assert testpool_conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    testpool_conn.execute("INSERT INTO notes (worker, body) VALUES (%s, %s)", (worker, str(i)))
    assert testpool_conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 1
    db = testpool_conn.execute("SELECT current_database()").fetchone()[0]
    assert str(testpool_db) == testpool_db.dsn == testpool_dsn
    assert testpool_db.template == "TEMPLATE_NAME"
    record(f"t{i}", worker=worker, lease=testpool_db.lease_id, db=db)
'''.replace("TEMPLATE_NAME", TEMPLATE))
    run = suite.run("-n", str(WORKERS))
    assert run.returncode == 0, run
    assert f"testpool: {suite.daemon.url}, template '{TEMPLATE}' from {MIGRATIONS}, lease ttl 300 s" in run.stdout, run
    records = run.records()
    assert len(records) == 12
    by_worker: dict[str, set] = {}
    dbs: dict[str, set] = {}
    for r in records:
        by_worker.setdefault(r["worker"], set()).add(r["lease"])
        dbs.setdefault(r["worker"], set()).add(r["db"])
    assert set(by_worker) == {f"gw{i}" for i in range(WORKERS)}, by_worker
    assert all(len(leases) == 1 for leases in by_worker.values()), by_worker
    leases = {next(iter(v)) for v in by_worker.values()}
    assert len(leases) == WORKERS
    assert len({next(iter(v)) for v in dbs.values()}) == WORKERS  # four different databases
    host = socket.gethostname()
    for worker, ids in by_worker.items():
        lease = api.ok("GET", f"/v1/leases/{next(iter(ids))}")
        assert lease["holder"] == f"pytest {worker}@{host}"
        assert lease["state"] == "released"  # at session end


def test_resets_only_after_a_test_that_used_the_database(suite, api):
    suite.write("test_order.py", '''
def test_a_no_db():
    pass

def test_b_writes(testpool_conn):
    testpool_conn.execute("INSERT INTO notes (worker, body) VALUES ('main', 'b')")

def test_c_no_db():
    pass

def test_d_reads(testpool_conn):
    assert testpool_conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0

def test_e_db(testpool_db):
    pass

def test_f_db(testpool_db, testpool_lease, record):
    record("f", resets=testpool_lease.resets)
''')
    before = api.counters()
    run = suite.run("-p", "no:xdist")
    assert run.returncode == 0, run
    after = api.counters()
    # b is the first user (no reset); d, e and f each follow a user. a and c cost nothing.
    assert run.records()[0]["resets"] == 3
    assert after["resets"] - before["resets"] == 3
    # d only read and e did nothing: the daemon's check finds those databases clean (no clone).
    assert after["resets_skipped"] - before["resets_skipped"] == 2


def test_leases_are_released_on_ctrl_c(suite, api):
    suite.write("test_block.py", '''
import os, pathlib, time, pytest

@pytest.mark.parametrize("i", range(2))
def test_block(i, testpool_db, record):
    record(os.environ["PYTEST_XDIST_WORKER"], lease=testpool_db.lease_id)
    never = pathlib.Path(os.environ["TP_RECORDS"]) / "never"
    deadline = time.monotonic() + 120
    while not never.exists() and time.monotonic() < deadline:  # blocked until Ctrl-C
        time.sleep(0.05)
    pytest.fail("not interrupted")
''')
    proc = suite.start("-n", "2")
    try:
        wait_for(lambda: len(list(suite.records_dir.glob("*.json"))) == 2, 120, "both workers inside a test")
        leases = [r["lease"] for r in (__import__("json").loads(p.read_text())
                                       for p in suite.records_dir.glob("*.json"))]
        assert all(api.lease_state(i) == "active" for i in leases)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        run = suite.finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert run.returncode != 0, run
    assert "KeyboardInterrupt" in run.stdout + run.stderr, run
    assert [api.lease_state(i) for i in leases] == ["released", "released"], run


def test_lease_is_released_when_x_stops_the_run(suite, api):
    suite.write("test_x.py", '''
def test_1_fails(testpool_db, record):
    record("x", lease=testpool_db.lease_id)
    assert False, "stop here"

def test_2_never_runs(testpool_db):
    pass
''')
    run = suite.run("-x", "-p", "no:xdist")
    assert run.returncode == 1, run
    assert "1 failed" in run.stdout, run
    assert api.lease_state(run.records()[0]["lease"]) == "released"


def test_killed_worker_lease_is_renewed_while_alive_and_ends_by_ttl(suite, api):
    suite.write("test_kill.py", '''
import json, os, signal, time, urllib.request

def lease(id):
    with urllib.request.urlopen(os.environ["TP_URL"] + "/v1/leases/" + id, timeout=30) as r:
        return json.loads(r.read())

def test_killed(testpool_db, record):
    first = lease(testpool_db.lease_id)["expires_at"]
    deadline = time.monotonic() + 30
    while lease(testpool_db.lease_id)["expires_at"] == first:  # the renewer at ttl/3
        assert time.monotonic() < deadline, "never renewed"
        time.sleep(0.05)
    record("killed", lease=testpool_db.lease_id)
    os.kill(os.getpid(), signal.SIGKILL)
''')
    run = suite.run("-n", "1", "--testpool-ttl", "3")
    assert run.returncode != 0, run
    lease_id = run.records()[0]["lease"]
    # Nothing released it: the reaper ends it once the TTL runs out with no renewal.
    wait_for(lambda: api.lease_state(lease_id) == "expired", 60, "the killed worker's lease to expire")


def test_claims_are_released_whatever_the_test_does(suite, api, shared_lease):
    suite.write("test_claims.py", '''
import pytest
from pytest_testpool import PoolExhausted

@pytest.mark.parametrize("outcome", ["pass", "fail", "error", "skip"])
def test_claim(outcome, testpool_claim, record):
    c = testpool_claim("premium_users", ttl=60)
    assert c.row["tier"] == "premium" and c.row["id"] == int(c.key) and c.token >= 1
    record(outcome, key=c.key, id=c.id)
    if outcome == "fail":
        assert False, "failing with a claim held"
    if outcome == "error":
        raise RuntimeError("erroring with a claim held")
    if outcome == "skip":
        pytest.skip("skipping with a claim held")

def test_exhausted(testpool_claim):
    with pytest.raises(PoolExhausted) as e:
        testpool_claim("premium_users", wait=1, id=1)  # id 1 is not premium: nothing ever matches
    assert "after 1." in str(e.value) and "rows 10" in str(e.value), str(e.value)
''')
    run = suite.run("-n", str(WORKERS))
    assert run.returncode == 1, run
    assert "2 failed, 2 passed, 1 skipped" in run.stdout, run
    records = run.records()
    assert sorted(r["id"] for r in records) == sorted({r["id"] for r in records}) and len(records) == 4
    pool = api.ok("GET", "/v1/record-pools/premium_users")
    assert pool["claimed"] == 0 and pool["free"] == 10, pool


def test_builders_create_on_first_touch_and_leave_nothing_behind(suite):
    suite.write("test_build.py", '''
import psycopg

def count(dsn, table):
    with psycopg.connect(dsn) as c:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

def test_1_untouched(testpool_build, testpool_db):
    order = testpool_build.order(status="paid")
    assert not order.built
    assert count(testpool_db.dsn, "orders") == 0 and count(testpool_db.dsn, "customers") == 0

def test_2_touched(testpool_build, testpool_db, record):
    order = testpool_build.order(status="paid")
    assert order.status == "paid"            # the first attribute builds it, its customer first
    customer = testpool_build.customer(country="NL").create()
    assert customer.country == "NL" and "@" in customer.email
    assert count(testpool_db.dsn, "orders") == 1 and count(testpool_db.dsn, "customers") == 2
    assert order.customer_id != int(customer.key)
    assert order.namespace == customer.namespace and order.namespace.startswith("pt-main-")
    record("ns", ns=order.namespace)

def test_3_after(testpool_dsn):
    # testpool_dsn does not reset: what test 2 built must already be gone.
    assert count(testpool_dsn, "orders") == 0 and count(testpool_dsn, "customers") == 0
''')
    run = suite.run("-p", "no:xdist")
    assert run.returncode == 0, run
    assert run.records()[0]["ns"]


def test_pool_exhausted_names_the_wait_and_the_pool(suite, api):
    api.ok("PUT", "/v1/templates/tiny", _definition({"min_ready": 1, "max": 1}))
    held = api.ok("POST", "/v1/templates/tiny/leases", {"ttl_s": 120, "holder": "harness"})
    try:
        suite.write("test_tiny.py", "def test_db(testpool_db):\n    pass\n")
        # No --testpool-migrations: the template is used as defined (with its pool of one).
        run = suite.run("-p", "no:xdist", "--testpool-url", api.url, "--testpool-template", "tiny",
                        "--testpool-wait", "1", plugin=False)
    finally:
        api.call("DELETE", f"/v1/leases/{held['id']}")
    assert run.returncode == 1, run
    assert "no database of template 'tiny' came free after 1." in run.stdout, run
    assert "max 1, leased 1" in run.stdout, run


def test_unreachable_daemon_is_a_usage_error_at_session_start(suite):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    suite.write("test_many.py", "import pytest\n@pytest.mark.parametrize('i', range(50))\n"
                                "def test_db(i, testpool_db):\n    pass\n")
    run = suite.run("-n", "2", "--testpool-url", url, plugin=False)
    assert run.returncode == 4, run  # pytest's usage error: no test ran, no worker started
    assert f"the daemon at {url} cannot be reached" in run.stderr, run
    assert "testpool serve" in run.stderr, run
    assert "passed" not in run.stdout and "error" not in run.stdout.lower(), run


def test_without_options_the_plugin_stays_out_of_the_way(suite):
    suite.write("test_plain.py", "def test_plain():\n    pass\n\ndef test_db(testpool_db):\n    pass\n")
    run = suite.run("-p", "no:xdist", plugin=False)
    assert run.returncode == 1, run
    assert "1 passed, 1 error" in run.stdout, run
    assert "testpool_lease, testpool_db need(s) testpool: give --testpool-template" in run.stdout, run


def test_env_exports_the_lease_at_session_start(suite):
    suite.write("test_env.py", '''
import os

def test_env(testpool_lease):
    assert os.environ["DATABASE_URL"] == testpool_lease.dsn
    assert os.environ["TESTPOOL_LEASE_ID"] == testpool_lease.id
    assert os.environ["PGDATABASE"] == testpool_lease.info["database"]
    assert os.environ["PGPASSWORD"] == testpool_lease.info["password"]
''')
    run = suite.run("-n", "2", "--testpool-env")
    assert run.returncode == 0, run


def test_rollback_mode_template_resets_through_the_proxy(suite, api):
    api.ok("PUT", "/v1/templates/plugintest_rb", {**_definition(), "recycle": "rollback"})
    suite.write("test_rb.py", '''
import pytest

@pytest.mark.parametrize("i", range(6))
def test_write(i, testpool_conn, testpool_lease, record):
    assert testpool_conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    testpool_conn.execute("INSERT INTO notes (worker, body) VALUES ('rb', %s)", (str(i),))
    record(f"rb{i}", lease=testpool_lease.id, resets=testpool_lease.resets)
''')
    run = suite.run("-n", "2", "--testpool-url", api.url, "--testpool-template", "plugintest_rb", plugin=False)
    assert run.returncode == 0, run
    records = run.records()
    assert len(records) == 6 and len({r["lease"] for r in records}) == 2
    lease = api.ok("GET", f"/v1/leases/{records[0]['lease']}")
    assert lease["template"] == "plugintest_rb" and lease["state"] == "released"
    assert sum(1 for r in records if r["resets"] > 0) == 4  # all but each worker's first test


def test_ini_keys_configure_the_plugin(suite, daemon):
    (suite.dir / "pytest.ini").write_text(
        "[pytest]\n"
        f"testpool_url = {daemon.url}\n"
        f"testpool_template = {TEMPLATE}\n"
        f"testpool_migrations = {os.path.relpath(MIGRATIONS, suite.dir)}\n"
        "testpool_ttl = 120\n"
        "testpool_env = true\n")
    suite.write("test_ini.py", '''
import json, os, urllib.request

def test_ini(testpool_db):
    assert os.environ["DATABASE_URL"] == testpool_db.dsn
    with urllib.request.urlopen(os.environ["TP_URL"] + "/v1/leases/" + testpool_db.lease_id, timeout=30) as r:
        lease = json.loads(r.read())
    assert lease["template"] == "TEMPLATE_NAME"
'''.replace("TEMPLATE_NAME", TEMPLATE))
    run = suite.run("-p", "no:xdist", plugin=False)
    assert run.returncode == 0, run


def test_a_migration_that_fails_is_a_usage_error_naming_it(suite, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0001_init.sql").write_text("CREATE TABLE ok (id int);\n")
    (broken / "0002_bad.sql").write_text(f"-- {tmp_path}\nCREATE TABLE ok (id int);\n")  # already exists
    suite.write("test_any.py", "def test_db(testpool_db):\n    pass\n")
    run = suite.run("-n", "2", "--testpool-url", suite.daemon.url, "--testpool-template", "broken",
                    "--testpool-migrations", str(broken), plugin=False)
    assert run.returncode == 4, run
    assert "template 'broken' from" in run.stderr and "0002_bad.sql" in run.stderr, run


def test_the_controller_defines_the_template_once_and_each_worker_leases_once(suite, recording_proxy):
    suite.write("test_many.py", "import pytest\n@pytest.mark.parametrize('i', range(12))\n"
                                "def test_db(i, testpool_db):\n    pass\n")
    run = suite.run("-n", str(WORKERS), "--testpool-url", recording_proxy.url, "--testpool-template", TEMPLATE,
                    "--testpool-migrations", str(MIGRATIONS), plugin=False)
    assert run.returncode == 0, run
    p = recording_proxy
    assert p.count("PUT", f"/v1/templates/{TEMPLATE}") == 1, p.requests
    assert p.count("GET", "/healthz") == 1, p.requests
    assert p.count("POST", f"/v1/templates/{TEMPLATE}/leases") == WORKERS, p.requests
    assert p.count("DELETE", "/v1/leases/") == WORKERS, p.requests
    resets = [path for method, path in p.requests if method == "POST" and path.endswith("/reset")]
    assert len(resets) == 12 - WORKERS, p.requests  # all but each worker's first test


def test_a_lease_that_ends_under_the_session_fails_the_next_test_clearly(suite):
    suite.write("test_lost.py", '''
import os, urllib.request

def test_1_lease_ends_behind_the_plugins_back(testpool_db):
    req = urllib.request.Request(os.environ["TP_URL"] + "/v1/leases/" + testpool_db.lease_id, method="DELETE")
    urllib.request.urlopen(req, timeout=30).close()

def test_2_next_user(testpool_db):
    pass
''')
    run = suite.run("-p", "no:xdist")
    assert run.returncode == 1, run
    assert "1 passed, 1 error" in run.stdout, run
    assert "LeaseLost: testpool: lease" in run.stdout and "ended before the session did" in run.stdout, run


def test_builds_in_a_shared_database_are_namespaced_per_test_and_dropped_at_teardown(suite, api, shared_dsn):
    import psycopg

    suite.write("test_shared.py", '''
import pytest

@pytest.mark.parametrize("outcome", ["pass", "fail", "pass2", "fail2"])
def test_build(outcome, testpool_build, record):
    order = testpool_build.order(status="paid")
    untouched = testpool_build.customer()
    assert order.status == "paid" and not untouched.built
    customer = testpool_build.customer(country="DE")
    assert customer.country == "DE"
    record(outcome, ns=order.namespace, customer=customer.key)
    if outcome.startswith("fail"):
        assert False, "failing with rows built"
''')
    with psycopg.connect(shared_dsn) as conn:
        before = conn.execute("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders)").fetchone()
    run = suite.run("-n", "2", "--testpool-build-dsn", shared_dsn)
    assert run.returncode == 1 and "2 failed, 2 passed" in run.stdout, run
    records = run.records()
    assert len({r["ns"] for r in records}) == 4  # one namespace per test
    with psycopg.connect(shared_dsn) as conn:
        after = conn.execute("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders)").fetchone()
        created = conn.execute("SELECT count(*) FROM testpool.created").fetchone()[0]
    assert after == before == (0, 0) and created == 0
    for r in records:  # the daemon has forgotten every namespace: nothing left to drop
        assert api.call("DELETE", f"/v1/namespaces/{r['ns']}")[0] == 404


def test_an_unknown_template_is_a_usage_error_at_session_start(suite):
    suite.write("test_any.py", "def test_db(testpool_db):\n    pass\n")
    run = suite.run("-n", "2", "--testpool-url", suite.daemon.url, "--testpool-template", "no_such_template",
                    plugin=False)
    assert run.returncode == 4, run
    assert "has no template 'no_such_template'" in run.stderr and "testpool template create" in run.stderr, run



# Checkpoints under nested scopes: a session fixture saves golden data, a module fixture adds to
# it, a class fixture adds more; every test starts from the innermost live one.
CHECKPOINT_CONFTEST = '''

import psycopg

def notes(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        return sorted(r[0] for r in c.execute("SELECT body FROM notes").fetchall())

def add(dsn, body):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO notes (worker, body) VALUES ('w', %s)", (body,))

@pytest.fixture(scope="session")
def golden(testpool_lease):
    add(testpool_lease.dsn, "golden")
    testpool_lease.checkpoint("golden")
'''

CHECKPOINT_MODULE_A = '''
import pytest
from conftest import add, notes

@pytest.fixture(scope="module")
def module_data(golden, testpool_lease):
    add(testpool_lease.dsn, "module")
    testpool_lease.checkpoint("module data")

def test_1_module_base(module_data, testpool_db):
    assert notes(testpool_db.dsn) == ["golden", "module"]
    assert testpool_db.checkpoint == "module data"
    add(testpool_db.dsn, "t1")

def test_2_back_at_the_module_base(module_data, testpool_db):
    assert notes(testpool_db.dsn) == ["golden", "module"]
    add(testpool_db.dsn, "t2")

class TestClass:
    @pytest.fixture(scope="class")
    def class_data(self, module_data, testpool_lease):
        add(testpool_lease.dsn, "class")
        testpool_lease.checkpoint("class data")

    def test_3_class_base(self, class_data, testpool_db):
        assert notes(testpool_db.dsn) == ["class", "golden", "module"]
        add(testpool_db.dsn, "t3")

    def test_4_class_base_again(self, class_data, testpool_db):
        assert notes(testpool_db.dsn) == ["class", "golden", "module"]
        assert testpool_db.checkpoint == "class data"

def test_5_after_the_class(module_data, testpool_db, testpool_lease, record):
    assert notes(testpool_db.dsn) == ["golden", "module"]
    record("a5", resets=testpool_lease.resets)

def test_6_checkpoint_outside_a_fixture_is_an_error(testpool_lease):
    with pytest.raises(Exception, match="must be called from a fixture"):
        testpool_lease.checkpoint("nope")
'''

CHECKPOINT_MODULE_B = '''
from conftest import notes

def test_7_another_module_starts_from_the_session_base(golden, testpool_db, testpool_lease, record):
    assert notes(testpool_db.dsn) == ["golden"]
    record("b7", checkpoints=[c.label for c in testpool_lease.checkpoints])
'''


def _checkpoint_suite(suite):
    with open(suite.dir / "conftest.py", "a") as f:
        f.write(CHECKPOINT_CONFTEST)
    suite.write("test_ck_a.py", CHECKPOINT_MODULE_A)
    suite.write("test_ck_b.py", CHECKPOINT_MODULE_B)


def test_checkpoints_under_session_module_and_class_fixtures(suite, api):
    _checkpoint_suite(suite)
    before = api.counters()
    run = suite.run("-p", "no:xdist")
    assert run.returncode == 0, run
    assert "7 passed" in run.stdout, run
    a5, b7 = run.records()
    # Resets: t2 (after t1 wrote), the class fixture (after t2 wrote), t4, t5 (the class's
    # checkpoint ended); t1 and t3 start right where the fixture's checkpoint left the database.
    assert a5["resets"] == 4, a5
    assert b7["checkpoints"] == ["golden"], b7
    after = api.counters()
    assert after["resets"] - before["resets"] == 5  # and t7's, back to the session's checkpoint


def test_checkpoints_in_rollback_mode_with_workers(suite, api):
    api.ok("PUT", "/v1/templates/plugintest_rb", {**_definition(), "recycle": "rollback"})
    _checkpoint_suite(suite)
    run = suite.run("-n", "2", "--dist", "loadfile", "--testpool-url", api.url, "--testpool-template",
                    "plugintest_rb", plugin=False)
    assert run.returncode == 0, run
    assert "7 passed" in run.stdout, run


def test_the_shop_example_collides_naively_and_passes_with_testpool(daemon):
    """examples/shop-pytest/run.sh with 4 workers: the naive run (one shared database) has
    failures, the run with the plugin none."""
    import pathlib
    import subprocess
    import sys

    example = pathlib.Path(os.environ["TESTPOOL_SOURCE_DIR"]) / "examples" / "shop-pytest"
    env = {**os.environ, "TESTPOOL_URL": daemon.url, "PYTHON": sys.executable, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(["bash", str(example / "run.sh"), "4"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)
    rows = {f[0]: f for f in (line.split() for line in proc.stdout.splitlines())
            if len(f) == 5 and f[0] in ("naive", "testpool")}
    assert int(rows["naive"][1]) > 0, proc.stdout  # the collisions testpool exists to remove
    assert int(rows["testpool"][1]) == 0 and int(rows["testpool"][2]) == 80, proc.stdout
