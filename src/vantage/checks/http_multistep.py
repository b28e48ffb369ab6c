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
from vantage.checks.fields import CREDENTIAL, MAX_TARGET_LENGTH, URL_TARGET, normalize_url
from vantage.checks.httpclient import (
    NO_KEYWORD_WITH_HEAD,
    REQUEST_FIELDS,
    RESPONSE_FIELDS,
    TOKEN_RE,
    Request,
    Response,
    check_response,
    fetch,
)
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import (
    JSON,
    MAX_TEXT_FIELD,
    CheckSpecError,
    CheckType,
    Conflicts,
    Field,
    Obj,
    Protect,
    Rule,
    Text,
    did_you_mean,
    join,
)

MAX_STEPS = 10
MAX_EXTRACTS = 20
MAX_JSON_ASSERTIONS = 20
MAX_REGEX = 1000
MAX_STEP_NAME = 200
EXTRACT_SOURCES = ("json", "header", "regex")
#: ``${name}`` references an extracted variable, ``${credential.username}`` / ``${credential.password}``
#: the monitor's credential; ``$$`` is a literal ``$``. (Not ``{{ }}``: Ansible would template it.)
VARIABLE_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
CREDENTIAL_VARIABLES = frozenset({"credential.username", "credential.password"})
_JSON_PATH_TOKEN_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\['([^']*)'\]")

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


# --- the spec --------------------------------------------------------------------------------------


def parse_json_path(path: str) -> list[str | int]:
    """Parse the JSON path subset ``$.a.b[0]["c d"]`` into keys and indexes (``$`` alone: the root).

    Raises ``ValueError`` describing the first unparsable position.
    """
    if not path.startswith("$"):
        raise ValueError("must start with '$' (e.g. $.data.token or $.items[0].id)")
    out: list[str | int] = []
    pos = 1
    while pos < len(path):
        match = _JSON_PATH_TOKEN_RE.match(path, pos)
        if match is None:
            raise ValueError(f"cannot parse at position {pos}: use .name, [index] or [\"name\"]")
        name, index, dq, sq = match.groups()
        if index is not None:
            out.append(int(index))
        elif dq is not None:
            out.append(re.sub(r"\\(.)", r"\1", dq))
        else:
            out.append(name if name is not None else sq)
        pos = match.end()
    return out


def _json_path(value: str, name: str) -> str:
    try:
        parse_json_path(value)
    except ValueError as exc:
        raise CheckSpecError(name, str(exc)) from None
    return value


def template_variables(text: str) -> list[str]:
    """The variable names ``text`` references (``${name}``), in order; ``$$`` is not one."""
    return [m.group(1) for m in VARIABLE_RE.finditer(text) if m.group(0) != "$$"]


def _check_references(text: str, field: str, scope: Mapping[str, Any]) -> None:
    """Every ``${...}`` in ``text`` is a credential variable (with a credential) or extracted by an earlier step."""
    known: set[str] = scope["_known"]
    for name in template_variables(text):
        if name in CREDENTIAL_VARIABLES:
            if not scope["_has_credential"]:
                raise CheckSpecError(field, f"${{{name}}} needs the monitor's credential field")
            continue
        if not VARIABLE_NAME_RE.match(name):
            raise CheckSpecError(field, f"${{{name}}} is not a valid variable reference")
        if name not in known:
            raise CheckSpecError(
                field, f"${{{name}}} is not extracted by an earlier step (known: {', '.join(sorted(known)) or 'none'})"
            )


class StepUrl(Field):
    """A step's URL template: absolute or relative to ``target``, valid once its variables are filled in."""

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TARGET_LENGTH:
            raise CheckSpecError(name, "is required: an absolute http(s) URL or a path relative to target")
        url = value.strip()
        _check_references(url, name, ctx)
        placeholder = VARIABLE_RE.sub(lambda m: "$" if m.group(0) == "$$" else "x", url)
        normalize_url(urljoin(ctx["_base"], placeholder), name)
        return url

    def value_schema(self) -> JSON:
        return {"type": "string", "minLength": 1, "maxLength": MAX_TARGET_LENGTH, "pattern": r"\S"}


