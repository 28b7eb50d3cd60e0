"""A local stand-in for the API server's validation of a ScalingPolicy spec, for unit tests without one.

``LocalServer`` does the parts of an API server that matter for the CRD: structural defaulting, OpenAPI
bounds/enums/types, strict unknown-field rejection, list-map key uniqueness, and the CEL rules (a small
interpreter, ``CelParser`` and ``cel_eval``, for the subset of CEL the model uses). Its messages imitate
the API server's, so the invalid-spec table's expected substrings are checked the way the cluster tests
check them.
"""

from __future__ import annotations

import json
import re
from typing import Any


class CelError(Exception):
    pass


_TOKEN = re.compile(r"\s*(?:(\d+)|'([^']*)'|([A-Za-z_]\w*)|(\|\||&&|==|!=|<=|>=|[<>!().,]))")


def _tokens(src: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise CelError(f"cannot tokenize {src[pos:]!r}")
        pos = m.end()
        num, text, ident, op = m.groups()
        if num is not None:
            out.append(("lit", int(num)))
        elif text is not None:
            out.append(("lit", text))
        elif ident is not None:
            out.append(("ident", ident))
        else:
            out.append(("op", op))
    return out


class CelParser:
    """Recursive descent over the CEL subset used by the model's rules."""

    def __init__(self, src: str) -> None:
        self.toks = _tokens(src)
        self.i = 0

    def parse(self) -> Any:
        node = self.or_()
        if self.i != len(self.toks):
            raise CelError(f"trailing tokens {self.toks[self.i :]}")
        return node

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise CelError(f"expected {value}, got {tok}")
        self.i += 1
        return tok

    def or_(self) -> Any:
        node = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Any:
        node = self.rel()
        while self.peek() == ("op", "&&"):
            self.take()
            node = ("and", node, self.rel())
        return node

    def rel(self) -> Any:
        node = self.unary()
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            node = ("cmp", tok[1], node, self.unary())
        return node

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return ("not", self.unary())
        return self.member()

    def member(self) -> Any:
        node = self.primary()
        while self.peek() == ("op", "."):
            self.take()
            name = self.take()[1]
            if self.peek() == ("op", "("):
                self.take("(")
                first = self.or_()
                if self.peek() == ("op", ","):
                    self.take(",")
                    assert first[0] == "var", "a macro's first argument names its variable"
                    body = self.or_()
                    self.take(")")
                    node = ("macro", name, node, first[1], body)
                else:
                    self.take(")")
                    node = ("method", name, node, first)
            else:
                node = ("field", node, name)
        return node

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "lit":
            return ("lit", value)
        if value == "(":
            node = self.or_()
            self.take(")")
            return node
        if self.peek() == ("op", "("):
            self.take("(")
            arg = self.or_()
            self.take(")")
            return ("call", value, arg)
        return ("var", value)


def cel_eval(node: Any, env: dict[str, Any]) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "var":
        return env[node[1]]
    if op == "field":
        obj = cel_eval(node[1], env)
        if node[2] not in obj:
            raise CelError(f"no such key: {node[2]}")
        return obj[node[2]]
    if op == "call" and node[1] == "has":
        field = node[2]
        assert field[0] == "field", "has() takes a field selection"
        return field[2] in cel_eval(field[1], env)
    if op == "call" and node[1] == "size":
        return len(cel_eval(node[2], env))
    if op == "method" and node[1] == "startsWith":
        return str(cel_eval(node[2], env)).startswith(cel_eval(node[3], env))
    if op == "not":
        return not cel_eval(node[1], env)
    if op == "or":
        return cel_eval(node[1], env) or cel_eval(node[2], env)
    if op == "and":
        return cel_eval(node[1], env) and cel_eval(node[2], env)
    if op == "cmp":
        a, b = cel_eval(node[2], env), cel_eval(node[3], env)
        return {
            "==": a == b,
            "!=": a != b,
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
        }[node[1]]
    if op == "macro":
        _, name, target, var, body = node
        hits = [bool(cel_eval(body, {**env, var: item})) for item in cel_eval(target, env)]
        if name == "all":
            return all(hits)
        if name == "exists":
            return any(hits)
        if name == "exists_one":
            return hits.count(True) == 1
    raise CelError(f"unsupported {node}")


_PY_TYPE = {
    "integer": int,
    "number": (int, float),
    "string": str,
    "boolean": bool,
    "object": dict,
    "array": list,
}


class LocalServer:
    """Defaulting plus validation of a spec against the generated schema, API-server style."""

    def __init__(self, schema: dict[str, Any], *, cel: bool = True) -> None:
        self.schema = schema
        self.cel = cel

    def validate(self, spec: Any) -> list[str]:
        errors: list[str] = []
        obj = json.loads(json.dumps(spec))
        self._default(obj, self.schema)
        self._check(obj, self.schema, "spec", errors)
        return errors

    def _default(self, obj: Any, schema: dict[str, Any]) -> None:
        if isinstance(obj, dict) and "properties" in schema:
            for name, sub in schema["properties"].items():
                if name not in obj and "default" in sub:
                    obj[name] = json.loads(json.dumps(sub["default"]))
                if name in obj:
                    self._default(obj[name], sub)
        elif isinstance(obj, list) and "items" in schema:
            for item in obj:
                self._default(item, schema["items"])

    def _check(self, obj: Any, schema: dict[str, Any], path: str, errors: list[str]) -> None:
        expected = _PY_TYPE[schema["type"]]
        if (isinstance(obj, bool) and schema["type"] != "boolean") or not isinstance(obj, expected):
            got = type(obj).__name__
            errors.append(f'{path}: Invalid value: "{got}": {path} in body must be of type {schema["type"]}')
            return
        before = len(errors)
        if "enum" in schema and obj not in schema["enum"]:
            supported = ", ".join(f'"{v}"' for v in schema["enum"])
            errors.append(f'{path}: Unsupported value: "{obj}": supported values: {supported}')
        if "minimum" in schema:
            low = schema["minimum"]
            if obj < low or (schema.get("exclusiveMinimum") and obj == low):
                errors.append(f"{path}: Invalid value: {obj}: {path} in body should be greater than {low}")
        if "maximum" in schema:
            high = schema["maximum"]
            if obj > high or (schema.get("exclusiveMaximum") and obj == high):
                errors.append(f"{path}: Invalid value: {obj}: {path} in body should be less than {high}")
        if "minLength" in schema and len(obj) < schema["minLength"]:
            low = schema["minLength"]
            errors.append(
                f'{path}: Invalid value: "{obj}": {path} in body should be at least {low} chars long'
            )
        if "maxLength" in schema and len(obj) > schema["maxLength"]:
            errors.append(f"{path}: Too long: may not be more than {schema['maxLength']} bytes")
        if "pattern" in schema and not re.search(schema["pattern"], obj):
            errors.append(
                f"{path}: Invalid value: \"{obj}\": {path} in body should match '{schema['pattern']}'"
            )
        if "minItems" in schema and len(obj) < schema["minItems"]:
            low = schema["minItems"]
            errors.append(
                f"{path}: Invalid value: {len(obj)}: {path} in body should have at least {low} items"
            )
        if "maxItems" in schema and len(obj) > schema["maxItems"]:
            errors.append(f"{path}: Too many: {len(obj)}: must have at most {schema['maxItems']} items")
        if isinstance(obj, dict):
            for req in schema.get("required", []):
                if req not in obj:
                    errors.append(f"{path}.{req}: Required value")
            props = schema.get("properties", {})
            for name, value in obj.items():
                if name in props:
                    self._check(value, props[name], f"{path}.{name}", errors)
                elif isinstance(schema.get("additionalProperties"), dict):
                    self._check(value, schema["additionalProperties"], f"{path}[{name}]", errors)
                elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                    errors.append(f'strict decoding error: unknown field "{path}.{name}"')
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                self._check(item, schema["items"], f"{path}[{i}]", errors)
            if schema.get("x-kubernetes-list-type") == "map":
                keys = schema["x-kubernetes-list-map-keys"]
                seen: set[tuple[Any, ...]] = set()
                for i, item in enumerate(obj):
                    key = tuple(item.get(k) for k in keys)
                    if key in seen:
                        errors.append(f"{path}[{i}]: Duplicate value: {dict(zip(keys, key, strict=True))}")
                    seen.add(key)
        # Like the API server, CEL runs only on values that passed the schema.
        if self.cel and len(errors) == before:
            for rule in schema.get("x-kubernetes-validations", []):
                if not cel_eval(CelParser(rule["rule"]).parse(), {"self": obj}):
                    where = path + rule.get("fieldPath", "")
                    what = (
                        "Required value"
                        if rule.get("reason") == "FieldValueRequired"
                        else 'Invalid value: "object"'
                    )
                    errors.append(f"{where}: {what}: {rule['message']}")
