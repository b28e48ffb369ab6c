"""The ``http_multistep`` check: a short transaction of HTTP requests sharing cookies and variables.

Each step is one request through the HTTP client of :mod:`vantage.checks.httpclient` (
vetted addresses, TLS verification, bounded body, per-phase timings — summed over all steps and
hops), with redirects followed hop by hop so that a cookie set on a redirect (the usual login
answer) is kept. Cookies live in an RFC 6265 jar (``aiohttp.CookieJar``) for the run only.

Values extracted from a response — a JSON path, a header or a regular expression group — become
variables that later steps use as ``${name}`` in their URL, headers and body;
``${credential.username}`` / ``${credential.password}`` come from the monitor's credential. In a
URL a value is percent-encoded unless the whole URL is one variable (an extracted link). ``$$`` is a
literal ``$``.

Results name the failing step (``details.failed_step``, and the error starts with
``step N (name):``). They report each step's URL *template*, never a URL, header or body with the
values filled in, and the names of the extracted variables, never their values (session tokens
are secrets too). No response body or header is reported at all: a login answer carries tokens the
check cannot tell from other content, and each failure message (status, assertion, extraction)
is readable on its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import quote, urljoin

from vantage.checks.credentials import REDACTED, Credential
from vantage.checks.httpclient import Request, Response, check_response, fetch
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.spec import VARIABLE_RE, CheckSpecError, normalize_url, parse_json_path

#: Split a folded ``Set-Cookie`` header (the client joins repeated headers with ", ") at commas
#: that start a new ``name=`` — never inside an ``Expires=Wed, 21 Oct ...`` date.
_SET_COOKIE_SPLIT = re.compile(r",\s*(?=[!#$%&'*+\-.^_`|~0-9A-Za-z]+=)")
_MIN_REDACT = 4
_MISSING = object()


def _json_lookup(document: Any, path: list[str | int]) -> Any:
    value = document
    for key in path:
        if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
            continue
        name = str(key)  # an object member; [0] on an object means the member "0"
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


class _Run:
    def __init__(self, spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
        import aiohttp

        self.spec = spec
        self.options = options
        self.probe = probe
        self.jar = aiohttp.CookieJar(unsafe=True)  # unsafe: cookies for IP-address hosts too
        self.variables: dict[str, str] = {}
        self.credential: Credential | None = None
        if spec["credential"]:
            self.credential = options.credentials.get(spec["credential"])

    # -- templating -------------------------------------------------------------------------

    def value(self, name: str) -> str:
        if name in ("credential.username", "credential.password"):
            assert self.credential is not None
            field = name.split(".", 1)[1]
            self.credential.require(field, purpose=f"${{{name}}}")
            return str(getattr(self.credential, field))
        return self.variables[name]

    def fill(self, template: str, *, url: bool = False) -> str:
        whole = VARIABLE_RE.fullmatch(template)
        if url and whole is not None and whole.group(0) != "$$":
            return self.value(whole.group(1))

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            text = self.value(match.group(1))
            return quote(text, safe="") if url else text

        return VARIABLE_RE.sub(sub, template)

    def scrub(self, text: str) -> str:
        for value in sorted(self.variables.values(), key=len, reverse=True):
            if len(value) >= _MIN_REDACT:
                text = text.replace(value, REDACTED)
        return text

    # -- cookies ----------------------------------------------------------------------------

    def cookie_header(self, url: str) -> str | None:
        from yarl import URL

        cookies = self.jar.filter_cookies(URL(url))
        return "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items()) or None

    def store_cookies(self, resp: Response, url: str) -> None:
        from yarl import URL

        raw = resp.header("set-cookie")
        if not raw:
            return
        for item in _SET_COOKIE_SPLIT.split(raw):
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(item)
            except CookieError:
                self.probe.warnings.append("ignored a malformed Set-Cookie header")
                continue
            self.jar.update_cookies(cookie, URL(url))

    # -- one step ---------------------------------------------------------------------------

    def with_cookies(self, request: Request) -> Request:
        """``request`` with the jar's cookies for its URL, unless the step sets ``Cookie`` itself."""
        if any(k.lower() == "cookie" for k in request.headers):
            return request
        cookies = self.cookie_header(request.url)
        return request if cookies is None else replace(request, headers={**request.headers, "Cookie": cookies})

    async def request(self, request: Request) -> Response:
        """One step's request with its redirects; cookies are stored and sent at every hop."""
        resp, _final = await fetch(
            request, self.spec, self.options, self.probe,
            prepare=self.with_cookies, received=lambda sent, hop: self.store_cookies(hop, sent.url),
        )
        return resp

    def check(self, step: Mapping[str, Any], resp: Response, text: str) -> None:
        check_response(step, resp, text, int(self.spec["max_body_bytes"]))
        document: Any = _MISSING
        for assertion in step["json"] or []:
            if document is _MISSING:
                document = self.parse_json(text)
            actual = _json_lookup(document, parse_json_path(assertion["path"]))
            if actual is _MISSING:
                raise CheckFailure(f"JSON path {assertion['path']} not found in the response")
            wanted = assertion["equals"]
            if actual != wanted or isinstance(actual, bool) != isinstance(wanted, bool):
                raise CheckFailure(
                    f"JSON path {assertion['path']} does not equal the expected value "
                    f"(expected {json.dumps(wanted)[:100]}, got a {type(actual).__name__})"
                )
        for name, source in (step["extract"] or {}).items():
            if "header" in source:
                found = resp.header(source["header"])
                if found is None:
                    raise CheckFailure(
                        f"cannot extract {name!r}: header {source['header']!r} not in the response"
                    )
                self.variables[name] = found
            elif "json" in source:
                if document is _MISSING:
                    document = self.parse_json(text)
                found = _json_lookup(document, parse_json_path(source["json"]))
                if found is _MISSING or found is None:
                    raise CheckFailure(f"cannot extract {name!r}: JSON path {source['json']} not found")
                self.variables[name] = _as_text(found)
            else:
                match = re.search(source["regex"], text)
                if match is None or match.group(source["group"]) is None:
                    raise CheckFailure(f"cannot extract {name!r}: regex does not match the response body")
                self.variables[name] = match.group(source["group"])

    @staticmethod
    def parse_json(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise CheckFailure("the response body is not JSON (or was cut at max_body_bytes)") from None


async def run_http_multistep(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``http_multistep`` spec; the first failing step ends the run."""
    run = _Run(spec, options, probe)
    base = str(spec["target"])
    steps: list[dict[str, Any]] = []
    probe.details["steps"] = steps
    for i, step in enumerate(spec["steps"]):
        label = f"step {i + 1} ({step['name']})"
        record: dict[str, Any] = {"name": step["name"], "method": step["method"], "url": step["url"]}
        steps.append(record)
        start = time.perf_counter()
        try:
            try:
                url = normalize_url(urljoin(base, run.fill(step["url"], url=True)))
            except CheckSpecError:
                raise CheckFailure("the URL is invalid once the variables are filled in") from None
            headers = {name: run.fill(value) for name, value in step["headers"].items()}
            if any(c in v for v in headers.values() for c in "\r\n\x00"):
                raise CheckFailure("a header value contains a line break once the variables are filled in")
            body = None if step["body"] is None else run.fill(step["body"])
            resp = await run.request(Request(url, step["method"], headers, body))
            record["status_code"] = resp.status
            text = resp.text()
            run.check(step, resp, text)
            record["extracted"] = sorted(step["extract"] or {})
        except CheckFailure as exc:
            probe.details["failed_step"] = {"index": i + 1, "name": step["name"]}
            raise CheckFailure(f"{label}: {run.scrub(str(exc))}") from None
        except asyncio.CancelledError:  # the check's overall timeout: name the step in its message
            probe.details["failed_step"] = {"index": i + 1, "name": step["name"]}
            probe.stage = f"{label}, {probe.stage}"
            raise
        except OSError as exc:
            probe.details["failed_step"] = {"index": i + 1, "name": step["name"]}
            raise CheckFailure(
                f"{label}: network error during {probe.stage}: {exc.strerror or exc}"
            ) from None
        finally:
            record["duration_ms"] = round((time.perf_counter() - start) * 1000.0, 3)
    probe.details["status_code"] = steps[-1].get("status_code")
