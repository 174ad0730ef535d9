#!/usr/bin/env python3
"""DashScope (Alibaba Cloud Model Studio) OpenAI-compatible stand-in server.

Test double for the qwenvl Lua module.  Python 3 standard library only.

    python3 spec/support/standin.py [--host 127.0.0.1] [--port 0]
        [--key sk-standin-test] [--max-concurrent N] [--verbose]
        [--tls-cert PEM [--tls-key PEM]] [--parent-pid PID] [--plugin MODULE]...

Prints exactly one line ``PORT <port> PID <pid>`` (plus `` CONTROL <port>``
with TLS) to stdout once listening.

Modules (next to this file):
    standin.py          the server: state, records, routing, fault steps,
                        how answers are written to the socket
    standin_answers.py  request validation, model families, computed
                        answers (report, grounding, OCR), reasoning, usage
    standin_schema.py   JSON generated from a JSON Schema in the prompt
    standin_images.py   image/video inspection, data URLs, smart_resize

API (prefix /compatible-mode/v1):
    GET  /models, /models/<id>   model list / one model (auth)
    POST /chat/completions       chat (auth); answers are computed from the
                                 request (see standin_answers)
Records (no auth):
    GET  /_standin/scenario/<name>   {"attempts":n,"times":[...]}
    GET  /_standin/requests[?scenario=s]   what arrived, newest last (data
                                 URLs summarised, a valid key redacted;
                                 "client_gone": true when the client left
                                 during a delay or stall)
    GET  /_standin/stats, /_standin/health
    POST /_standin/reset, /_standin/shutdown

Adding routes (e.g. the Batch and Files APIs)
---------------------------------------------
Routes live in a table, ``ROUTER``; the first match wins.  Another module
adds a group of routes with a ``register(router)`` function:

    # spec/support/standin_batch.py
    def register(router):
        @router.route("POST", router.PREFIX + "/files")
        def upload(h):                  # h: the Handler of this request
            if not h.auth_ok():
                return h.send_auth_error()
            h.send_json(200, {...})     # h.raw_body holds the request body

        @router.route("GET", router.PREFIX + "/batches/{batch_id}")
        def get_batch(h, batch_id): ...

        router.on_reset(lambda: FILES.clear())   # POST /_standin/reset

Patterns match the request path (without the query string): ``{name}`` is
one path segment, ``{name*}`` the rest of the path, both passed
percent-decoded as keyword arguments.  HEAD is served by GET routes.
Requests no route matches get the 404 error body.  Modules named in
``PLUGINS`` are imported at start when present (a missing one is skipped),
and so is each ``--plugin MODULE`` (spec/support/standin_example_plugin.py
is a working example, used by spec/standin_spec.lua);
they may ``import standin`` for STATE, CONFIG, parse_fault_model,
parse_step.  What a route function can use on ``h``: rid, raw_body,
url_path, query (parse_qs), headers, command, auth_ok(),
send_auth_error(), send_json(status, obj, headers=()), send_bytes(status,
data, ctype, headers=()), send_error_body(status, message, etype, code,
param=None, headers=(), include_param=True), not_found(), rst().

Fault steps
-----------
The model "fault/<scenario>/<step1>,<step2>,..." picks a step per attempt:
attempt k of a scenario runs step k, the last step repeats.  A fault
request is validated and answered as qwen3-vl-plus (see model= below).

A step is tokens joined by "+", each ``name`` or ``name=value``.  At most
one token is a KIND (what is answered); the others are MODIFIERS (how it
is sent).  Without a kind the step answers ``ok``.  An unknown token, two
kinds, or a modifier that needs an error kind on another kind answers 400
with error.code "standin_bad_step" (so a typo cannot pass for "ok").

Kinds, errors (JSON body {"error":{message,type,param,code},"request_id"}):
    400        400 invalid_parameter_error ("<400> InternalError.Algo...")
    400dif     400 data_inspection_failed
    401        401 invalid_api_key
    403        403 AccessDenied
    404        404 model_not_found (no "param")
    408        408 RequestTimeOut (retryable)
    409        409 Conflict (retryable; DashScope documents no 409 body,
               this one follows its shape)
    429        429 limit_requests
    429ra=S    429 + "Retry-After: S" (S as given: "2", "0.25", "3600")
    429ram=MS  429 + "retry-after-ms: MS" (as given: "250", "1500.5")
    429date=S  429 + an HTTP-date Retry-After S seconds ahead
    500, 503, 504
    oai[=STATUS]  OpenAI-style body: {"error":{"message","type","param":null,
               "code":null}}, no request_id; STATUS defaults to 400
               (type invalid_request_error; 429 rate_limit_error; >=500
               server_error)
Kinds, transport:
    502html    502 nginx HTML page
    reset      TCP RST, no response
    notjson    200 application/json "this is not json"
    redirect   307 to the same URL on the other host name (127.0.0.1 <->
               localhost)
    empty_choices  200 chat.completion with "choices": [] (JSON even when
               the request asks for a stream)
Kinds, computed answers (a valid request; streamed when it asks):
    ok         the computed answer
    badschema  a document violating the prompt's JSON Schema
    oversize=N N bytes of content
    truncate   half the announced body (non-streamed) / half the events, no
               terminating chunk (streamed)
    reset_after_headers  headers, then a RST
    stall=MS   streamed: pause MS after the second content event
    error_event  streamed: an error event (data_inspection_failed, HTTP
               200) after the second content event, no [DONE]
Modifiers:
    delay=MS, slowheaders=MS   wait before answering (several add up; a
               bare "delay=MS" step is "ok+delay=MS").  A client that
               closes the connection during the wait is noticed (not over
               TLS, whose bytes cannot be peeked at): nothing is answered
               and the record gets "client_gone": true
    norid      no x-request-id header (bodies still carry the id)
    sse        error kinds: the body in event-stream form with the error
               status: Content-Type text/event-stream;charset=UTF-8,
               chunked, one event
               data: {"error":{"code","message","type"},"request_id"}
               and a blank line (what DashScope sends when moderation
               refuses a streamed request: "400dif+sse")
    sse_ping   with sse: a "data: ping" event (a gateway's heartbeat, not
               JSON) before the error event
    status=N   error kinds: answer with status N instead (e.g.
               "400dif+status=200": a 200 whose body is an error, no
               choices)
    ra=V, ram=MS, radate=S   add Retry-After: V / retry-after-ms: MS / an
               HTTP-date S seconds ahead to any answer ("503+ra=0.5")
    sse_crlf   streamed: CRLF line ends
    sse_tiny   streamed: HTTP chunks of 1-3 bytes; with sse_crlf every CR
               ends a chunk and its LF starts the next, 1 ms apart
    sse_comments  streamed: ": keep-alive" comments, event: and id: fields
    sse_multiline  streamed: one event's JSON split over two data: lines
    sse_event=NAME  streamed: every event carries "event: NAME" (DashScope's
               native API names its events "result"); with error_event, the
               error goes as "event: error" with the native body
               {"code","message","request_id"} (no "error" wrapper)
    nostream   a streamed request gets a plain 200 application/json
               chat.completion
    badutf8    the content is "bad utf-8: \\xff\\xfe then \\xe2\\x82 end" with
               those raw bytes inside the JSON string (invalid, and a
               truncated 3-byte sequence), streamed or not
    echo=WHERE a hostile server: the caller's bearer token goes into the
               answer (auth still applies: start the stand-in with that
               key).  WHERE (repeatable): text (content "you sent <token>"),
               delta (streamed: one delta with that whole text), id (id
               "chatcmpl-<token>" and request_id "<token>"), header
               (x-request-id: <token>), msg (error message), code
               (error.code), escaped (error message holding the token with
               every character written as \\uXXXX).  msg/code/escaped need
               an error kind or error_event; 502html takes msg (the page
               holds the token)
    model=NAME answer as that model (family rules: QVQ, OCR, grounding)
    nomodel    non-streamed: the completion has no "model" field
    parts      non-streamed: message.content is a list of parts, the text
               split over two "text" parts around a "refusal" part (the
               shape OpenAI's newer answers and some gateways use)
    cost=X     non-streamed: usage gains "cost": X as a JSON float (a
               gateway's price, e.g. 0.00125)
    fenced, bare  grounding answers with / without the ```json fence

Headers: X-Standin-Chunk-Delay-Ms: N pauses N ms between stream events.
"""

