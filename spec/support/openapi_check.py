#!/usr/bin/env python3
"""Check JSON values against component schemas of OpenAI's openapi.yaml.

    python3 spec/support/openapi_check.py [--spec PATH] < checks.json

stdin: a JSON list of [schema_name, value] pairs; stdout: a JSON list, per
pair, of the problems found ("$.completion_window: 'x' not in enum [...]"),
empty when the value conforms.  The spec defaults to
/work/shared/openai-openapi/openapi.yaml (or $OPENAPI_SPEC); its component
schemas are cached as JSON next to the system's temp dir, keyed by the
file's SHA-256, since parsing 87,000 lines of YAML takes seconds.

The subset of JSON Schema that the Batch and File schemas use: $ref, type
(also lists), enum, const, required, properties, additionalProperties,
items, anyOf/oneOf/allOf, nullable, minLength/maxLength, minimum/maximum,
minItems/maxItems.  Formats ("binary", "unixtime") are not checked.
Needs PyYAML (Debian's python3-yaml).
"""

import hashlib
import json
import os
import sys
import tempfile

DEFAULT_SPEC = "/work/shared/openai-openapi/openapi.yaml"


def load_schemas(path):
    with open(path, "rb") as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), "qwenvl-openapi-%s.json" % digest)
    try:
        with open(cache) as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas = yaml.load(raw, Loader=loader)["components"]["schemas"]
    schemas = json.loads(json.dumps(schemas, default=str))  # YAML dates -> strings
    tmp = cache + ".%d" % os.getpid()
    try:
        with open(tmp, "w") as f:
            json.dump(schemas, f)
        os.replace(tmp, cache)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
    return schemas


TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def check(schemas, schema, v, where, out, depth=0):
    if depth > 40:
        return
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return check(schemas, schemas[name], v, where, out, depth + 1)
    if v is None and schema.get("nullable"):
        return
    t = schema.get("type")
    if t is not None:
        kinds = t if isinstance(t, list) else [t]
        if not any(TYPES[k](v) for k in kinds if k in TYPES):
            out.append("%s: expected %s, got %s" % (where, "/".join(kinds), json.dumps(v)[:80]))
            return
    if "enum" in schema and v not in schema["enum"]:
        out.append("%s: %s not in enum %s" % (where, json.dumps(v)[:80], schema["enum"]))
    if "const" in schema and v != schema["const"]:
        out.append("%s: %s is not %s" % (where, json.dumps(v)[:80], json.dumps(schema["const"])))
    if isinstance(v, str):
        if "maxLength" in schema and len(v) > schema["maxLength"]:
            out.append("%s: longer than %d" % (where, schema["maxLength"]))
        if "minLength" in schema and len(v) < schema["minLength"]:
            out.append("%s: shorter than %d" % (where, schema["minLength"]))
    if TYPES["number"](v):
        if "minimum" in schema and v < schema["minimum"]:
            out.append("%s: below %s" % (where, schema["minimum"]))
        if "maximum" in schema and v > schema["maximum"]:
            out.append("%s: above %s" % (where, schema["maximum"]))
    if isinstance(v, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in v:
                out.append("%s: missing required %s" % (where, k))
        for k, sub in v.items():
            if k in props:
                check(schemas, props[k], sub, "%s.%s" % (where, k), out, depth + 1)
            else:
                extra = schema.get("additionalProperties")
                if extra is False:
                    out.append("%s: unexpected property %s" % (where, k))
                elif isinstance(extra, dict):
                    check(schemas, extra, sub, "%s.%s" % (where, k), out, depth + 1)
    if isinstance(v, list):
        if "items" in schema:
            for i, sub in enumerate(v):
                check(schemas, schema["items"], sub, "%s[%d]" % (where, i), out, depth + 1)
        if "minItems" in schema and len(v) < schema["minItems"]:
            out.append("%s: fewer than %d items" % (where, schema["minItems"]))
        if "maxItems" in schema and len(v) > schema["maxItems"]:
            out.append("%s: more than %d items" % (where, schema["maxItems"]))
    for sub in schema.get("allOf", []):
        check(schemas, sub, v, where, out, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            fits = 0
            for sub in schema[key]:
                tmp = []
                check(schemas, sub, v, where, tmp, depth + 1)
                fits += not tmp
            if fits == 0:
                out.append("%s: matches none of %s" % (where, key))


def main(argv):
    spec = os.environ.get("OPENAPI_SPEC") or DEFAULT_SPEC
    if len(argv) > 2 and argv[1] == "--spec":
        spec = argv[2]
    schemas = load_schemas(spec)
    pairs = json.load(sys.stdin)
    result = []
    for name, value in pairs:
        out = []
        if name not in schemas:
            out.append("no schema named %s" % name)
        else:
            check(schemas, schemas[name], value, "$", out)
        result.append(out)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
