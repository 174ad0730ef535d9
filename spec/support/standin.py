#!/usr/bin/env python3
"""DashScope (Alibaba Cloud Model Studio) OpenAI-compatible stand-in server.

Test double for the qwenvl Lua module.  Python 3 standard library only.

    python3 spec/support/standin.py [--host 127.0.0.1] [--port 0]
        [--key sk-standin-test] [--max-concurrent N] [--verbose]

Prints exactly one line ``PORT <port> PID <pid>`` to stdout once listening.

API (prefix /compatible-mode/v1):
    GET  /models                 model list (auth)
    POST /chat/completions       chat (auth); answers are computed from the
                                 request (see build_report / schema mode)
Fault injection: model "fault/<scenario>/<step1>,<step2>,..." -- attempt k
of a scenario runs step k, the last step repeats.  See STEP docs in
Handler.run_step.
Records (no auth):
    GET  /_standin/scenario/<name>   {"attempts":n,"times":[...]}
    GET  /_standin/requests[?scenario=s]
    GET  /_standin/stats
    POST /_standin/reset
    POST /_standin/shutdown
"""

import argparse
import base64
import binascii
import collections
import email.utils
import hashlib
import json
import math
import os
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/compatible-mode/v1"
DATA_URI_LIMIT = 10485760
DEFAULT_MODEL = "qwen3-vl-plus"
MODELS = [
    "qwen3-vl-plus",
    "qwen3-vl-flash",
    "qwen-vl-max",
    "qwen-vl-plus",
    "qwen-vl-ocr",
    "qwen3-vl-plus-2025-09-23",
    "qwen3-vl-flash-2025-10-15",
    "qwen-vl-max-latest",
    "qwen-vl-ocr-latest",
]
AUTH_MESSAGE = ("Incorrect API key provided. For details, see: "
                "https://help.aliyun.com/zh/model-studio/error-code#apikey-error")
ALGO = "<400> InternalError.Algo.InvalidParameter: "
MSG_BAD_URL = "The provided URL does not appear to be valid. Ensure it is correctly formatted."
MSG_DECODE = ALGO + "Failed to decode the image during the data inspection."
SCHEMA_MARKER = "matching this JSON Schema:"

CONFIG = {"key": "sk-standin-test", "max_concurrent": 0, "verbose": False}


def log(*args):
    if CONFIG["verbose"]:
        print("[standin]", *args, file=sys.stderr, flush=True)


def dumps(obj, sort_keys=False):
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False)


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------
class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()
        self.in_flight = 0

    def reset(self):
        with getattr(self, "lock"):
            self.scenarios = {}  # name -> {"attempts": n, "times": []}
            self.requests = collections.deque(maxlen=500)
            self.by_scenario = collections.defaultdict(lambda: collections.deque(maxlen=2000))
            self.chat_requests = 0
            self.models_requests = 0
            self.other_requests = 0
            self.connections = 0
            self.arrivals = []
            self.max_in_flight = getattr(self, "in_flight", 0)

    def attempt(self, scenario, now):
        with self.lock:
            s = self.scenarios.setdefault(scenario, {"attempts": 0, "times": []})
            s["attempts"] += 1
            s["times"].append(now)
            return s["attempts"]

    def record(self, rec):
        with self.lock:
            self.requests.append(rec)
            if rec.get("scenario") is not None:
                self.by_scenario[rec["scenario"]].append(rec)

    def enter(self):
        """Returns False when the global concurrency cap is hit."""
        with self.lock:
            cap = CONFIG["max_concurrent"]
            if cap and self.in_flight >= cap:
                return False
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight
            return True

    def leave(self):
        with self.lock:
            self.in_flight -= 1


STATE = State()


# --------------------------------------------------------------------------
# Image inspection (no PIL)
# --------------------------------------------------------------------------
class ImageError(Exception):
    pass


