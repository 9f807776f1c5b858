"""Credentials in URLs: kept for the connection, never shown (rows, admin, logs, clients).

A backend may be configured as `http://user:pass@host:port/v1`. Everything the proxy shows of
it (`requests.backend_url`, device ids, `/admin/pools`, metrics labels, log lines) uses
`redact_url`; free text that may quote a URL (an adapter's error) goes through `redact_text`.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit, urlunsplit

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|password|secret|sig)=)"
                           r"[^&#\s]*")
HIDDEN = "***"


def redact_url(url: str) -> str:
    """The URL with its user and password (and secret-looking query values) hidden."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """Free text with the credentials of any URL in it hidden."""
    return _SECRET_QUERY.sub(r"\g<1>" + HIDDEN, _USERINFO.sub(r"\g<1>" + HIDDEN + "@", text))


def without_userinfo(url: str) -> str:
    """The URL to connect to, its user and password moved out (see `basic_auth`)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def basic_auth(url: str) -> str | None:
    """An `Authorization: Basic` value from the URL's user and password, if it has them."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return None
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()