import argparse
import collections
import email.utils
import importlib
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if __name__ == "__main__":
    # Plugins "import standin": let them get this module, not a second copy.
    sys.modules.setdefault("standin", sys.modules[__name__])

from standin_answers import (ALGO, ApiError, analyse, build_content, dumps, reasoning_for,
                             usage_for)
from standin_images import redact_body

PREFIX = "/compatible-mode/v1"
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
PLUGINS = ("standin_batch",)

CONFIG = {"key": "sk-standin-test", "max_concurrent": 0, "verbose": False}


def log(*args):
    if CONFIG["verbose"]:
        print("[standin]", *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------
class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset_hooks = []
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
        for hook in self.reset_hooks:
            hook()

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

    def mark(self, rec, key, value):
        """Add a field to a record after the fact (readers copy under the lock)."""
        with self.lock:
            rec[key] = value

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
# Routes
# --------------------------------------------------------------------------
class Router:
    """Method + path pattern -> function(handler, **params); first match wins."""

    PREFIX = PREFIX

    def __init__(self, state):
        self.routes = []  # (method, regex, fn)
        self.state = state

    def add(self, method, pattern, fn):
        def seg(m):
            name = m.group(1)
            if name.endswith("*"):
                return "(?P<%s>.+)" % name[:-1]
            return "(?P<%s>[^/]+)" % name
        parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\*?\})", pattern)
        rx = "".join(re.sub(r"^\{(.*)\}$", seg, p) if p.startswith("{") else re.escape(p)
                     for p in parts)
        self.routes.append((method.upper(), re.compile(rx + r"\Z"), fn))
        return fn

    def route(self, method, pattern):
        return lambda fn: self.add(method, pattern, fn)

    def on_reset(self, fn):
        self.state.reset_hooks.append(fn)

    def match(self, method, path):
        for m, rx, fn in self.routes:
            if m == method:
                hit = rx.match(path)
                if hit:
                    return fn, {k: urllib.parse.unquote(v) for k, v in hit.groupdict().items()}
        return None, None


