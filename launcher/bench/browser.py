"""A logged-in user's browser, as far as the harness needs one: a keep-alive connection to the
bench server, a cookie jar, GET and form POST (standard library only)."""

import http.client
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit


@dataclass(frozen=True)
class Answer:
    status: int
    location: str
    body: str
    elapsed_ms: float


# gunicorn closes a keep-alive connection idle for --keep-alive seconds (10 here): reconnect
# before that rather than find out with a request in flight.
IDLE_RECONNECT_SECONDS = 5.0


class Browser:
    def __init__(self, base: str, *, cookies: dict[str, str] | None = None):
        self.base = base
        self.target = urlsplit(base)
        self.cookies = dict(cookies or {})
        self._connection: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> Answer:
        return self._send("GET", path, headers=headers)

    def post(self, path: str, form: dict[str, str], *, headers=None) -> Answer:
        body = urlencode(form)
        extra = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self._send("POST", path, body=body, headers=extra)

    def _send(self, method, path, *, body=None, headers=None) -> Answer:
        if time.monotonic() - self._last_used > IDLE_RECONNECT_SECONDS:
            self.close()
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                self.target.hostname, self.target.port, timeout=60
            )
        all_headers = {"Cookie": self.cookie_header(), **(headers or {})}
        started = time.perf_counter()
        try:
            self._connection.request(method, path, body=body, headers=all_headers)
            response = self._connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._last_used = time.monotonic()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return Answer(
            status=response.status,
            location=response.getheader("Location", ""),
            body=content.decode("utf-8", "replace"),
            elapsed_ms=elapsed_ms,
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
