"""The one HTTP client Earshot fetches with: timeouts, bounded retries and redirects, a size cap,
a descriptive User-Agent, http and https only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

USER_AGENT = "Earshot/0.1 (importer of operator mail and developer tickets)"
MAX_BYTES = 20 * 1024 * 1024


class FetchError(Exception):
    """A fetch that failed; the message says why, for the problem report."""


def get(url: str, *, timeout: float = 20.0, retries: int = 2, max_bytes: int = MAX_BYTES,
        headers: dict[str, str] | None = None) -> bytes:
    """The body of a GET, or FetchError. Retries connection errors and 5xx with back-off."""
    fetcher = Fetcher(host_interval=0.0, timeout=timeout, max_bytes=max_bytes, retries=retries)
    return fetcher.get(url, headers={"Accept": "application/json", **(headers or {})}).body


@dataclass
class Fetched:
    url: str
    status: int  # 200, or 304 when unchanged
    body: bytes = b""
    etag: str = ""
    last_modified: str = ""

    @property
    def unchanged(self) -> bool:
        return self.status == 304


class Fetcher:
    """Polite fetching for followed sources: conditional GET (ETag, Last-Modified), at most one
    request per host every `host_interval` seconds, an allow-list of hosts when the deployment
    sets one, and get()'s limits (http/https only, timeouts, bounded redirects and size)."""

    def __init__(self, *, allow_hosts: set[str] | None = None, host_interval: float = 1.0, timeout: float = 20.0,
                 max_bytes: int = MAX_BYTES, retries: int = 2):
        self.allow_hosts = {h.lower() for h in allow_hosts} if allow_hosts else None
        self.host_interval = host_interval
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.retries = retries
        self._last: dict[str, float] = {}
        self.requests: list[tuple[str, int]] = []  # (url, status) of every answer, for the poll report

    def _check(self, url: str) -> str:
        parts = urlparse(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"{url}: only http and https URLs are fetched")
        host = parts.hostname.lower()
        if self.allow_hosts is not None and host not in self.allow_hosts:
            raise FetchError(f"{url}: {host} is not in EARSHOT_FETCH_ALLOW_HOSTS")
        return host

    def _wait(self, host: str) -> None:
        last = self._last.get(host)
        if last is not None:
            delay = self.host_interval - (time.monotonic() - last)
            if delay > 0:
                time.sleep(delay)
        self._last[host] = time.monotonic()

    def get(self, url: str, *, etag: str = "", last_modified: str = "",
            headers: dict[str, str] | None = None) -> Fetched:
        host = self._check(url)
        conditional = {**(headers or {}), **({"If-None-Match": etag} if etag else {}),
                       **({"If-Modified-Since": last_modified} if last_modified else {})}
        last = ""
        for attempt in range(self.retries + 1):
            self._wait(host)
            try:
                with httpx.Client(timeout=self.timeout, follow_redirects=True, max_redirects=5,
                                  headers={"User-Agent": USER_AGENT, **conditional}) as client, \
                        client.stream("GET", url) as response:
                    self._check(str(response.url))  # a redirect may not leave the allowed hosts
                    self.requests.append((url, response.status_code))
                    if response.status_code == 304:
                        return Fetched(url, 304, etag=etag, last_modified=last_modified)
                    if response.status_code >= 500:
                        last = f"{url}: HTTP {response.status_code}"
                    elif response.status_code >= 400:
                        raise FetchError(f"{url}: HTTP {response.status_code}")
                    else:
                        chunks, size = [], 0
                        for chunk in response.iter_bytes():
                            size += len(chunk)
                            if size > self.max_bytes:
                                raise FetchError(f"{url}: larger than {self.max_bytes} bytes")
                            chunks.append(chunk)
                        return Fetched(url, response.status_code, b"".join(chunks),
                                       response.headers.get("ETag", ""), response.headers.get("Last-Modified", ""))
            except httpx.HTTPError as exc:
                last = f"{url}: {exc.__class__.__name__}: {exc}"
            if attempt < self.retries:
                time.sleep(0.5 * (2 ** attempt))
        raise FetchError(last)
