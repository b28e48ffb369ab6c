"""The declarations a check type's spec is written in: validation and JSON Schema from one source.

A check type declares its fields as :class:`Field` objects and its rules across fields as
:class:`Rule` objects, gathered in a :class:`CheckType`. Each declaration does two things side by
side: :meth:`Field.parse` checks and normalises a value (raising :class:`CheckSpecError` naming
the field), and :meth:`Field.value_schema` describes the values it accepts as JSON Schema
(2020-12, the dialect of OpenAPI 3.1). The validator and the published schema are therefore the
same declaration and cannot drift apart.

The schema states what JSON Schema can: types, ranges, lengths, enumerations (case-insensitive
ones as patterns), required fields, no unknown fields, and rules between sibling fields. What it
cannot — a host name's IDNA form, a regular expression that must compile, a variable that an
earlier step must extract — the validator checks and the field's description says.

Conventions every spec follows: an optional field that is absent or ``null`` takes its default
(``None`` where "not set" means something), and the normalised spec carries every field, so
``validate(validate(s)) == validate(s)`` and a stored spec is valid input again.
"""

from __future__ import annotations

import copy
import math
import re
from collections import ChainMap
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from vantage.checks.netpolicy import CheckOptions
    from vantage.checks.result import Probe

JSON = dict[str, Any]
Runner = Callable[[Mapping[str, Any], "CheckOptions", "Probe"], Awaitable[None]]

MAX_TEXT_FIELD = 4096
TIMEOUT_DEFAULT = 10.0
TIMEOUT_MIN = 0.1
TIMEOUT_MAX = 120.0