def _tiff_info(data, base=0):
    """Parse a TIFF structure at data[base:]. Returns (width, height, orientation)."""
    if len(data) < base + 8:
        raise ImageError("short tiff")
    bo = data[base:base + 2]
    if bo == b"II":
        e = "<"
    elif bo == b"MM":
        e = ">"
    else:
        raise ImageError("bad tiff byte order")
    (magic,) = struct.unpack(e + "H", data[base + 2:base + 4])
    if magic != 42:
        raise ImageError("bad tiff magic")
    (ifd,) = struct.unpack(e + "I", data[base + 4:base + 8])
    off = base + ifd
    if len(data) < off + 2:
        raise ImageError("short ifd")
    (n,) = struct.unpack(e + "H", data[off:off + 2])
    width = height = orientation = None
    for i in range(n):
        p = off + 2 + 12 * i
        if len(data) < p + 12:
            break
        tag, typ, count = struct.unpack(e + "HHI", data[p:p + 8])
        if typ == 3:
            (val,) = struct.unpack(e + "H", data[p + 8:p + 10])
        elif typ == 4:
            (val,) = struct.unpack(e + "I", data[p + 8:p + 12])
        else:
            continue
        if tag == 256:
            width = val
        elif tag == 257:
            height = val
        elif tag == 274:
            orientation = val
    return width, height, orientation


def _jpeg_info(data):
    i = 2
    n = len(data)
    orientation = None
    while i < n:
        if data[i] != 0xFF:
            raise ImageError("bad jpeg marker")
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            break
        m = data[i]
        i += 1
        if m == 0x01 or 0xD0 <= m <= 0xD7:
            continue  # standalone markers
        if m in (0xD9, 0xDA):
            break  # EOI / SOS before a frame header: give up
        if i + 2 > n:
            break
        (seglen,) = struct.unpack(">H", data[i:i + 2])
        if seglen < 2:
            raise ImageError("bad jpeg segment")
        seg = data[i + 2:i + seglen]
        if m == 0xE1 and seg[:6] == b"Exif\x00\x00" and orientation is None:
            try:
                orientation = _tiff_info(seg, 6)[2]
            except (ImageError, struct.error):
                pass
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            if len(seg) < 5:
                raise ImageError("short SOF")
            h, w = struct.unpack(">HH", seg[1:5])
            return w, h, orientation
        i += seglen
    raise ImageError("no SOF")


