"""`eventually`: wait for a condition of an eventually consistent system, bounded.

For what is updated after the database commits (a cache, a search index): poll `check` with
exponential backoff and full jitter (each pause uniform in [0, min(max_interval, first * 2^n)])
until it holds or `timeout` seconds have passed, then fail naming the attempts, the time waited
and the last value or exception.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

_MISSING = object()


class EventuallyTimeout(AssertionError):
    """`check` did not hold within the timeout; `attempts`, `waited_s`, `last_value`, `last_error`."""

    def __init__(self, message: str, attempts: int, waited_s: float, last_value: Any, last_error: BaseException | None):
        super().__init__(message)
        self.attempts = attempts
        self.waited_s = waited_s
        self.last_value = last_value
        self.last_error = last_error


def eventually(check: Callable[[], Any], timeout: float = 10.0, first: float = 0.01,
               max_interval: float = 1.0, *, description: str | None = None,
               _clock: Callable[[], float] = time.monotonic, _sleep: Callable[[float], None] = time.sleep,
               _random: Callable[[], float] = random.random) -> Any:
    """Calls `check()` until it returns a truthy value (returned) without raising AssertionError.

    `check` holds when it returns truthy; it does not hold when it returns falsy or raises
    AssertionError. Any other exception propagates at once (a bug, not a not-yet). The first
    attempt is immediate; the n-th pause is random in [0, min(max_interval, first * 2**n)], and
    never runs past the deadline: one last attempt is made at the deadline. Raises
    EventuallyTimeout (an AssertionError) after `timeout` seconds.
    """
    if timeout < 0 or first <= 0 or max_interval <= 0:
        raise ValueError("eventually: timeout must be >= 0, first and max_interval > 0")
    start = _clock()
    deadline = start + timeout
    attempts = 0
    last_value: Any = _MISSING
    last_error: BaseException | None = None
    while True:
        attempts += 1
        try:
            value = check()
        except AssertionError as e:
            last_error, last_value = e, _MISSING
        else:
            if value:
                return value
            last_error, last_value = None, value
        now = _clock()
        if now >= deadline:
            break
        cap = min(max_interval, first * (2 ** min(attempts - 1, 60)))
        _sleep(min(_random() * cap, deadline - now))
    waited = _clock() - start
    what = description or getattr(check, "__name__", repr(check))
    if last_error is not None:
        last = f"last exception: {type(last_error).__name__}: {last_error}"
    else:
        last = f"last value: {last_value!r}"
    raise EventuallyTimeout(
        f"eventually: {what} did not hold after {attempts} attempts in {waited:.2f} s "
        f"(timeout {timeout:g} s); {last}", attempts, waited, None if last_value is _MISSING else last_value,
        last_error)