class CheckSpecError(ValueError):
    """A check spec is invalid; ``field`` is the dotted name of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def join(prefix: str, name: str) -> str:
    """The dotted name of ``name`` inside ``prefix`` (``steps.0`` + ``url`` → ``steps.0.url``)."""
    return f"{prefix}.{name}" if prefix else name


def nullable(schema: JSON) -> JSON:
    """``schema`` that also accepts ``null`` (an optional field's "not set")."""
    kind = schema.get("type")
    if isinstance(kind, str) and "enum" not in schema and "const" not in schema:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def caseless_pattern(choices: Iterable[str]) -> str:
    """An anchored ECMA-262 pattern matching any of ``choices`` in any letter case."""

    def one(text: str) -> str:
        return "".join(
            f"[{c.upper()}{c.lower()}]" if c.upper() != c.lower() else re.escape(c) for c in text
        )

    return "^(?:" + "|".join(one(c) for c in choices) + ")$"


class Field:
    """One field of a spec (or of an object inside it).

    ``default`` is the normalised value when the field is absent or ``null``; a ``required`` field
    has none. Subclasses implement :meth:`parse` (for a present value) and :meth:`value_schema`.
    ``message``, when given, replaces every error message of the field (a list's item, say,
    reports "must be a non-empty string" whatever is wrong with it).
    """

    def __init__(
        self, *, description: str = "", default: Any = None, required: bool = False, message: str | None = None
    ) -> None:
        self.description = description
        self.default = default
        self.required = required
        self.message = message
        #: a mutable default is copied for each spec, never shared between them
        self._mutable_default = isinstance(default, dict | list | set)

    def described(self, description: str) -> Self:
        """This field with another description (the same rules, told for another use)."""
        twin = copy.copy(self)
        twin.description = description
        return twin

    def validate(self, value: Any, name: str, ctx: Mapping[str, Any]) -> Any:
        """The normalised value of ``value`` (``None``: absent); ``ctx`` holds the fields declared before."""
        if value is None:
            if self.required:
                raise CheckSpecError(name, "is required")
            if self._mutable_default:  # never share a mutable default between specs
                return copy.deepcopy(self.default) if self.default else type(self.default)()
            return self.default
        return self.parse(value, name, ctx)

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def value_schema(self) -> JSON:
        raise NotImplementedError

    def fail(self, name: str, message: str) -> CheckSpecError:
        return CheckSpecError(name, self.message or message)

    def schema(self) -> JSON:
        """The JSON Schema of the field as it appears in its object (optional ones accept ``null``)."""
        out = self.value_schema()
        if not self.required:
            out = nullable(out)
        if self.description:
            out = {"description": self.description, **out}
        if self.default is not None:
            out["default"] = self.default
        return out


class Boolean(Field):
    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> bool:
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def value_schema(self) -> JSON:
        return {"type": "boolean"}


class Number(Field):
    """A number between ``minimum`` and ``maximum`` (normalised to a float); an :class:`Integer` is whole."""

    integer = False

    def __init__(self, minimum: float, maximum: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> float:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            raise self.fail(name, "must be an integer" if self.integer else "must be a number")
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            shown = (str(self.minimum), str(self.maximum)) if self.integer else (
                f"{self.minimum:g}", f"{self.maximum:g}")
            raise self.fail(name, f"must be between {shown[0]} and {shown[1]}")
        return value if self.integer else float(value)

    def value_schema(self) -> JSON:
        return {"type": "integer" if self.integer else "number", "minimum": self.minimum, "maximum": self.maximum}


class Integer(Number):
    integer = True


class Text(Field):
    """A string of at most ``max_length`` characters (non-empty unless ``allow_empty``).

    ``choices`` restricts it to a list (compared after ``fold``, e.g. ``str.upper``, which also
    normalises it); ``normalize(value, name)`` checks and normalises further (raising
    :class:`CheckSpecError`). ``pattern`` is the JSON Schema's approximation of what ``normalize``
    accepts: it must never reject a value the validator accepts.
    """

    def __init__(
        self,
        *,
        max_length: int = MAX_TEXT_FIELD,
        allow_empty: bool = False,
        choices: tuple[str, ...] | None = None,
        fold: Callable[[str], str] | None = None,
        normalize: Callable[[str, str], Any] | None = None,
        pattern: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.allow_empty = allow_empty
        self.choices = choices
        self.fold = fold
        self.normalize = normalize
        self.pattern = pattern

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> Any:
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        if not value and not self.allow_empty:
            raise self.fail(name, "must not be empty")
        if len(value) > self.max_length:
            raise self.fail(name, f"must be at most {self.max_length} characters")
        if self.choices is not None:
            folded = self.fold(value) if self.fold is not None else value
            if folded not in self.choices:
                raise self.fail(name, f"must be one of {', '.join(self.choices)}")
            value = folded
        return self.normalize(value, name) if self.normalize is not None else value

    def value_schema(self) -> JSON:
        if self.choices is not None:
            if self.fold is None:
                return {"type": "string", "enum": list(self.choices)}
            return {"type": "string", "pattern": caseless_pattern(self.choices)}
        out: JSON = {"type": "string", "maxLength": self.max_length}
        if not self.allow_empty:
            out["minLength"] = 1
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out


class ListOf(Field):
    """A list of ``min_items`` to ``max_items`` ``item`` values; items are named ``<field>.<index>``."""

    def __init__(self, item: Field, min_items: int, max_items: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item = item
        self.min_items = min_items
        self.max_items = max_items

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> list[Any]:
        if not isinstance(value, list) or not self.min_items <= len(value) <= self.max_items:
            raise self.fail(name, f"must be a list of {self.min_items} to {self.max_items} items")
        return [self.item.parse(item, f"{name}.{i}", ctx) for i, item in enumerate(value)]

    def value_schema(self) -> JSON:
        item = self.item.value_schema()
        if self.item.description:
            item = {"description": self.item.description, **item}
        return {"type": "array", "items": item, "minItems": self.min_items, "maxItems": self.max_items}


class Rule:
    """A rule across the fields of one object, checked once every field is parsed.

    ``check`` sees the object's normalised fields, then those of the objects around it.
    :meth:`schema` is its JSON Schema (``None`` where it involves fields outside the object).
    """

    def check(self, values: Mapping[str, Any], prefix: str) -> None:
        raise NotImplementedError

    def schema(self) -> JSON | None:
        return None


def _set(name: str) -> JSON:
    """JSON Schema: ``name`` is present and not ``null``."""
    return {"properties": {name: {"not": {"type": "null"}}}, "required": [name]}


@dataclass(frozen=True)
class Requires(Rule):
    """``field`` needs ``needs`` (both not null); the error names ``error_field`` (default ``field``)."""

    field: str
    needs: str
    message: str
    error_field: str | None = None

    def check(self, values: Mapping[str, Any], prefix: str) -> None:
        if values[self.field] is not None and values[self.needs] is None:
            raise CheckSpecError(join(prefix, self.error_field or self.field), self.message)

    def schema(self) -> JSON:
        return {"if": _set(self.field), "then": _set(self.needs)}


@dataclass(frozen=True)
class Conflicts(Rule):
    """``field`` may not be set while ``other`` has the normalised value ``value``.

    A string ``value`` matches in any case in the schema (the fields it applies to are folded).
    ``sibling=False`` when ``other`` belongs to an enclosing object (no schema then).
    """

    field: str
    other: str
    value: Any
    message: str
    error_field: str | None = None
    sibling: bool = True

    def check(self, values: Mapping[str, Any], prefix: str) -> None:
        if values[self.field] is not None and values[self.other] == self.value:
            raise CheckSpecError(join(prefix, self.error_field or self.field), self.message)

    def schema(self) -> JSON | None:
        if not self.sibling:
            return None
        when = ({"type": "string", "pattern": caseless_pattern([self.value])} if isinstance(self.value, str)
                else {"const": self.value})
        return {"if": {"properties": {self.other: when}, "required": [self.other]},
                "then": {"properties": {self.field: {"type": "null"}}}}


@dataclass(frozen=True)
class AtLeastOne(Rule):
    """At least one of ``names`` is set; the error names the object."""

    names: tuple[str, ...]
    message: str

    def check(self, values: Mapping[str, Any], prefix: str) -> None:
        if all(values[name] is None for name in self.names):
            raise CheckSpecError(prefix, self.message)

    def schema(self) -> JSON:
        return {"anyOf": [_set(name) for name in self.names]}


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest known name, or nothing."""
    import difflib  # only a misspelt spec needs it

    hint = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


class Obj(Field):
    """An object of declared ``fields`` (parsed in declaration order) and ``rules``; no other keys.

    ``unknown(key)`` is the message for a key that is not declared; ``message`` the one for a
    value that is not an object.
    """

    def __init__(
        self,
        fields: Mapping[str, Field],
        *,
        rules: tuple[Rule, ...] = (),
        unknown: Callable[[str], str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fields = dict(fields)
        self.rules = rules
        self.unknown = unknown or (lambda key: f"unknown field{did_you_mean(key, self.fields)}")

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise CheckSpecError(name, self.message or "must be an object")
        for key in value:
            if not isinstance(key, str):
                raise CheckSpecError(join(name, str(key)), "field names must be strings")
            if key not in self.fields:
                raise CheckSpecError(join(name, key), self.unknown(key))
        out: dict[str, Any] = {}
        scope: Mapping[str, Any] = ChainMap(out, ctx) if ctx else out  # type: ignore[arg-type]
        for key, spec_field in self.fields.items():
            out[key] = spec_field.validate(value.get(key), join(name, key), scope)
        for rule in self.rules:
            rule.check(scope, name)
        return out

    def value_schema(self) -> JSON:
        out: JSON = {
            "type": "object",
            "properties": {key: spec_field.schema() for key, spec_field in self.fields.items()},
            "additionalProperties": False,
        }
        required = [key for key, spec_field in self.fields.items() if spec_field.required]
        if required:
            out["required"] = required
        rules = [schema for schema in (rule.schema() for rule in self.rules) if schema is not None]
        if rules:
            out["allOf"] = rules
        return out


class Const(Field):
    """A field that must have exactly one value (the ``type`` discriminator)."""

    def __init__(self, value: str, **kwargs: Any) -> None:
        super().__init__(required=True, **kwargs)
        self.value = value

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> str:
        if value != self.value:
            raise CheckSpecError(name, f"must be {self.value!r}")
        return self.value

    def value_schema(self) -> JSON:
        return {"const": self.value}


TIMEOUT = Number(
    TIMEOUT_MIN, TIMEOUT_MAX, default=TIMEOUT_DEFAULT,
    description="Seconds the whole check may take, every step included; it fails when they run out.",
)


@dataclass(frozen=True)
class Protect:
    """What data protection removes from a check type's ``details`` (see :mod:`vantage.checks.privacy`).

    ``content``: keys holding response content (``strip_content``); ``headers``: keys holding
    response headers or what was taken from them (``strip_headers``); ``ips``: keys holding IP
    addresses (``strip_ips``); ``ip_values(mapping)``: keys of a details mapping whose values are
    IP addresses given the rest of that mapping (DNS answers of A/AAAA/PTR queries).
    """

    content: frozenset[str] = frozenset()
    headers: frozenset[str] = frozenset()
    ips: frozenset[str] = frozenset()
    ip_values: Callable[[Mapping[str, Any]], frozenset[str]] | None = None


@dataclass(frozen=True)
class CheckType:
    """Everything about one check type: its spec, how it runs, what data protection removes.

    The spec is ``type`` (the name), ``timeout_s``, ``target`` and ``fields``, then ``rules``
    across them; ``example`` is a typical spec (it must be valid: the tests check it, the JSON
    Schema shows it). ``run(spec, options, probe)`` runs a validated spec and raises
    :class:`~vantage.checks.result.CheckFailure` for a failed expectation; a heavy library it
    needs is imported inside it, on the first run (validation never needs one).
    """

    name: str
    description: str
    target: Field
    fields: Mapping[str, Field]
    run: Runner
    example: Mapping[str, Any]
    rules: tuple[Rule, ...] = ()
    protect: Protect = Protect()
    spec: Obj = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        declared = {"type": Const(self.name), "timeout_s": TIMEOUT, "target": self.target, **self.fields}
        spec = Obj(declared, rules=self.rules,
                   unknown=lambda key: f"unknown field for a {self.name} check{did_you_mean(key, declared)}",
                   message="must be an object", required=True, description=self.description)
        object.__setattr__(self, "spec", spec)

    def validate(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The normalised ``spec`` (every field present); :class:`CheckSpecError` names the first bad field."""
        return self.spec.parse(spec, "", {})

    def json_schema(self) -> JSON:
        """The JSON Schema (2020-12) of a spec of this type."""
        return {"title": f"{self.name} check", **self.spec.schema(), "examples": [dict(self.example)]}
