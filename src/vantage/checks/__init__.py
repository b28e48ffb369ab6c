"""Check execution shared by the agent and the control plane.

* :func:`validate_spec` — validate and normalise a check spec (the control plane's monitor API
  and the agent both use it; :class:`CheckSpecError` names the offending field);
* :func:`run_check` — run a spec under :class:`CheckOptions` and return a :class:`CheckResult`
  (never raises for target failures);
* :class:`DataProtection` — strip content, headers and IP addresses from a result dict before it
  leaves the site.
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
from vantage.checks.spec import (
    CHECK_TYPES,
    COMMON_FIELDS,
    CheckSpecError,
    check_fields,
    validate_spec,
)

__all__ = [
    "CHECK_TYPES",
    "COMMON_FIELDS",
    "DEFAULT_BLOCKED_NETWORKS",
    "CheckOptions",
    "CheckResult",
    "CheckSpecError",
    "DataProtection",
    "blocked_by",
    "check_fields",
    "parse_networks",
    "run_check",
    "scrub_ips",
    "validate_spec",
]