class Extract(Field):
    """Variables to extract from the response: ``{name: {"json": path} | {"header": name} | {"regex": re, "group": n}}``."""

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        if not isinstance(value, Mapping) or not 1 <= len(value) <= MAX_EXTRACTS:
            raise CheckSpecError(name, f"must be an object of 1 to {MAX_EXTRACTS} variable names to sources")
        out: dict[str, dict[str, Any]] = {}
        for variable, source in value.items():
            sub = f"{name}.{variable}"
            if not isinstance(variable, str) or not VARIABLE_NAME_RE.match(variable):
                raise CheckSpecError(sub, "variable names are letters, digits and '_', not starting with a digit")
            if not isinstance(source, Mapping):
                raise CheckSpecError(sub, f"must be an object with one of {', '.join(EXTRACT_SOURCES)}")
            kinds = [k for k in EXTRACT_SOURCES if k in source]
            if len(kinds) != 1 or set(source) - set(EXTRACT_SOURCES) - {"group"}:
                raise CheckSpecError(sub, f"must have exactly one of {', '.join(EXTRACT_SOURCES)} (and group for regex)")
            kind = kinds[0]
            text = source[kind]
            if not isinstance(text, str) or not text or len(text) > MAX_REGEX:
                raise CheckSpecError(f"{sub}.{kind}", f"must be a non-empty string of at most {MAX_REGEX} characters")
            item: dict[str, Any] = {kind: text}
            if kind == "json":
                _json_path(text, f"{sub}.json")
            elif kind == "header" and not TOKEN_RE.match(text):
                raise CheckSpecError(f"{sub}.header", "is not a valid HTTP header name")
            elif kind == "regex":
                try:
                    pattern = re.compile(text)
                except re.error as exc:
                    raise CheckSpecError(f"{sub}.regex", f"invalid regular expression: {exc}") from None
                group = source.get("group", 1 if pattern.groups else 0)
                if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group <= pattern.groups:
                    raise CheckSpecError(f"{sub}.group", f"must be an integer between 0 and {pattern.groups}")
                item["group"] = group
            if kind != "regex" and "group" in source:
                raise CheckSpecError(f"{sub}.group", "applies to regex only")
            out[variable] = item
        return out

    def value_schema(self) -> JSON:
        text = {"type": "string", "minLength": 1, "maxLength": MAX_REGEX}
        sources = [
            {"type": "object", "properties": {"json": {**text, "pattern": "^\\$"}}, "required": ["json"],
             "additionalProperties": False},
            {"type": "object", "properties": {"header": {"type": "string", "pattern": TOKEN_RE.pattern}},
             "required": ["header"], "additionalProperties": False},
            {"type": "object", "properties": {"regex": text, "group": {"type": "integer", "minimum": 0}},
             "required": ["regex"], "additionalProperties": False},
        ]
        return {"type": "object", "minProperties": 1, "maxProperties": MAX_EXTRACTS,
                "propertyNames": {"pattern": VARIABLE_NAME_RE.pattern}, "additionalProperties": {"oneOf": sources}}


class JsonAssertions(Field):
    """``[{"path": "$.a.b", "equals": <any JSON value>}, ...]``: values the JSON response must hold."""

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_JSON_ASSERTIONS:
            raise CheckSpecError(name, f'must be a list of 1 to {MAX_JSON_ASSERTIONS} {{"path", "equals"}} objects')
        out: list[dict[str, Any]] = []
        for i, item in enumerate(value):
            sub = f"{name}.{i}"
            if not isinstance(item, Mapping) or set(item) != {"path", "equals"}:
                raise CheckSpecError(sub, 'must be an object with exactly "path" and "equals"')
            path = item["path"]
            if not isinstance(path, str) or len(path) > MAX_TEXT_FIELD:
                raise CheckSpecError(f"{sub}.path", "must be a JSON path string")
            out.append({"path": _json_path(path, f"{sub}.path"), "equals": item["equals"]})
        return out

    def value_schema(self) -> JSON:
        assertion = {"type": "object", "required": ["path", "equals"], "additionalProperties": False,
                     "properties": {"path": {"type": "string", "maxLength": MAX_TEXT_FIELD, "pattern": "^\\$"},
                                    "equals": {}}}
        return {"type": "array", "items": assertion, "minItems": 1, "maxItems": MAX_JSON_ASSERTIONS}


