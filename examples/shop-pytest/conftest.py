"""Fixtures of the purchase suite.

With testpool (the normal way): a session fixture loads the golden data once per worker and saves
it as a checkpoint; every test's `db` then starts from it, whatever the tests before it bought.

Naive (SHOP_NAIVE_DSN set, for the comparison in run.sh): every worker shares one database that
holds the golden data, as a team without testpool would run it.
"""
from __future__ import annotations

import os
import pathlib

import psycopg
import pytest

GOLDEN = pathlib.Path(__file__).with_name("golden.sql")
NAIVE_DSN = os.environ.get("SHOP_NAIVE_DSN")

if NAIVE_DSN:
    @pytest.fixture
    def db():
        with psycopg.connect(NAIVE_DSN, autocommit=True) as conn:
            yield conn
else:
    @pytest.fixture(scope="session")
    def golden(testpool_lease):
        with psycopg.connect(testpool_lease.dsn, autocommit=True) as conn:
            conn.execute(GOLDEN.read_text())
        testpool_lease.checkpoint("golden")

    @pytest.fixture
    def db(golden, testpool_conn):
        return testpool_conn