def inspect_image(data):
    """Returns (format, width, height, orientation)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return "png", w, h, None
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return "gif", w, h, None
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            kind = data[12:16]
            if kind == b"VP8 ":
                if data[23:26] != b"\x9d\x01\x2a":
                    raise ImageError("bad vp8")
                w, h = struct.unpack("<HH", data[26:30])
                return "webp", w & 0x3FFF, h & 0x3FFF, None
            if kind == b"VP8L":
                if data[20] != 0x2F:
                    raise ImageError("bad vp8l")
                (b,) = struct.unpack("<I", data[21:25])
                return "webp", (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1, None
            if kind == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return "webp", w, h, None
            raise ImageError("unknown webp")
        if data[:2] == b"BM":
            (hs,) = struct.unpack("<I", data[14:18])
            if hs == 12:
                w, h = struct.unpack("<HH", data[18:22])
            else:
                w, h = struct.unpack("<ii", data[18:26])
            return "bmp", abs(w), abs(h), None
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            w, h, o = _tiff_info(data, 0)
            if w is None or h is None:
                raise ImageError("tiff without size")
            return "tiff", w, h, o
        if data[:3] == b"\xFF\xD8\xFF":
            w, h, o = _jpeg_info(data)
            return "jpeg", w, h, o
    except (struct.error, IndexError, ValueError) as e:
        raise ImageError(str(e))
    raise ImageError("unknown format")


def decode_data_url(url):
    """Returns (mime, bytes) or raises ValueError('url') / ImageError('b64')."""
    head, sep, payload = url.partition(",")
    if not sep or not head.lower().endswith(";base64"):
        raise ValueError("url")
    mime = head[5:].split(";", 1)[0]
    try:
        raw = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("base64")
    return mime, raw


def summarize_data_url(url):
    out = {"data_url_bytes": len(url.encode("utf-8")), "sha256": None, "format": None}
    try:
        mime, raw = decode_data_url(url)
        out["mime"] = mime
        out["decoded_bytes"] = len(raw)
        out["sha256"] = hashlib.sha256(raw).hexdigest()
        try:
            out["format"] = inspect_image(raw)[0]
        except ImageError:
            pass
    except (ValueError, ImageError):
        pass
    return out


def redact_body(obj):
    if isinstance(obj, str):
        if obj[:5].lower() == "data:":
            return summarize_data_url(obj)
        return obj
    if isinstance(obj, list):
        return [redact_body(x) for x in obj]
    if isinstance(obj, dict):
        return {k: redact_body(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------
# Schema-conforming document generation
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Request validation and answer building
# --------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status, message, etype="invalid_parameter_error", code=None, param=None):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.etype = etype
        self.code = code or etype
        self.param = param


def bad(msg, etype="invalid_parameter_error", code=None):
    return ApiError(400, msg, etype, code)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def message_texts(msg):
    c = msg.get("content") if isinstance(msg, dict) else None
    if isinstance(c, str):
        return [c]
    out = []
    if isinstance(c, list):
        for part in c:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif isinstance(part, str):
                out.append(part)
    return out


def image_report(part):
    iu = part.get("image_url")
    detail = None
    if isinstance(iu, dict):
        url = iu.get("url")
        detail = iu.get("detail")
    else:
        url = iu
    if not isinstance(url, str) or not url:
        raise bad(MSG_BAD_URL)
    low = url[:8].lower()
    if low.startswith("http://") or low.startswith("https://"):
        rep = {"url": url}
    elif low.startswith("data:"):
        if len(url) > DATA_URI_LIMIT:
            raise bad("Exceeded limit on max bytes per data-uri item : %d" % DATA_URI_LIMIT)
        try:
            mime, raw = decode_data_url(url)
        except ValueError:
            raise bad(MSG_BAD_URL)
        except ImageError:
            raise bad(MSG_DECODE)
        try:
            fmt, w, h, orient = inspect_image(raw)
        except ImageError:
            raise bad(MSG_DECODE)
        if w <= 10 or h <= 10:
            raise bad(ALGO + "The image length and width do not meet the model restrictions. "
                      "[height:%d or width:%d must be larger than 10]" % (h, w))
        rep = {"format": fmt, "width": w, "height": h, "bytes": len(raw),
               "sha256": hashlib.sha256(raw).hexdigest(), "mime": mime,
               "orientation": orient}
    else:
        raise bad(MSG_BAD_URL)
    for k in ("min_pixels", "max_pixels"):
        if k in part:
            rep[k] = part[k]
        elif isinstance(iu, dict) and k in iu:
            rep[k] = iu[k]
    if detail is not None:
        rep["detail"] = detail
    return rep


def analyse(body):
    """Validate a chat request body. Returns an analysis dict or raises ApiError."""
    if not isinstance(body, dict):
        raise bad("Request body must be a JSON object", "invalid_request_error", "invalid_request_error")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("you must provide a model parameter", "invalid_request_error", "invalid_request_error")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        raise bad("Required parameter(messages) missing or invalid")
    temp = body.get("temperature")
    if temp is not None and (not _is_num(temp) or not (0 <= temp < 2)):
        raise bad(ALGO + "Temperature should be in [0.0, 2.0)")
    mt = body.get("max_tokens")
    if mt is not None and (not _is_num(mt) or mt < 1 or mt > 32768):
        raise bad("Range of max_tokens should be [1, 32768]")
    rf = body.get("response_format")
    json_mode = isinstance(rf, dict) and rf.get("type") == "json_object"
    thinking = body.get("enable_thinking") is True
    stream = body.get("stream") is True
    if json_mode and thinking:
        raise bad("Json mode response is not supported when enable_thinking is true")
    if thinking and not stream:
        raise bad("parameter.enable_thinking must be set to false for non-streaming calls")
    all_texts = []
    for m in msgs:
        all_texts.extend(message_texts(m))
    if json_mode and not any("json" in t.lower() for t in all_texts):
        raise bad("'messages' must contain the word 'json' in some form, "
                  "to use 'response_format' of type 'json_object'.")
    images = []
    for m in msgs:
        c = m.get("content")
        if isinstance(c, list):
            for part in c:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    images.append(image_report(part))
    prompt = None
    system = None
    for m in msgs:
        if m.get("role") == "system" and system is None:
            system = "\n".join(message_texts(m))
    for m in reversed(msgs):
        if m.get("role") == "user":
            prompt = "\n".join(message_texts(m))
            break
    image_tokens = 0
    for r in images:
        if "width" in r:
            image_tokens += math.ceil(r["height"] / 32) * math.ceil(r["width"] / 32) + 2
    text_chars = sum(len(t) for t in all_texts)
    text_tokens = max(1, math.ceil(text_chars / 4))
    so = body.get("stream_options")
    return {
        "model": model, "images": images, "prompt": prompt if prompt is not None else "",
        "system": system, "json_mode": json_mode, "thinking": thinking, "stream": stream,
        "include_usage": isinstance(so, dict) and so.get("include_usage") is True,
        "schema": find_schema(all_texts), "image_tokens": image_tokens,
        "text_tokens": text_tokens,
    }


def build_content(a, model_out, badschema=False, oversize=None):
    if oversize is not None:
        unit = "lorem ipsum dolor sit amet "
        return (unit * (oversize // len(unit) + 1))[:oversize]
    if a["schema"] is not None:
        return dumps(generate_from_schema(a["schema"], bad=badschema))
    rep = dumps({"images": a["images"], "prompt": a["prompt"], "system": a["system"],
                 "model": model_out}, sort_keys=True)
    return rep if a["json_mode"] else "STANDIN " + rep


def usage_for(a, content, reasoning):
    p = a["image_tokens"] + a["text_tokens"]
    c = math.ceil(len(content) / 4)
    r = math.ceil(len(reasoning) / 4) if reasoning else 0
    u = {"prompt_tokens": p, "completion_tokens": c + r, "total_tokens": p + c + r,
         "prompt_tokens_details": {"image_tokens": a["image_tokens"], "text_tokens": a["text_tokens"]}}
    if reasoning:
        u["completion_tokens_details"] = {"reasoning_tokens": r, "text_tokens": c}
    return u


def split_pieces(s, n=8):
    if len(s) > 65536:
        n = 4096
    return [s[i:i + n] for i in range(0, len(s), n)] or [""]


def structural_comma(s):
    """Index of the first comma outside a JSON string, or -1."""
    in_str = False
    esc = False
    for i, ch in enumerate(s):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == ",":
            return i
    return -1


# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------
def parse_step(step):
    """'429ra=3+delay=300' -> ('429ra', '3', delay_ms)."""
    parts = step.split("+")
    base = parts[0].strip()
    delay = 0.0
    for mod in parts[1:]:
        k, _, v = mod.partition("=")
        if k.strip() == "delay":
            try:
                delay += float(v)
            except ValueError:
                pass
    name, _, arg = base.partition("=")
    name = name.strip()
    if name == "delay":
        try:
            delay += float(arg)
        except ValueError:
            pass
        name, arg = "ok", ""
    if name == "":
        name = "ok"
    return name, arg, delay


def parse_fault_model(model):
    if not isinstance(model, str) or not model.startswith("fault/"):
        return None, None
    rest = model[len("fault/"):]
    scenario, sep, steps = rest.rpartition("/")
    if not sep:
        scenario, steps = rest, "ok"
    steps = [s for s in steps.split(",") if s.strip()] or ["ok"]
    return scenario, steps


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------
class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def get_request(self):
        conn = ThreadingHTTPServer.get_request(self)
        # Headers and body go out in two writes: without TCP_NODELAY the
        # body waits ~40 ms for the client's delayed ACK on loopback.
        try:
            conn[0].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with STATE.lock:
            STATE.connections += 1
        return conn

    def handle_error(self, request, client_address):
        if CONFIG["verbose"]:
            ThreadingHTTPServer.handle_error(self, request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "istio-envoy"

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        log("%s - %s" % (self.address_string(), fmt % args))

    # -- low level ---------------------------------------------------------
    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_raw_headers(self, status, headers, reason=None):
        self.send_response(status, reason)
        self.send_header("x-request-id", self.rid)
        self.send_header("req-arrive-time", str(int(self.t0 * 1000)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def send_bytes(self, status, data, ctype="application/json", headers=()):
        hdrs = [("Content-Type", ctype), ("Content-Length", str(len(data)))] + list(headers)
        self.send_raw_headers(status, hdrs)
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status, obj, headers=()):
        self.send_bytes(status, dumps(obj).encode("utf-8"), "application/json", headers)

    def send_error_body(self, status, message, etype, code, param=None, headers=(), include_param=True):
        err = {"message": message, "type": etype}
        if include_param:
            err["param"] = param
        err["code"] = code
        self.send_json(status, {"error": err, "request_id": self.rid}, headers)

    def send_api_error(self, e):
        self.send_error_body(e.status, e.message, e.etype, e.code, e.param)

    def rst(self):
        """Abort the connection with a TCP RST."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except Exception:
            pass
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except Exception:
            pass
        try:
            self.connection.close()
        except OSError:
            pass

    # -- dispatch ----------------------------------------------------------
    def handle_one_request(self):
        try:
            BaseHTTPRequestHandler.handle_one_request(self)
        except (ConnectionError, BrokenPipeError, socket.timeout, OSError) as e:
            log("connection error:", repr(e))
            self.close_connection = True

    def setup_request(self):
        self.rid = str(uuid.uuid4())
        self.t0 = time.time()
        u = urllib.parse.urlsplit(self.path)
        self.url_path = u.path
        self.query = urllib.parse.parse_qs(u.query)

    def do_GET(self):
        self.setup_request()
        p = self.url_path
        if p.startswith("/_standin/"):
            self.read_body()
            return self.standin_get(p)
        self.read_body()
        if p in (PREFIX + "/models", PREFIX + "/models/"):
            with STATE.lock:
                STATE.models_requests += 1
            if not self.auth_ok():
                return self.send_auth_error()
            return self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1735689600, "owned_by": "system"}
                for m in MODELS]})
        if p.startswith(PREFIX + "/models/"):
            if not self.auth_ok():
                return self.send_auth_error()
            mid = urllib.parse.unquote(p[len(PREFIX + "/models/"):])
            if mid in MODELS:
                return self.send_json(200, {"id": mid, "object": "model", "created": 1735689600,
                                            "owned_by": "system"})
            return self.send_json(404, {"error": {"message": "Model not exist.",
                                                  "type": "invalid_request_error",
                                                  "code": "model_not_found"},
                                        "request_id": self.rid})
        if p == PREFIX + "/chat/completions":
            return self.send_error_body(405, "Method Not Allowed", "invalid_request_error",
                                        "method_not_allowed")
        return self.not_found()

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        self.setup_request()
        p = self.url_path
        if p.startswith("/_standin/"):
            self.read_body()
            return self.standin_post(p)
        if p == PREFIX + "/chat/completions":
            return self.chat()
        self.read_body()
        return self.not_found()

    def do_PUT(self):
        self.setup_request()
        self.read_body()
        self.not_found()

    do_DELETE = do_PUT
    do_PATCH = do_PUT

    def not_found(self):
        self.send_error_body(404, "The requested resource %s was not found." % self.url_path,
                             "invalid_request_error", "not_found")

    def auth_ok(self):
        return (self.headers.get("Authorization") or "") == "Bearer " + CONFIG["key"]

    def send_auth_error(self):
        self.send_error_body(401, AUTH_MESSAGE, "invalid_request_error", "invalid_api_key")

    # -- _standin ----------------------------------------------------------
    def standin_get(self, p):
        if p.startswith("/_standin/scenario/"):
            name = urllib.parse.unquote(p[len("/_standin/scenario/"):])
            with STATE.lock:
                s = STATE.scenarios.get(name) or {"attempts": 0, "times": []}
                out = {"attempts": s["attempts"], "times": list(s["times"])}
            return self.send_json(200, out)
        if p == "/_standin/requests":
            sc = self.query.get("scenario")
            with STATE.lock:
                if sc:
                    recs = list(STATE.by_scenario.get(sc[0], []))
                else:
                    recs = list(STATE.requests)
            return self.send_json(200, recs)
        if p == "/_standin/stats":
            with STATE.lock:
                out = {"chat_requests": STATE.chat_requests,
                       "models_requests": STATE.models_requests,
                       "max_in_flight": STATE.max_in_flight, "in_flight": STATE.in_flight,
                       "connections": STATE.connections, "arrivals": list(STATE.arrivals)}
            return self.send_json(200, out)
        if p == "/_standin/health":
            return self.send_json(200, {"ok": True, "pid": os.getpid()})
        return self.not_found()

    def standin_post(self, p):
        if p == "/_standin/reset":
            STATE.reset()
            return self.send_json(200, {"ok": True})
        if p == "/_standin/shutdown":
            self.close_connection = True
            self.send_json(200, {"ok": True})
            self.wfile.flush()
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return
        return self.not_found()

    # -- chat --------------------------------------------------------------
    def chat(self):
        raw = self.read_body()
        now = self.t0
        with STATE.lock:
            STATE.chat_requests += 1
            STATE.arrivals.append(now)
        body = None
        parse_ok = True
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
            if raw == b"":
                parse_ok = False
        except (ValueError, UnicodeDecodeError):
            parse_ok = False
        model = body.get("model") if isinstance(body, dict) else None
        scenario, steps = parse_fault_model(model)
        attempt = STATE.attempt(scenario, now) if scenario is not None else None
        headers = {k.lower(): v for k, v in self.headers.items()}
        if "authorization" in headers and self.auth_ok():
            headers["authorization"] = "Bearer <redacted>"
        STATE.record({"time": now, "scenario": scenario, "attempt": attempt,
                      "method": self.command, "path": self.path, "request_id": self.rid,
                      "headers": headers, "body": redact_body(body) if parse_ok else None,
                      "raw_size": len(raw)})
        if not STATE.enter():
            return self.send_error_body(
                429, "Request rate increased too quickly. To ensure system stability, "
                     "please adjust your client logic to scale requests more smoothly over time.",
                "limit_burst_rate", "limit_burst_rate")
        try:
            if not self.auth_ok():
                return self.send_auth_error()
            if not parse_ok:
                return self.send_error_body(
                    400, "We could not parse the JSON body of your request. (HINT: This likely "
                         "means you aren't using your HTTP library correctly. The OpenAI API "
                         "expects a JSON payload, but what was sent was not valid JSON.",
                    "invalid_request_error", "invalid_request_error")
            if scenario is None:
                step = ("ok", "", 0.0)
            else:
                step = parse_step(steps[min(attempt, len(steps)) - 1])
            self.run_step(body, step, scenario is not None)
        finally:
            STATE.leave()

    def run_step(self, body, step, faulty):
        name, arg, delay = step
        if delay > 0:
            time.sleep(delay / 1000.0)
        chunk_delay = 0.0
        try:
            chunk_delay = float(self.headers.get("X-Standin-Chunk-Delay-Ms") or 0) / 1000.0
        except ValueError:
            pass
        rl = "Requests rate limit exceeded, please try again later."
        if name == "429":
            return self.send_error_body(429, rl, "limit_requests", "limit_requests")
        if name == "429ra":
            return self.send_error_body(429, rl, "limit_requests", "limit_requests",
                                        headers=[("Retry-After", arg or "1")])
        if name == "429ram":
            return self.send_error_body(429, rl, "limit_requests", "limit_requests",
                                        headers=[("retry-after-ms", arg or "1000")])
        if name == "429date":
            when = email.utils.formatdate(time.time() + float(arg or 1), usegmt=True)
            return self.send_error_body(429, rl, "limit_requests", "limit_requests",
                                        headers=[("Retry-After", when)])
        if name == "500":
            return self.send_error_body(500, "An internal error has occured, please try again later "
                                        "or contact service support.", "internal_error", "internal_error")
        if name == "502html":
            html = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                    "</body>\r\n</html>\r\n").encode()
            return self.send_bytes(502, html, "text/html")
        if name == "503":
            return self.send_error_body(503, "Model is unavailable, please try again later.",
                                        "ModelUnavailable", "ServiceUnavailable")
        if name == "504":
            return self.send_error_body(504, "Request timed out, please try again later.",
                                        "RequestTimeOut", "RequestTimeOut")
        if name == "400":
            return self.send_error_body(400, ALGO + "Injected invalid parameter.",
                                        "invalid_parameter_error", "invalid_parameter_error")
        if name == "401":
            return self.send_auth_error()
        if name == "403":
            return self.send_error_body(403, "Access denied.", "AccessDenied", "AccessDenied")
        if name == "404":
            return self.send_json(404, {"error": {"message": "Model not exist.",
                                                  "type": "invalid_request_error",
                                                  "code": "model_not_found"},
                                        "request_id": self.rid})
        if name == "400dif":
            return self.send_error_body(400, "Input or output data may contain inappropriate content.",
                                        "data_inspection_failed", "data_inspection_failed")
        if name == "reset":
            return self.rst()
        if name == "notjson":
            return self.send_bytes(200, b"this is not json", "application/json")
        if name == "slowheaders":
            time.sleep(float(arg or 0) / 1000.0)
            name = "ok"
        if name == "redirect":
            host = (self.headers.get("Host") or "").split(":")[0]
            target = "localhost" if host in ("127.0.0.1", "") else "127.0.0.1"
            loc = "http://%s:%d%s" % (target, self.server.server_address[1], self.path)
            return self.send_json(307, {"redirect": loc}, headers=[("Location", loc)])
        if name == "empty_choices":
            return self.send_json(200, {"id": "chatcmpl-" + self.rid, "object": "chat.completion",
                                        "created": int(time.time()), "model": DEFAULT_MODEL,
                                        "choices": [], "system_fingerprint": None})
        # Everything else needs a valid request and a computed answer.
        try:
            a = analyse(body)
        except ApiError as e:
            return self.send_api_error(e)
        model_out = DEFAULT_MODEL if faulty else a["model"]
        oversize = None
        if name == "oversize":
            try:
                oversize = int(arg)
            except ValueError:
                oversize = 1 << 20
        content = build_content(a, model_out, badschema=(name == "badschema"), oversize=oversize)
        n_img = len(a["images"])
        reasoning = ("thinking about %d image%s" % (n_img, "" if n_img == 1 else "s")) \
            if a["thinking"] else ""
        usage = usage_for(a, content, reasoning)
        if a["stream"]:
            return self.stream_answer(a, model_out, content, reasoning, usage, name, arg, chunk_delay)
        msg = {"role": "assistant", "content": content}
        resp = {"id": "chatcmpl-" + self.rid, "object": "chat.completion",
                "created": int(time.time()), "model": model_out,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": msg}],
                "usage": usage, "system_fingerprint": None}
        data = dumps(resp).encode("utf-8")
        if name == "truncate":
            self.close_connection = True
            self.send_raw_headers(200, [("Content-Type", "application/json"),
                                        ("Content-Length", str(len(data)))])
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            return
        if name == "reset_after_headers":
            self.send_raw_headers(200, [("Content-Type", "application/json"),
                                        ("Content-Length", str(len(data)))])
            self.wfile.flush()
            time.sleep(0.05)
            return self.rst()
        return self.send_bytes(200, data, "application/json")

    # -- streaming ---------------------------------------------------------
    def stream_answer(self, a, model_out, content, reasoning, usage, name, arg, chunk_delay):
        created = int(time.time())
        cid = "chatcmpl-" + self.rid

        def chunk(delta, finish=None):
            return {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model_out,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                    "system_fingerprint": None}

        events = []  # list of (kind, payload-json-string)
        if name == "empty_choices":
            events.append(("data", dumps({"id": cid, "object": "chat.completion.chunk",
                                          "created": created, "model": model_out, "choices": []})))
        else:
            for piece in (split_pieces(reasoning) if reasoning else []):
                events.append(("data", dumps(chunk({"content": "", "reasoning_content": piece,
                                                    "role": "assistant"}))))
            for piece in split_pieces(content):
                d = {"content": piece, "role": "assistant"}
                if reasoning:
                    d["reasoning_content"] = None
                events.append(("content", dumps(chunk(d))))
            events.append(("data", dumps(chunk({"content": ""}, "stop"))))
            if a["include_usage"]:
                events.append(("data", dumps({"id": cid, "object": "chat.completion.chunk",
                                              "created": created, "model": model_out,
                                              "choices": [], "usage": usage})))
            events.append(("data", "[DONE]"))

        nl = "\r\n" if name == "sse_crlf" else "\n"
        tiny = name == "sse_tiny"
        self.send_raw_headers(200, [("Content-Type", "text/event-stream;charset=UTF-8"),
                                    ("Cache-Control", "no-cache"),
                                    ("Transfer-Encoding", "chunked"),
                                    ("x-dashscope-call-gateway", "true")])
        self.wfile.flush()
        if name == "reset_after_headers":
            time.sleep(0.05)
            return self.rst()
        tiny_sizes = [1, 2, 3, 2]
        tiny_i = [0]

        def write(text):
            data = text.encode("utf-8")
            if tiny:
                pos = 0
                while pos < len(data):
                    n = tiny_sizes[tiny_i[0] % len(tiny_sizes)]
                    tiny_i[0] += 1
                    piece = data[pos:pos + n]
                    pos += n
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
            else:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        content_sent = 0
        multiline_done = False
        total = len(events)
        for idx, (kind, payload) in enumerate(events):
            if name == "truncate" and idx >= max(1, total // 2):
                self.close_connection = True
                return  # no terminating chunk
            text = ""
            if name == "sse_comments":
                text += ": keep-alive" + nl + nl
                text += "event: message" + nl + "id: %d" % (idx + 1) + nl
            if name == "sse_multiline" and kind == "content" and not multiline_done:
                c = structural_comma(payload)
                if c >= 0:
                    text += "data: " + payload[:c + 1] + nl + "data: " + payload[c + 1:] + nl + nl
                    multiline_done = True
                else:
                    text += "data: " + payload + nl + nl
            else:
                text += "data: " + payload + nl + nl
            write(text)
            if kind == "content":
                content_sent += 1
                if content_sent == 2:
                    if name == "stall":
                        time.sleep(float(arg or 0) / 1000.0)
                    elif name == "error_event":
                        write("data: " + dumps({"error": {
                            "message": "Output data may contain inappropriate content.",
                            "type": "data_inspection_failed", "param": None,
                            "code": "data_inspection_failed"},
                            "request_id": self.rid}) + nl + nl)
                        break
            if chunk_delay > 0 and idx < total - 1:
                time.sleep(chunk_delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# --------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description="DashScope stand-in server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", default="sk-standin-test")
    ap.add_argument("--max-concurrent", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="its private key (PEM)")
    ap.add_argument("--parent-pid", type=int, default=0,
                    help="exit when this process disappears (default: the parent at start)")
    args = ap.parse_args(argv)
    CONFIG.update(key=args.key, max_concurrent=max(0, args.max_concurrent), verbose=args.verbose)

    srv = Server((args.host, args.port), Handler)
    port = srv.server_address[1]
    control = None
    if args.tls_cert:
        # HTTPS on the main port (the handshake runs in each handler thread);
        # the test's own reads of /_standin/* go to a plain control port.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key or args.tls_cert)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
        control = Server((args.host, 0), Handler)
        threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # Do not outlive the test runner: if the parent dies we get re-parented.
    parent = args.parent_pid or os.getppid()

    def watchdog():
        while True:
            time.sleep(1.0)
            alive = True
            if args.parent_pid:
                try:
                    os.kill(parent, 0)
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    pass
            elif os.getppid() != parent:
                alive = False
            if not alive:
                log("parent gone, exiting")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    if parent > 1:
        threading.Thread(target=watchdog, daemon=True).start()

    sys.stdout.write("PORT %d PID %d%s\n" % (port, os.getpid(),
                     " CONTROL %d" % control.server_address[1] if control else ""))
    sys.stdout.flush()
    log("listening on %s:%d" % (args.host, port))
    try:
        srv.serve_forever(poll_interval=0.2)
    except SystemExit:
        pass
    except KeyboardInterrupt:
        pass
    finally:
        try:
            srv.server_close()
        except Exception:
            pass
    log("bye")
    # Daemon threads may still hold sockets; exit without waiting for them.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