ROUTER = Router(STATE)
route = ROUTER.route


def load_plugins(names=PLUGINS, optional=True):
    """Import each module and call its register(ROUTER); with optional, a
    module that does not exist is skipped."""
    for name in names:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if optional and e.name == name:
                continue
            raise
        mod.register(ROUTER)
        log("plugin", name)


# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------
RATE_MSG = "Requests rate limit exceeded, please try again later."
# kind -> (status, message, type, code, with "param")
ERROR_KINDS = {
    "400": (400, ALGO + "Injected invalid parameter.", "invalid_parameter_error",
            "invalid_parameter_error", True),
    "400dif": (400, "Input or output data may contain inappropriate content.",
               "data_inspection_failed", "data_inspection_failed", True),
    "401": (401, AUTH_MESSAGE, "invalid_request_error", "invalid_api_key", True),
    "403": (403, "Access denied.", "AccessDenied", "AccessDenied", True),
    "404": (404, "Model not exist.", "invalid_request_error", "model_not_found", False),
    "408": (408, "Request timed out, please try again later.", "RequestTimeOut",
            "RequestTimeOut", True),
    "409": (409, "The request conflicts with another request in progress, "
            "please try again later.", "Conflict", "Conflict", True),
    "429": (429, RATE_MSG, "limit_requests", "limit_requests", True),
    "429ra": (429, RATE_MSG, "limit_requests", "limit_requests", True),
    "429ram": (429, RATE_MSG, "limit_requests", "limit_requests", True),
    "429date": (429, RATE_MSG, "limit_requests", "limit_requests", True),
    "500": (500, "An internal error has occured, please try again later or contact service "
            "support.", "internal_error", "internal_error", True),
    "503": (503, "Model is unavailable, please try again later.", "ModelUnavailable",
            "ServiceUnavailable", True),
    "504": (504, "Request timed out, please try again later.", "RequestTimeOut",
            "RequestTimeOut", True),
}
OTHER_KINDS = ("ok", "oai", "502html", "reset", "notjson", "redirect", "empty_choices",
               "badschema", "oversize", "truncate", "reset_after_headers", "stall", "error_event")
