"""Check execution shared by the agent and the control plane.

* :func:`validate_spec` — validate and normalise a check spec (the control plane's monitor API
  and the agent both use it; :class:`CheckSpecError` names the offending field);
* :func:`spec_schema` / :func:`specs_schema` — the JSON Schema (2020-12) of one check type's spec
  and of any spec, derived from the declarations the validator uses (for an OpenAPI document);
* :func:`run_check` — run a spec under :class:`CheckOptions` and return a :class:`CheckResult`
  (never raises for target failures);
* :class:`DataProtection` — strip content, headers and IP addresses from a result dict before it
  leaves the site.

Each check type is one module (``vantage.checks.<type>``) declaring a :class:`CheckType`; see
docs/checks.md, "Adding a check type". Importing this package loads no check library: each
type imports the heavy one it needs (asyncssh, psycopg, PyMySQL, dnspython, aiohttp's cookie
jar) when a check of that type first runs.
"""

from vantage.checks.netpolicy import (
    DEFAULT_BLOCKED_NETWORKS,
    CheckOptions,
    blocked_by,
    parse_networks,
)
from vantage.checks.privacy import DataProtection, scrub_ips
from vantage.checks.result import CheckResult
from vantage.checks.runner import run_check
from vantage.checks.schema import CheckSpecError, CheckType
from vantage.checks.spec import (
    CHECK_TYPES,
    COMMON_FIELDS,
    check_fields,
    spec_schema,
    specs_schema,
    validate_spec,
)

__all__ = [
    "CHECK_TYPES",
    "COMMON_FIELDS",
    "DEFAULT_BLOCKED_NETWORKS",
    "CheckOptions",
    "CheckResult",
    "CheckSpecError",
    "CheckType",
    "DataProtection",
    "blocked_by",
    "check_fields",
    "parse_networks",
    "run_check",
    "scrub_ips",
    "spec_schema",
    "specs_schema",
    "validate_spec",
]
