"""pytest-testpool: each pytest(-xdist) worker gets its own pre-migrated PostgreSQL database from a
testpool daemon, plus record-pool claims, lazy builders and `eventually`.

The fixtures live in `pytest_testpool.plugin` (loaded through the `pytest11` entry point).
"""
from .client import ApiError, TestpoolError, Unreachable
from .eventually import EventuallyTimeout, eventually
from .lease import Claim, LeaseLost, PoolExhausted, WorkerLease

__all__ = ["ApiError", "Claim", "EventuallyTimeout", "LeaseLost", "PoolExhausted", "TestpoolError",
           "Unreachable", "WorkerLease", "eventually"]
__version__ = "0.1.0"
