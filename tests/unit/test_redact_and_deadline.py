"""Pure parts of #14's server work: hiding URL credentials, a request's deadline."""

from __future__ import annotations

import base64

import pytest

from proxy.errors import InvalidRequest
from proxy.redact import basic_auth, redact_text, redact_url, without_userinfo
from proxy.serving.deadline import request_deadline


def test_a_url_shows_no_user_password_or_secret_query() -> None:
    assert redact_url("http://ops:pw@10.0.0.5:8000/v1") == "http://***@10.0.0.5:8000/v1"
    assert redact_url("https://token@host/v1?api_key=abc&x=1") == "https://***@host/v1?api_key=***&x=1"
    assert redact_url("http://10.0.0.5:8000/v1") == "http://10.0.0.5:8000/v1"  # unchanged
    assert redact_url("postgresql+psycopg://u:p@db/sprout") == "postgresql+psycopg://***@db/sprout"
    assert redact_text("GET http://a:b@h/x failed; retry http://c@h2/y") == (
        "GET http://***@h/x failed; retry http://***@h2/y")


def test_url_credentials_become_basic_auth() -> None:
    assert without_userinfo("http://ops:p%40ss@h:1/v1") == "http://h:1/v1"
    assert basic_auth("http://ops:p%40ss@h:1/v1") == "Basic " + base64.b64encode(
        b"ops:p@ss").decode()
    assert basic_auth("http://h:1/v1") is None and without_userinfo("http://h/v1") == "http://h/v1"


def test_the_deadline_is_the_default_or_the_clients_shorter_one() -> None:
    assert request_deadline(None, False, 60, 30).limit_s == 60
    stream = request_deadline(None, True, 60, 30)
    assert (stream.limit_s, stream.code) == (30, "first_byte_deadline_exceeded")
    asked = request_deadline("2.5", False, 60, 30)
    assert (asked.limit_s, asked.source, asked.code) == (2.5, "header", "total_deadline_exceeded")
    assert request_deadline("600", False, 60, 30).source == "default"  # never longer
    for bad in ("", "soon", "0", "-3", "nan", "inf", "1e999"):
        with pytest.raises(InvalidRequest) as caught:
            request_deadline(bad, False, 60, 30)
        assert caught.value.param == "X-Sprout-Timeout-S"
