"""The one HTTP client Earshot fetches with: timeouts, bounded retries and redirects, a size cap,
a descriptive User-Agent, http and https only."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import httpx

USER_AGENT = "Earshot/0.1 (importer of operator mail and developer tickets)"
MAX_BYTES = 20 * 1024 * 1024


class FetchError(Exception):
    """A fetch that failed; the message says why, for the problem report."""


def get(url: str, *, timeout: float = 20.0, retries: int = 2, max_bytes: int = MAX_BYTES,
        headers: dict[str, str] | None = None) -> bytes:
    """The body of a GET, or FetchError. Retries connection errors and 5xx with back-off."""
    if urlparse(url).scheme not in ("http", "https"):
        raise FetchError(f"{url}: only http and https are fetched")
    last = ""
    for attempt in range(retries + 1):
        try:
            with httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=5,
                              headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
                              ) as client, client.stream("GET", url) as response:
                if response.status_code >= 500:
                    last = f"{url}: HTTP {response.status_code}"
                elif response.status_code >= 400:
                    raise FetchError(f"{url}: HTTP {response.status_code}")
                else:
                    chunks, size = [], 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FetchError(f"{url}: larger than {max_bytes} bytes")
                        chunks.append(chunk)
                    return b"".join(chunks)
        except httpx.HTTPError as exc:
            last = f"{url}: {exc.__class__.__name__}: {exc}"
        if attempt < retries:
            time.sleep(0.5 * (2 ** attempt))
    raise FetchError(last)
