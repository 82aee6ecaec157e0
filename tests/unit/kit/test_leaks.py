"""The secrets grep of the integration suite's audit (``tests.kit.leaks``): what it finds, in which forms, and
what it refuses to look for."""

from __future__ import annotations

import pytest

from tests.kit.leaks import Secrets

TOKEN = "00D8d000004SfSyAB2!AQ0Axz9L.Kq7bTYiEfGwRmhPc3uVdNs"
REFRESH = "5Aep861-ROTATED-initech"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"


def known() -> Secrets:
    secrets = Secrets()
    secrets.add("refresh token of connection initech", REFRESH)
    secrets.add("a token issued by org0", TOKEN)
    secrets.add("client secret of org0", "s3cr3t/with+signs&more")
    secrets.add_pem("private key of connection acme", PEM)
    return secrets


def test_a_known_secret_is_found_named_and_never_shown() -> None:
    line = f"2026-03-01 INFO sfsync.sinks refreshed with {REFRESH} for org-a"
    (leak,) = known().find([("log of sink", line)])
    assert (leak.secret, leak.where) == ("refresh token of connection initech", "log of sink")
    assert REFRESH not in str(leak) and "refreshed with <refresh token of connection initech> for org-a" in str(leak)


def test_a_secret_is_found_escaped_in_json_or_a_url_and_in_bytes() -> None:
    sources = [
        ("url", "GET /x?client_secret=s3cr3t%2Fwith%2Bsigns%26more"),
        ("form", b"client_secret=s3cr3t%2Fwith%2Bsigns%26more&x=1"),
        ("json", '{"secret": "s3cr3t/with+signs&more"}'),
    ]
    assert [(leak.secret, leak.where) for leak in known().find(sources)] == [
        ("client secret of org0", "url"),
        ("client secret of org0", "form"),
        ("client secret of org0", "json"),
    ]


def test_a_private_key_is_found_by_a_line_of_its_body() -> None:
    (leak,) = known().find([("header", b"key=MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")])
    assert leak.secret == "private key of connection acme (line 1 of its body)"


def test_tokens_and_jwts_nobody_named_are_found_by_their_shape_and_a_named_one_once() -> None:
    other_org = "00D5e000000AbCdEFG!AR8AQP0jITN80ESEsj5EbaZTFG0RNBaT1cyWk7T"
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIzTVZHOSJ9.c2lnbmF0dXJlLW9mLXRoZS1hc3NlcnRpb24"
    found = known().find([("metrics", f'a{{t="{other_org}"}} 1\nb{{j="{jwt}"}} 1\nc{{k="{TOKEN}"}} 1')])
    assert [leak.secret for leak in found] == [
        "a token issued by org0",
        "something shaped like a Salesforce access token",
        "something shaped like a signed JWT",
    ]


def test_clean_text_has_no_leak() -> None:
    text = 'sfsync_sink_api_calls_total{endpoint="composite"} 4.0\n00D8d000004SfSyAB2 [redacted] 5Aep861'
    assert known().find([("metrics", text)]) == []
    assert len(known()) == 5  # three values and the two lines of the PEM body


def test_a_short_secret_is_refused_it_would_be_found_by_chance() -> None:
    with pytest.raises(ValueError, match="r1: 2 characters, too short"):
        Secrets().add("r1", "r1")
