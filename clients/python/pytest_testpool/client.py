"""A small client of testpool's REST API over one kept-alive HTTP connection (stdlib only).

A `Client` is not thread-safe: each thread that talks to the daemon (the test thread, the lease
renewer) uses its own. Every call returns the decoded JSON answer (None for 204) or raises:
- `Unreachable` when no connection to the daemon can be made or it hangs up mid-answer;
- `ApiError` for an HTTP error answer, with the daemon's `code` and `message`
  (`{"error":{"code","message"}}`), the HTTP status and `Retry-After` when sent.
Every call is bounded by a socket timeout (the request's own wait plus a margin).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse

DEFAULT_URL = "http://127.0.0.1:7432"


class TestpoolError(Exception):
    """Base of the plugin's errors."""

    __test__ = False  # not a test class, whatever pytest's collection says


class Unreachable(TestpoolError):
    """The daemon could not be reached (refused, unknown host, timed out, hung up)."""


class ApiError(TestpoolError):
    """The daemon answered with an error: `status`, `code`, `message`, `retry_after` (s or None)."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str,
                 retry_after: float | None = None):
        super().__init__(f"{method} {path}: {code}: {message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def default_token() -> str:
    """TESTPOOL_TOKEN, else the first token line of the file TESTPOOL_TOKEN_FILE, else ""."""
    token = os.environ.get("TESTPOOL_TOKEN", "")
    if token:
        return token
    path = os.environ.get("TESTPOOL_TOKEN_FILE", "")
    if path:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    return line
    return ""


class Client:
    """One daemon at `url` (http://host:port), one kept-alive connection, reopened when needed."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "") or not parsed.hostname:
            raise TestpoolError(f"testpool URL {url!r} is not http://host:port")
        self.url = url
        self._host = parsed.hostname
        self._port = parsed.port or 80
        self._token = default_token() if token is None else token
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: dict | None = None, *,
                timeout: float | None = None, ok_statuses: tuple[int, ...] = ()) -> dict | None:
        """Sends one request; returns the JSON answer (None when empty) or raises (see above).

        A request on a reused connection that the daemon closed while idle is sent again once
        on a new connection (the daemon never saw it). `ok_statuses` are error statuses that are
        returned as their decoded body instead of raised (e.g. 404 for an optional lookup).
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout or self._timeout)
            conn = self._conn
            conn.timeout = timeout or self._timeout
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if reused and attempt == 0:
                    continue  # an idle keep-alive connection the daemon had closed
                raise Unreachable(f"the testpool daemon at {self.url} hung up ({e})") from e
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise Unreachable(f"cannot reach the testpool daemon at {self.url}: {e}") from e
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            break
        decoded = None
        if raw:
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = {"raw": raw.decode(errors="replace")}
        if resp.status < 400 or resp.status in ok_statuses:
            return decoded
        err = decoded.get("error", {}) if isinstance(decoded, dict) else {}
        retry_after = resp.getheader("Retry-After")
        raise ApiError(method, path, resp.status, err.get("code", "error"),
                       err.get("message", raw.decode(errors="replace")[:300]),
                       float(retry_after) if retry_after else None)

    # ---- the routes the plugin uses -----------------------------------------------------------

    def healthz(self, timeout: float = 5.0) -> dict:
        return self.request("GET", "/healthz", timeout=timeout)

    def status(self) -> dict:
        return self.request("GET", "/v1/status")

    def put_template(self, name: str, definition: dict, timeout: float = 600.0) -> dict:
        return self.request("PUT", f"/v1/templates/{_q(name)}", definition, timeout=timeout)

    def get_template(self, name: str) -> dict:
        return self.request("GET", f"/v1/templates/{_q(name)}")

    def lease(self, template: str, ttl_s: int, wait_s: int, holder: str) -> dict:
        return self.request("POST", f"/v1/templates/{_q(template)}/leases",
                            {"ttl_s": ttl_s, "wait_s": wait_s, "holder": holder[:200]}, timeout=wait_s + 30)

    def get_lease(self, lease_id: str) -> dict:
        return self.request("GET", f"/v1/leases/{_q(lease_id)}")

    def renew(self, lease_id: str, ttl_s: int) -> dict:
        return self.request("POST", f"/v1/leases/{_q(lease_id)}/renew", {"ttl_s": ttl_s})

    def reset(self, lease_id: str, to: str | None = None) -> dict:
        """Back to the template's state, or to checkpoint `to` (the checkpoints after it are dropped)."""
        body = {"to": to} if to else None
        return self.request("POST", f"/v1/leases/{_q(lease_id)}/reset", body, timeout=120)

    def checkpoint(self, lease_id: str, name: str) -> dict:
        return self.request("POST", f"/v1/leases/{_q(lease_id)}/checkpoints", {"name": name}, timeout=120)

    def release(self, lease_id: str) -> None:
        self.request("DELETE", f"/v1/leases/{_q(lease_id)}")

    def claim(self, pool: str, body: dict, wait_s: int) -> dict:
        return self.request("POST", f"/v1/record-pools/{_q(pool)}/claims", body, timeout=wait_s + 30)

    def get_record_pool(self, pool: str) -> dict:
        return self.request("GET", f"/v1/record-pools/{_q(pool)}")

    def unclaim(self, claim_id: str) -> None:
        self.request("DELETE", f"/v1/claims/{_q(claim_id)}")

    def recipes(self) -> dict:
        return self.request("GET", "/v1/recipes")

    def build_in_lease(self, lease_id: str, body: dict) -> dict:
        return self.request("POST", f"/v1/leases/{_q(lease_id)}/build", body, timeout=300)

    def build_in_dsn(self, body: dict) -> dict:
        return self.request("POST", "/v1/builds", body, timeout=300)

    def drop_namespace(self, namespace: str) -> dict | None:
        """Removes the namespace's rows; None when the daemon knows no build under it (404)."""
        try:
            return self.request("DELETE", f"/v1/namespaces/{_q(namespace)}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def host_name() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return "unknown-host"