MODIFIERS = ("delay", "slowheaders", "norid", "sse", "status", "ra", "ram", "radate",
             "sse_crlf", "sse_tiny", "sse_comments", "sse_multiline", "nostream", "badutf8",
             "echo", "model", "fenced", "bare", "sse_event", "sse_ping", "nomodel", "parts",
             "cost")
ECHO_PLACES = ("text", "delta", "id", "header", "msg", "code", "escaped")
ERROR_ONLY = ("sse", "status")


class Step:
    """One parsed step: kind, arg, delay (ms), mods {name: value or True},
    echo (set of places), problems (list of strings)."""

    def __init__(self, kind="ok", arg=""):
        self.kind, self.arg, self.delay = kind, arg, 0.0
        self.mods, self.echo, self.problems = {}, set(), []

    def has(self, name):
        return name in self.mods

    def is_error(self):
        return self.kind in ERROR_KINDS or self.kind == "oai"

    def __repr__(self):
        return "Step(%r, %r, delay=%r, mods=%r, echo=%r)" % (
            self.kind, self.arg, self.delay, self.mods, sorted(self.echo))


def _ms(v):
    try:
        return float(v)
    except ValueError:
        return 0.0


def parse_step(text):
    """'429ra=3+delay=300' -> Step(kind '429ra', arg '3', delay 300.0)."""
    step = Step()
    kind = None
    for tok in text.split("+"):
        name, _, val = tok.strip().partition("=")
        name, val = name.strip(), val.strip()
        if name == "":
            continue
        if name in ERROR_KINDS or name in OTHER_KINDS:
            if kind is not None:
                step.problems.append("two kinds: %s and %s" % (kind, name))
            kind = name
            step.kind, step.arg = name, val
        elif name in ("delay", "slowheaders"):
            step.delay += _ms(val)
        elif name == "echo":
            if val not in ECHO_PLACES:
                step.problems.append("echo=%s: not one of %s" % (val, ",".join(ECHO_PLACES)))
            step.echo.add(val)
        elif name in MODIFIERS:
            step.mods[name] = val if val != "" else True
        else:
            step.problems.append("unknown token %r" % name)
    for m in ("status", "ra", "ram", "radate", "model", "sse_event", "cost"):
        if step.mods.get(m) is True:
            step.problems.append("%s= needs a value" % m)
    for m, v in (("status", step.mods.get("status")), ("oai", step.kind == "oai" and step.arg)):
        if isinstance(v, str) and v and not (v.isdigit() and 100 <= int(v) <= 599):
            step.problems.append("%s=%s: not an HTTP status" % (m, v))
    errorish = step.is_error()
    for m in ERROR_ONLY:
        if m in step.mods and not errorish:
            step.problems.append("%s needs an error kind, not %s" % (m, step.kind))
    if step.has("sse_ping") and not step.has("sse"):
        step.problems.append("sse_ping needs sse")
    if step.echo & {"msg", "code", "escaped"} and not (errorish or step.kind == "error_event"):
        if not (step.kind == "502html" and step.echo <= {"msg"}):
            step.problems.append("echo=msg/code/escaped needs an error kind or error_event "
                                 "(502html takes echo=msg)")
    return step


def parse_fault_model(model):
    if not isinstance(model, str) or not model.startswith("fault/"):
        return None, None
    rest = model[len("fault/"):]
    scenario, sep, steps = rest.rpartition("/")
    if not sep:
        scenario, steps = rest, "ok"
    steps = [s for s in steps.split(",") if s.strip()] or ["ok"]
    return scenario, steps


# Stand-ins for bytes that cannot live in a str: replaced after encoding.
BAD_A, BAD_B, ESCAPED_KEY = "\ue000", "\ue001", "\ue002"
BAD_UTF8_TEXT = "bad utf-8: %s then %s end" % (BAD_A, BAD_B)
BAD_A_BYTES, BAD_B_BYTES = BAD_A.encode(), BAD_B.encode()


