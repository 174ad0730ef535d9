"""Schema-driven JSON of the DashScope stand-in (spec/support/standin.py).

When a prompt embeds a JSON Schema after the marker ``matching this JSON
Schema:``, the stand-in answers a document generated from it (the
``badschema`` step asks for one that violates it).  Strings are
"sample <name>", integers 42, numbers 42.5 (clamped to the bounds),
booleans true, enums and consts their first value, arrays minItems
(at least one) items; ``$ref``, ``allOf``, ``anyOf``/``oneOf`` (first
non-null alternative) are followed.

Python 3 standard library only.
"""

import json
import math

SCHEMA_MARKER = "matching this JSON Schema:"


def _resolve(schema, root):
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 50:
        ref = schema["$ref"]
        seen += 1
        if not isinstance(ref, str) or not ref.startswith("#"):
            return {}
        node = root
        for part in ref[1:].split("/"):
            if part == "":
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return {}
        schema = node
    return schema


def _clamp(v, s, integer):
    lo = s.get("minimum")
    hi = s.get("maximum")
    xlo = s.get("exclusiveMinimum")
    xhi = s.get("exclusiveMaximum")
    step = 1 if integer else 0.5
    if isinstance(xlo, (int, float)) and not isinstance(xlo, bool) and v <= xlo:
        v = xlo + step
    if isinstance(lo, (int, float)) and not isinstance(lo, bool) and v < lo:
        v = lo
    if isinstance(xhi, (int, float)) and not isinstance(xhi, bool) and v >= xhi:
        v = xhi - step
    if isinstance(hi, (int, float)) and not isinstance(hi, bool) and v > hi:
        v = hi
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and not (lo <= v <= hi):
        v = (lo + hi) / 2
    if integer:
        v = int(math.ceil(v)) if isinstance(lo, (int, float)) else int(v)
    return v


def gen_value(schema, name, root, depth=0, bad=False):
    if depth > 20:
        return None
    schema = _resolve(schema, root)
    if schema is True or not isinstance(schema, dict):
        return "sample " + name
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        alts = schema.get(key)
        if isinstance(alts, list) and alts:
            if key == "allOf":
                merged = {}
                for a in alts:
                    a = _resolve(a, root)
                    if isinstance(a, dict):
                        for k, v in a.items():
                            if k == "properties" and isinstance(merged.get(k), dict):
                                merged[k] = dict(merged[k], **v)
                            elif k == "required" and isinstance(merged.get(k), list):
                                merged[k] = merged[k] + list(v)
                            else:
                                merged[k] = v
                return gen_value(merged, name, root, depth + 1, bad)
            # prefer the first non-null alternative
            pick = alts[0]
            for a in alts:
                ra = _resolve(a, root)
                if not (isinstance(ra, dict) and ra.get("type") == "null"):
                    pick = a
                    break
            return gen_value(pick, name, root, depth + 1, bad)
    t = schema.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        t = non_null[0] if non_null else "null"
    if t is None:
        if "properties" in schema or "required" in schema:
            t = "object"
        elif "items" in schema:
            t = "array"
        else:
            t = "string"
    if t == "object":
        props = schema.get("properties") or {}
        req = [r for r in (schema.get("required") or []) if isinstance(r, str)]
        out = {}
        for pname, psch in props.items():
            out[pname] = gen_value(psch, pname, root, depth + 1, bad)
        for r in req:
            if r not in out:
                out[r] = "sample " + r
        return out
    if t == "array":
        items = schema.get("items")
        if isinstance(items, list):  # tuple form
            return [gen_value(s, name, root, depth + 1, bad) for s in items]
        count = schema.get("minItems", 1)
        if not isinstance(count, int) or count < 1:
            count = 1
        count = min(count, 100)
        return [gen_value(items if items is not None else {}, name, root, depth + 1, bad)
                for _ in range(count)]
    if t == "string":
        s = "sample " + name
        ml = schema.get("minLength")
        if isinstance(ml, int) and len(s) < ml:
            s = s + "x" * (ml - len(s))
        mx = schema.get("maxLength")
        if isinstance(mx, int) and mx >= 0 and len(s) > mx:
            s = s[:mx]
        return s
    if t == "integer":
        v = _clamp(42, schema, True)
        return str(v) if bad else v
    if t == "number":
        v = _clamp(42.5, schema, False)
        return str(v) if bad else v
    if t == "boolean":
        return True
    if t == "null":
        return None
    return "sample " + name


def generate_from_schema(schema, bad=False):
    doc = gen_value(schema, "value", schema, 0, bad)
    if bad and isinstance(doc, dict):
        root = _resolve(schema, schema)
        req = root.get("required") if isinstance(root, dict) else None
        if isinstance(req, list) and req and req[0] in doc:
            del doc[req[0]]
    return doc


def find_schema(texts):
    """Last text part containing the marker; returns the schema or None."""
    for text in reversed(texts):
        idx = text.rfind(SCHEMA_MARKER)
        if idx < 0:
            continue
        start = text.find("{", idx + len(SCHEMA_MARKER))
        if start < 0:
            continue
        try:
            obj, _ = json.JSONDecoder().raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None
