"""The cause of a failed request in a few words, for a row of the downloader's table.

requests wraps the cause of a network error in urllib3's ``HTTPConnectionPool(host=..., port=...): Max
retries exceeded with url: ... (Caused by NewConnectionError(...))``, some 250 characters that every
failed speaker's row repeated. The cause is found by walking the chain of wrapped exceptions.
"""
from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
import urllib3


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception it wraps: causes, contexts, urllib3's ``reason`` and exception arguments."""
    seen: set[int] = set()
    pending = [err]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending.extend(e for e in linked if isinstance(e, BaseException))


def _where(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.hostname}:{port}" if port else str(parts.hostname)


def cause(err: BaseException, url: str) -> str:
    """A few words for why a request of ``url`` failed: ``host not found (HOST)``, ``connection refused by
    HOST:PORT``, ``timed out``, ...; else the innermost error's first line, at most 100 characters."""
    chain = list(_chain(err))
    where = _where(url)

    def found(*kinds: type) -> bool:
        # urllib3's NewConnectionError subclasses its ConnectTimeoutError: a failed connection is no timeout
        return any(isinstance(e, kinds) and not (isinstance(e, urllib3.exceptions.NewConnectionError)
                                                 and urllib3.exceptions.TimeoutError in kinds) for e in chain)

    errnos = {getattr(e, "errno", None) for e in chain}
    if found(socket.gaierror, urllib3.exceptions.NameResolutionError):
        return f"host not found ({urlsplit(url).hostname})"
    if found(ConnectionRefusedError):
        return f"connection refused by {where}"
    if found(TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout):
        return "timed out"
    if errnos & {errno.ENETUNREACH, errno.EHOSTUNREACH}:
        return f"no route to {where}"
    if found(ConnectionResetError):
        return f"connection reset by {where}"
    if found(ssl.SSLError, requests.exceptions.SSLError):
        return f"TLS error with {where}"
    if found(urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError):
        return "connection broken during the transfer"
    if found(requests.exceptions.InvalidSchema):
        return f"{urlsplit(url).scheme or 'this'}:// URLs are not supported"
    if found(requests.exceptions.InvalidURL, requests.exceptions.MissingSchema):
        return "not a valid URL"
    text = str(chain[-1]).strip().splitlines()
    words = text[0] if text else type(chain[-1]).__name__
    return words if len(words) <= 100 else words[:99] + "…"