def json_u_escape(s):
    """Every character as \\uXXXX (surrogate pairs beyond the BMP)."""
    out = []
    for ch in s:
        b = ch.encode("utf-16-be")
        for i in range(0, len(b), 2):
            out.append("\\u%02x%02x" % (b[i], b[i + 1]))
    return "".join(out)


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
        if self.header_rid is not None:
            self.send_header("x-request-id", self.header_rid)
        self.send_header("req-arrive-time", str(int(self.t0 * 1000)))
        for k, v in headers:
            self.send_header(k, v)
        for k, v in self.extra_headers:
            self.send_header(k, v)
        self.end_headers()

    def send_bytes(self, status, data, ctype="application/json", headers=()):
        hdrs = [("Content-Type", ctype), ("Content-Length", str(len(data)))] + list(headers)
        self.send_raw_headers(status, hdrs)
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status, obj, headers=()):
        self.send_bytes(status, dumps(obj).encode("utf-8"), "application/json", headers)

    def error_obj(self, message, etype, code, param=None, include_param=True, with_rid=True):
        err = {"message": message, "type": etype}
        if include_param:
            err["param"] = param
        err["code"] = code
        obj = {"error": err}
        if with_rid:
            obj["request_id"] = self.body_rid
        return obj

    def send_error_body(self, status, message, etype, code, param=None, headers=(), include_param=True):
        self.send_error_obj(status, self.error_obj(message, etype, code, param, include_param), headers)

    def send_error_obj(self, status, obj, headers=()):
        """Send an error body, shaped by the step's error modifiers if any."""
        step = self.step
        if step is None:
            return self.send_json(status, obj, headers)
        self.decorate_error(obj["error"])
        status = int(step.mods["status"]) if "status" in step.mods else status
        data = dumps(obj)
        if step.has("sse"):
            err = obj["error"]
            ev = {"error": {"code": err.get("code"), "message": err.get("message"),
                            "type": err.get("type")}}
            if "request_id" in obj:
                ev["request_id"] = obj["request_id"]
            nl = "\r\n" if step.has("sse_crlf") else "\n"
            text = "data: " + dumps(ev) + nl + nl
            if step.has("sse_ping"):
                text = "data: ping" + nl + nl + text
            text = self.finish_bytes(text.encode("utf-8"))
            self.send_raw_headers(status, [("Content-Type", "text/event-stream;charset=UTF-8"),
                                           ("Cache-Control", "no-cache"),
                                           ("Transfer-Encoding", "chunked")] + list(headers))
            if self.command != "HEAD":
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(text), text))
            return
        self.send_bytes(status, self.finish_bytes(data.encode("utf-8")), "application/json", headers)

    def decorate_error(self, err):
        """echo=msg/code/escaped put the caller's token into an error."""
        step = self.step
        if step is None or not step.echo & {"msg", "code", "escaped"}:
            return
        if "msg" in step.echo:
            err["message"] = "%s (you sent %s)" % (err.get("message"), self.token())
        if "escaped" in step.echo:
            err["message"] = "%s (you sent %s)" % (err.get("message"), ESCAPED_KEY)
        if "code" in step.echo:
            err["code"] = self.token()

    def finish_bytes(self, data):
        """Put in what a str cannot hold: raw invalid UTF-8, \\u-escaped keys."""
        if self.step is not None:
            if self.step.has("badutf8"):
                data = data.replace(BAD_A_BYTES, b"\xff\xfe").replace(BAD_B_BYTES, b"\xe2\x82")
            if "escaped" in self.step.echo:
                data = data.replace(ESCAPED_KEY.encode(), json_u_escape(self.token()).encode())
        return data

    def send_api_error(self, e):
        self.send_error_body(e.status, e.message, e.etype, e.code, e.param)

    def token(self):
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else auth

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

    def wait(self, seconds):
        """Sleep; False (and the record marked) when the client closed the
        connection meanwhile, so a long delay does not outlive its client."""
        end = time.monotonic() + seconds
        sock = self.connection
        if isinstance(sock, ssl.SSLSocket):
            time.sleep(seconds)  # a TLS peer's bytes cannot be peeked at
            return True
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return True
            if not poller.poll(left * 1000):
                continue
            try:
                peek = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                peek = b""
            if peek:  # a pipelined request: nothing more to watch
                time.sleep(max(0.0, end - time.monotonic()))
                return True
            self.close_connection = True
            if self.record is not None:
                STATE.mark(self.record, "client_gone", True)
            log("client gone during a wait:", self.rid)
            return False

    # -- dispatch ----------------------------------------------------------
    def handle_one_request(self):
        try:
            BaseHTTPRequestHandler.handle_one_request(self)
        except (ConnectionError, BrokenPipeError, socket.timeout, OSError) as e:
            log("connection error:", repr(e))
            self.close_connection = True

    def setup_request(self):
        self.rid = str(uuid.uuid4())
        self.header_rid = self.body_rid = self.rid
        self.extra_headers = []
        self.step = None
        self.record = None
        self.t0 = time.time()
        u = urllib.parse.urlsplit(self.path)
        self.url_path = u.path
        self.query = urllib.parse.parse_qs(u.query)

    def dispatch(self):
        self.setup_request()
        self.raw_body = self.read_body()
        fn, params = ROUTER.match("GET" if self.command == "HEAD" else self.command, self.url_path)
        if fn is None:
            return self.not_found()
        return fn(self, **params)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = dispatch

    def not_found(self):
        self.send_error_body(404, "The requested resource %s was not found." % self.url_path,
                             "invalid_request_error", "not_found")

    def auth_ok(self):
        return (self.headers.get("Authorization") or "") == "Bearer " + CONFIG["key"]

    def send_auth_error(self):
        self.send_error_body(401, AUTH_MESSAGE, "invalid_request_error", "invalid_api_key")

    # -- chat --------------------------------------------------------------
    def chat(self):
        raw = self.raw_body
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
        self.record = {"time": now, "scenario": scenario, "attempt": attempt,
                       "method": self.command, "path": self.path, "request_id": self.rid,
                       "headers": headers, "body": redact_body(body) if parse_ok else None,
                       "raw_size": len(raw)}
        STATE.record(self.record)
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
                step = Step()
            else:
                step = parse_step(steps[min(attempt, len(steps)) - 1])
            self.run_step(body, step, scenario is not None)
        finally:
            STATE.leave()

    def apply_header_modifiers(self, step):
        if step.has("norid"):
            self.header_rid = None
        if "id" in step.echo:
            self.body_rid = self.token()
        if "header" in step.echo:
            self.header_rid = self.token()
        if step.has("ra"):
            self.extra_headers.append(("Retry-After", str(step.mods["ra"])))
        if step.has("ram"):
            self.extra_headers.append(("retry-after-ms", str(step.mods["ram"])))
        if step.has("radate"):
            self.extra_headers.append(("Retry-After", email.utils.formatdate(
                time.time() + _ms(str(step.mods["radate"])), usegmt=True)))

    def run_step(self, body, step, faulty):
        if step.problems:
            return self.send_error_body(400, "standin: bad step: " + "; ".join(step.problems),
                                        "standin_bad_step", "standin_bad_step")
        self.step = step
        self.apply_header_modifiers(step)
        if step.delay > 0 and not self.wait(step.delay / 1000.0):
            return
        chunk_delay = 0.0
        try:
            chunk_delay = float(self.headers.get("X-Standin-Chunk-Delay-Ms") or 0) / 1000.0
        except ValueError:
            pass
        name, arg = step.kind, step.arg
        if name in ERROR_KINDS:
            status, message, etype, code, with_param = ERROR_KINDS[name]
            headers = []
            if name == "429ra":
                headers.append(("Retry-After", arg or "1"))
            elif name == "429ram":
                headers.append(("retry-after-ms", arg or "1000"))
            elif name == "429date":
                when = email.utils.formatdate(time.time() + float(arg or 1), usegmt=True)
                headers.append(("Retry-After", when))
            return self.send_error_obj(status, self.error_obj(message, etype, code, None, with_param),
                                       headers)
        if name == "oai":
            status = int(arg) if arg else 400
            etype = ("server_error" if status >= 500 else "rate_limit_error" if status == 429
                     else "invalid_request_error")
            return self.send_error_obj(status, self.error_obj(
                "Injected OpenAI-style error: the request was refused.", etype, None,
                with_rid=False))
        if name == "502html":
            html = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                    "</body>\r\n</html>\r\n")
            if "msg" in step.echo:
                html = html.replace("<hr>", "<p>upstream saw %s</p><hr>" % self.token())
            html = html.encode()
            return self.send_bytes(502, html, "text/html")
        if name == "reset":
            return self.rst()
        if name == "notjson":
            return self.send_bytes(200, b"this is not json", "application/json")
        if name == "redirect":
            host = (self.headers.get("Host") or "").split(":")[0]
            target = "localhost" if host in ("127.0.0.1", "") else "127.0.0.1"
            loc = "http://%s:%d%s" % (target, self.server.server_address[1], self.path)
            return self.send_json(307, {"redirect": loc}, headers=[("Location", loc)])
        if name == "empty_choices":
            return self.send_json(200, {"id": "chatcmpl-" + self.body_rid, "object": "chat.completion",
                                        "created": int(time.time()), "model": DEFAULT_MODEL,
                                        "choices": [], "system_fingerprint": None})
        # Everything else needs a valid request and a computed answer.
        as_model = step.mods.get("model") or (DEFAULT_MODEL if faulty else None)
        try:
            a = analyse(body, as_model)
        except ApiError as e:
            return self.send_api_error(e)
        model_out = a["model"]
        oversize = None
        if name == "oversize":
            try:
                oversize = int(arg)
            except ValueError:
                oversize = 1 << 20
        fenced = True if step.has("fenced") else False if step.has("bare") else None
        content = build_content(a, model_out, badschema=(name == "badschema"), oversize=oversize,
                                fenced=fenced)
        if step.echo & {"text", "delta"}:
            content = "you sent " + self.token()
        if step.has("badutf8"):
            content = BAD_UTF8_TEXT
        reasoning = reasoning_for(a)
        usage = usage_for(a, content, reasoning)
        if a["stream"] and not step.has("nostream"):
            return self.stream_answer(a, model_out, content, reasoning, usage, step, chunk_delay)
        msg = {"role": "assistant", "content": content}
        if reasoning:
            msg["reasoning_content"] = reasoning
        if step.has("parts"):
            half = len(content) // 2
            msg["content"] = [{"type": "text", "text": content[:half]},
                              {"type": "refusal", "refusal": ""},
                              {"type": "text", "text": content[half:]}]
        if step.has("cost"):
            usage = dict(usage, cost=float(step.mods["cost"]))
        resp = {"id": "chatcmpl-" + self.body_rid, "object": "chat.completion",
                "created": int(time.time()), "model": model_out,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": msg}],
                "usage": usage, "system_fingerprint": None}
        if step.has("nomodel"):
            del resp["model"]
        data = self.finish_bytes(dumps(resp).encode("utf-8"))
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
    def stream_events(self, a, model_out, content, reasoning, usage, step):
        """[(kind, payload)]: kind "content" for content deltas, else "data"."""
        created = int(time.time())
        cid = "chatcmpl-" + self.body_rid

        def chunk(delta, finish=None):
            return {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model_out,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                    "system_fingerprint": None}

        events = []
        for piece in (split_pieces(reasoning) if reasoning else []):
            events.append(("data", dumps(chunk({"content": "", "reasoning_content": piece,
                                                "role": "assistant"}))))
        pieces = split_pieces(content)
        if "delta" in step.echo:
            pieces = [content]  # the token whole, in one delta
        for piece in pieces:
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
        return events

    def stream_answer(self, a, model_out, content, reasoning, usage, step, chunk_delay):
        name, arg = step.kind, step.arg
        events = self.stream_events(a, model_out, content, reasoning, usage, step)
        nl = "\r\n" if step.has("sse_crlf") else "\n"
        tiny = step.has("sse_tiny")
        split_cr = tiny and step.has("sse_crlf")
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
            data = self.finish_bytes(text.encode("utf-8"))
            if not tiny:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                return
            pos = 0
            while pos < len(data):
                n = tiny_sizes[tiny_i[0] % len(tiny_sizes)]
                tiny_i[0] += 1
                cr = data.find(b"\r", pos, pos + n) if split_cr else -1
                if cr >= 0:
                    n = cr - pos + 1
                piece = data[pos:pos + n]
                pos += n
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                if cr >= 0:
                    time.sleep(0.001)  # let the LF arrive in a read of its own

        content_sent = 0
        multiline_done = False
        total = len(events)
        for idx, (kind, payload) in enumerate(events):
            if name == "truncate" and idx >= max(1, total // 2):
                self.close_connection = True
                return  # no terminating chunk
            text = ""
            if step.has("sse_comments"):
                text += ": keep-alive" + nl + nl
                text += "event: message" + nl + "id: %d" % (idx + 1) + nl
            if step.has("sse_event"):
                text += "event: " + step.mods["sse_event"] + nl
            if step.has("sse_multiline") and kind == "content" and not multiline_done:
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
                        if not self.wait(_ms(arg or "0") / 1000.0):
                            return
                    elif name == "error_event":
                        err = {"message": "Output data may contain inappropriate content.",
                               "type": "data_inspection_failed", "param": None,
                               "code": "data_inspection_failed"}
                        self.decorate_error(err)
                        if step.has("sse_event"):   # the native form
                            write("event: error" + nl + "data: " + dumps(
                                {"code": "DataInspectionFailed", "message": err["message"],
                                 "request_id": self.body_rid}) + nl + nl)
                            break
                        write("data: " + dumps({"error": err, "request_id": self.body_rid}) + nl + nl)
                        break
            if chunk_delay > 0 and idx < total - 1:
                time.sleep(chunk_delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# --------------------------------------------------------------------------
# The stand-in's own routes
# --------------------------------------------------------------------------
def _model_entry(mid):
    return {"id": mid, "object": "model", "created": 1735689600, "owned_by": "system"}


@route("GET", "/_standin/scenario/{name*}")
def standin_scenario(h, name):
    with STATE.lock:
        s = STATE.scenarios.get(name) or {"attempts": 0, "times": []}
        out = {"attempts": s["attempts"], "times": list(s["times"])}
    h.send_json(200, out)


@route("GET", "/_standin/requests")
def standin_requests(h):
    sc = h.query.get("scenario")
    with STATE.lock:
        if sc:
            recs = [dict(r) for r in STATE.by_scenario.get(sc[0], [])]
        else:
            recs = [dict(r) for r in STATE.requests]
    h.send_json(200, recs)


@route("GET", "/_standin/stats")
def standin_stats(h):
    with STATE.lock:
        out = {"chat_requests": STATE.chat_requests,
               "models_requests": STATE.models_requests,
               "max_in_flight": STATE.max_in_flight, "in_flight": STATE.in_flight,
               "connections": STATE.connections, "arrivals": list(STATE.arrivals)}
    h.send_json(200, out)


@route("GET", "/_standin/health")
def standin_health(h):
    h.send_json(200, {"ok": True, "pid": os.getpid()})


@route("POST", "/_standin/reset")
def standin_reset(h):
    STATE.reset()
    h.send_json(200, {"ok": True})


@route("POST", "/_standin/shutdown")
def standin_shutdown(h):
    h.close_connection = True
    h.send_json(200, {"ok": True})
    h.wfile.flush()
    threading.Thread(target=h.server.shutdown, daemon=True).start()


@route("GET", PREFIX + "/models")
@route("GET", PREFIX + "/models/")
def models_list(h):
    with STATE.lock:
        STATE.models_requests += 1
    if not h.auth_ok():
        return h.send_auth_error()
    h.send_json(200, {"object": "list", "data": [_model_entry(m) for m in MODELS]})


@route("GET", PREFIX + "/models/{mid*}")
def models_one(h, mid):
    if not h.auth_ok():
        return h.send_auth_error()
    if mid in MODELS:
        return h.send_json(200, _model_entry(mid))
    h.send_json(404, {"error": {"message": "Model not exist.", "type": "invalid_request_error",
                                "code": "model_not_found"}, "request_id": h.rid})


@route("GET", PREFIX + "/chat/completions")
def chat_get(h):
    h.send_error_body(405, "Method Not Allowed", "invalid_request_error", "method_not_allowed")


@route("POST", PREFIX + "/chat/completions")
def chat_post(h):
    h.chat()


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
    ap.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="also load this route module (see 'Adding routes'); repeatable")
    args = ap.parse_args(argv)
    CONFIG.update(key=args.key, max_concurrent=max(0, args.max_concurrent), verbose=args.verbose)
    load_plugins(PLUGINS)
    load_plugins(args.plugin, optional=False)

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