class _References(Rule):
    """Header values and the body reference only variables that exist when the step runs."""

    def check(self, values: Mapping[str, Any], prefix: str) -> None:
        for header, text in values["headers"].items():
            _check_references(text, f"{prefix}.headers.{header}", values)
        if values["body"] is not None:
            _check_references(values["body"], f"{prefix}.body", values)


class _ReadsBody(Rule):
    """JSON assertions and body extractions need a body: not with HEAD or ``max_body_bytes`` 0."""

    def check(self, values: Mapping[str, Any], prefix: str) -> None:
        extract = values["extract"] or {}
        reads_body = bool(values["json"]) or any("header" not in source for source in extract.values())
        if reads_body and (values["method"] == "HEAD" or values["max_body_bytes"] == 0):
            raise CheckSpecError(prefix, "reads the response body, which method HEAD or max_body_bytes 0 rule out")


def _step_name(value: str, name: str) -> str:
    if not value.strip():
        raise CheckSpecError(name, f"must be a non-empty string of at most {MAX_STEP_NAME} characters")
    return value.strip()


STEP: Obj = Obj(
    {
        "name": Text(max_length=MAX_STEP_NAME, normalize=_step_name, pattern=r"\S",
                     message=f"must be a non-empty string of at most {MAX_STEP_NAME} characters",
                     description="shown in results and errors (default: 'step N')"),
        "url": StepUrl(required=True, description="absolute http(s) URL or a path relative to target; "
                       "${var} inserts a value (percent-encoded unless the whole URL is one variable)"),
        **REQUEST_FIELDS,
        "json": JsonAssertions(description="JSON paths ($, .name, [index], [\"any name\"]) and the values they must hold"),
        "extract": Extract(description="variables later steps use as ${name}: from a JSON path, a header or a "
                           "regular expression group of the body"),
    },
    rules=(
        *NO_KEYWORD_WITH_HEAD,
        *(Conflicts(keyword, "max_body_bytes", 0, f"must be greater than 0 when {keyword} is set",
                    error_field="max_body_bytes", sibling=False) for keyword in ("keyword", "keyword_absent")),
        _References(),
        _ReadsBody(),
    ),
    unknown=lambda key: f"unknown step field{did_you_mean(key, STEP.fields)}",
    description="one request of the transaction, with its assertions and extractions",
)


class Steps(Field):
    """The transaction: 1 to ``MAX_STEPS`` steps; a step may use what earlier steps extracted."""

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_STEPS:
            raise CheckSpecError(name, f"must be a list of 1 to {MAX_STEPS} steps")
        known: set[str] = set()
        scope = {"_base": ctx["target"], "_has_credential": ctx["credential"] is not None, "_known": known,
                 "max_body_bytes": ctx["max_body_bytes"]}
        steps: list[dict[str, Any]] = []
        for i, step in enumerate(value):
            parsed = STEP.parse(step, join(name, str(i)), scope)
            parsed["name"] = parsed["name"] or f"step {i + 1}"
            known.update(parsed["extract"] or {})
            steps.append(parsed)
        return steps

    def value_schema(self) -> JSON:
        return {"type": "array", "items": STEP.schema(), "minItems": 1, "maxItems": MAX_STEPS}


CHECK = CheckType(
    name="http_multistep",
    description="A short HTTP transaction (log in, then call the API) of requests that share cookies and variables.",
    target=URL_TARGET.described("base URL (http or https); step URLs may be relative to it"),
    fields={
        **RESPONSE_FIELDS,
        "credential": CREDENTIAL,
        "steps": Steps(required=True, description=f"1 to {MAX_STEPS} requests, run in order; the first failing one "
                       "ends the run. Every ${var} must be extracted by an earlier step, ${credential.username} and "
                       "${credential.password} need credential"),
    },
    run=run_http_multistep,
    example={
        "type": "http_multistep", "target": "https://orders.example.internal/", "credential": "orders-api",
        "steps": [
            {"name": "login", "method": "POST", "url": "/api/login", "headers": {"Content-Type": "application/json"},
             "body": '{"user": "${credential.username}", "password": "${credential.password}"}',
             "expected_status": 200, "extract": {"token": {"json": "$.token"}}},
            {"name": "list orders", "url": "/api/orders?limit=1", "headers": {"Authorization": "Bearer ${token}"},
             "json": [{"path": "$.status", "equals": "ok"}]},
        ],
    },
    # Reports no body, header or filled-in value at all (see the module docstring).
    protect=Protect(),
)
