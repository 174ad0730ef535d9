"""The stand-in's Files and Batch (file input) APIs, as DashScope runs them.

Loaded by spec/support/standin.py (``PLUGINS``).  What it copies is the
checklist of /work/shared/notes/batch-api.md section 16; where the notes
are silent, the choice made here is marked ASSUMED.  Lines of a batch are
answered by the same generator as live chat (standin_answers), so a spec can
prove what its client put in each line.

API (prefix /compatible-mode/v1, Bearer auth):
    POST   /files                 multipart: file, purpose (batch, file-extract,
                                  fine-tune) -> file object, status "processed"
                                  (no status_details, as recorded)
    GET    /files                 ?after, limit [1,2000] (default 2000), purpose ->
                                  {object, data, has_more}: no first_id/last_id
    GET    /files/{id}            file object
    GET    /files/{id}/content    the bytes, with NO Content-Type header; only
                                  file-batch_output-* ids (else 400, ASSUMED)
    DELETE /files/{id}            {id, object:"file", deleted:true}
    POST   /batches               {input_file_id, endpoint, completion_window,
                                  metadata?} -> 200 "validating", every timestamp
                                  null, even when the file will fail validation
    GET    /batches/{id}          the batch, moved on to the clock's "now"
    GET    /batches               ?after, limit [1,100] (default 20), input_file_ids
                                  (comma list, <= 20), status (comma list),
                                  ds_name (substring), create_after/create_before
                                  (yyyyMMddHHmmss) -> {object, data, first_id,
                                  last_id, has_more}; nothing found: data null,
                                  first_id/last_id null
    POST   /batches/{id}/cancel   "cancelling" (cancelling_at still null); later
                                  "cancelled" with cancelling_at == cancelled_at

Lifecycle (virtual seconds, see the clock):
    created  -> validating (the create answer)
    first look after validate_s: failed (failed_at == created_at, errors.data
             one entry per bad line, 1-based "line") or in_progress
             (in_progress_at == created_at + validate_s)
    lines run at lines_per_s (stall_after/stall_s freeze request_counts for a
             while); each line's outcome is computed at validation, shown as
             time passes
    all run  -> completed after finalize_s, finalizing_at == completed_at
    past completion_window -> expired: finished lines in the output file;
             unrun lines dropped (expired_unrun "dropped", DashScope's "not run,
             not billed") or written to the error file ("error", OpenAI's way,
             code batch_expired)
    cancel   -> cancelling, then cancelled after cancel_s: finished lines stay
             in the output file, unstarted ones go to the error file
             (code batch_cancelled, ASSUMED: DashScope's code is unknown) and
             count as failed
    output and error files are both named file-batch_output-<24 hex> (as
    recorded); output lines come in a shuffled order (match on custom_id)

Line outcomes: a line whose body the live answer generator refuses (or a
"fail_lines" entry) fails with that status.  failed_lines_to "error" (the
documented way) puts it in the error file as
    {"id", "custom_id", "response": null, "error": {"code", "message"}}
and counts it as failed; "output" (the observed quirk) writes it into the
OUTPUT file as
    {"id", "custom_id", "response": {"status_code": 4xx/5xx, "request_id",
     "body": {"error": {...}, "request_id"}}, "error": null}
while request_counts.failed stays 0.  No reasoning_content in batch output
(notes: S3); a line with "stream" fails with 400 (ASSUMED; DashScope's
handling is unknown).

Validation (file level; codes from the notes where documented, ASSUMED
otherwise): invalid_json_line, missing_required_parameter (custom_id),
invalid_custom_id (> 256 characters), duplicate_custom_id, invalid_method,
url_not_found, mismatched_url (url != endpoint), mismatched_test_url
(batch-test-model <=> /v1/chat/ds-test), mismatched_model,
mismatched_thinking (one enable_thinking per batch), model_not_found
(param body.model), line_too_large (max_line_bytes, 6 MB by default),
too_many_lines (> 50,000; batch-test-model > 100), file_too_large (> 500 MB;
batch-test-model > 1 MB), empty_file.  At create (400, ASSUMED): unknown
input_file_id (404), endpoint not one of the three, completion_window not
^\\d+[hd]$ within 24h..336h.

Stand-in controls (no auth):
    GET/POST /_standin/batch/config   read / merge settings (unknown keys: 400)
    GET/POST /_standin/batch/clock    {"speed": x, "advance_s": s} -> {now, speed}
    GET      /_standin/batch/state    files, batches, uploads (with content up
                                      to keep_content bytes), calls per route,
                                      batches_created
The clock starts at the real time; STANDIN_BATCH_SPEED=x in the environment
sets its speed (virtual seconds per real second); POST /_standin/reset
forgets everything and restores the settings and the clock.

Settings (POST /_standin/batch/config):
    validate_s 0, lines_per_s 10, finalize_s 0, cancel_s 0   virtual seconds
    stall_after null, stall_s 0     request_counts stop at this many lines for
                                    stall_s
    failed_lines_to "error"|"output"    expired_unrun "dropped"|"error"
    fail_lines {custom_id: {"status": 500, "times": 1}}   make a line fail
                                    (times: how many executions; across batches)
    create_faults [..]   one per POST /batches, in order: "reset" (create, then
                         RST: the client cannot know), "cut" (create, then a
                         third of the answer and a RST), "500_after_create",
                         "delay=MS" (create, answer MS real ms later), "500",
                         "429", "400" (not created)
    processing_gets 0    an upload reads "processing" for this many GETs
    max_line_bytes, max_lines, max_file_bytes, max_files (10000)
    shuffle true         keep_content 1048576
"""

import copy
import hashlib
import json
import os
import random
import re
import threading
import time
import uuid

import standin
from standin_answers import ApiError, analyse, build_content, dumps, usage_for

LOCK = threading.RLock()
ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/chat/ds-test")
TEST_MODEL = "batch-test-model"
TEST_URL = "/v1/chat/ds-test"
TERMINAL = ("completed", "failed", "expired", "cancelled")
TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at",
              "failed_at", "expired_at", "cancelling_at", "cancelled_at")
# Beijing's batch models (notes section 5): VL, OCR, the qwen3.5+ series, text.
BATCH_MODELS = {"qwen3-vl-plus", "qwen3-vl-flash", "qwen-vl-ocr", "qwen-vl-ocr-latest",
                "qwen-vl-max", "qwen-vl-max-latest", "qwen-vl-plus", "qwen-vl-plus-latest",
                "qwen-max", "qwen-plus", "qwen-flash", "qwen-turbo", TEST_MODEL}
BATCH_MODEL_RX = re.compile(r"^qwen3\.[5-9]-(max|plus|flash|omni-plus|omni-flash)$")
FILE_PURPOSES = ("batch", "file-extract", "fine-tune")

DEFAULTS = {
    "validate_s": 0.0, "lines_per_s": 10.0, "finalize_s": 0.0, "cancel_s": 0.0,
    "stall_after": None, "stall_s": 0.0,
    "failed_lines_to": "error", "expired_unrun": "dropped",
    "fail_lines": {}, "create_faults": [], "processing_gets": 0,
    "max_line_bytes": 6 * 1024 * 1024, "max_lines": 50000,
    "max_file_bytes": 500 * 1024 * 1024, "max_files": 10000,
    "test_max_lines": 100, "test_max_file_bytes": 1024 * 1024,
    "shuffle": True, "keep_content": 1 << 20,
}
CONFIG = {}
FILES = {}      # id -> {"obj": file object, "data": bytes, "gets": n}
BATCHES = {}    # id -> Batch
UPLOADS = []    # every upload: {file_id, filename, bytes, lines, content?}
CALLS = {}      # "METHOD /route" -> count
COUNTS = {"batches_created": 0}


# --------------------------------------------------------------------------
# The clock
# --------------------------------------------------------------------------
class Clock:
    """Virtual Unix time: real time at start, running `speed` times as fast."""

    def __init__(self):
        self.reset()

    def reset(self):
        try:
            self.speed = float(os.environ.get("STANDIN_BATCH_SPEED") or 1.0)
        except ValueError:
            self.speed = 1.0
        self.base = time.time()
        self.mono = time.monotonic()

    def now(self):
        return self.base + (time.monotonic() - self.mono) * self.speed

    def set_speed(self, speed):
        self.base, self.mono, self.speed = self.now(), time.monotonic(), float(speed)

    def advance(self, seconds):
        self.base += float(seconds)


CLOCK = Clock()


def now_s():
    return int(CLOCK.now())


def hex24():
    return uuid.uuid4().hex[:24]


def reset_all():
    with LOCK:
        CONFIG.clear()
        CONFIG.update(copy.deepcopy(DEFAULTS))
        FILES.clear()
        BATCHES.clear()
        del UPLOADS[:]
        CALLS.clear()
        COUNTS["batches_created"] = 0
        CLOCK.reset()


reset_all()


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------
def parse_multipart(ctype, body):
    """{name: (value bytes, filename or None, content type or None)}."""
    m = re.search(r'boundary="?([^";]+)"?', ctype or "")
    if not m:
        return None
    delim = b"--" + m.group(1).encode()
    parts = {}
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, value = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if value.endswith(b"\r\n"):
            value = value[:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name = re.search(r'\bname="([^"]*)"', disp)
        fname = re.search(r'\bfilename="([^"]*)"', disp)
        if name:
            parts[name.group(1)] = (value, fname.group(1) if fname else None,
                                    headers.get("content-type"))
    return parts


def new_file(data, filename, purpose, prefix="file-batch-"):
    fid = prefix + hex24()
    obj = {"id": fid, "object": "file", "bytes": len(data), "filename": filename,
           "purpose": purpose, "status": "processed", "created_at": now_s()}
    FILES[fid] = {"obj": obj, "data": data, "gets": 0}
    return fid


def file_view(rec, count_get=False):
    obj = dict(rec["obj"])
    if count_get:
        rec["gets"] += 1
    if rec["obj"]["purpose"] == "batch" and rec["gets"] <= CONFIG["processing_gets"] - (0 if count_get else 1):
        obj["status"] = "processing"
    return obj


# --------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------
def window_seconds(w):
    m = re.match(r"^(\d+)([hd])$", w) if isinstance(w, str) else None
    if not m:
        return None
    n = int(m.group(1)) * (3600 if m.group(2) == "h" else 86400)
    return n if 24 * 3600 <= n <= 336 * 3600 else None


def supported_model(model):
    return isinstance(model, str) and (model in BATCH_MODELS or bool(BATCH_MODEL_RX.match(model)))


def validate(data, endpoint):
    """(lines, errors): lines = [(custom_id, body)], errors = BatchError dicts."""
    errors, lines = [], []

    def err(code, message, param=None, line=None):
        errors.append({"code": code, "message": message, "param": param, "line": line})

    if not data.strip():
        err("empty_file", "The input file is empty.")
        return lines, errors
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1].strip() == b"":
        raw_lines.pop()
    is_test = None
    seen, first_model, first_thinking = set(), None, None
    for n, raw in enumerate(raw_lines, 1):
        if len(raw) > CONFIG["max_line_bytes"]:
            err("line_too_large", "Line %d is %d bytes, more than the %d allowed." % (
                n, len(raw), CONFIG["max_line_bytes"]), None, n)
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            obj = None
        if not isinstance(obj, dict):
            err("invalid_json_line", "This line is not parseable as valid JSON.", None, n)
            continue
        cid = obj.get("custom_id")
        if not isinstance(cid, str) or cid == "":
            err("missing_required_parameter", "Missing required parameter: 'custom_id'.",
                "custom_id", n)
        elif len(cid) > 256:
            err("invalid_custom_id", "The custom_id is longer than 256 characters.", "custom_id", n)
        elif cid in seen:
            err("duplicate_custom_id", "The custom_id '%s' for this request is a duplicate of "
                "another request. The custom_id parameter must be unique for each request in a "
                "batch." % cid, "custom_id", n)
        else:
            seen.add(cid)
        if obj.get("method") != "POST":
            err("invalid_method", "The method '%s' is not supported; use POST." % obj.get("method"),
                "method", n)
        url = obj.get("url")
        body = obj.get("body")
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(body, dict):
            err("missing_required_parameter", "Missing required parameter: 'body'.", "body", n)
        if url not in ENDPOINTS:
            err("url_not_found", "The provided url '%s' is not supported by the Batch API." % url,
                "url", n)
        elif model == TEST_MODEL and url != TEST_URL:
            err("mismatched_test_url", "The provided URL '%s' does not match the test model "
                "'%s'." % (url, TEST_MODEL), "url", n)
        elif url == TEST_URL and model != TEST_MODEL:
            err("mismatched_test_url", "The URL '%s' is only for the test model '%s'." % (
                url, TEST_MODEL), "url", n)
        elif url != endpoint:
            err("mismatched_url", "The provided url '%s' does not match the batch endpoint "
                "'%s'." % (url, endpoint), "url", n)
        if isinstance(body, dict):
            if first_model is None:
                first_model, first_thinking = model, body.get("enable_thinking")
                is_test = model == TEST_MODEL
                if not supported_model(model):
                    err("model_not_found", "The model '%s' is not supported by the Batch API."
                        % model, "body.model", n)
            elif model != first_model:
                err("mismatched_model", "The model '%s' for this request does not match the rest "
                    "of the batch. Each batch must contain requests for a single model." % model,
                    "body.model", n)
            elif body.get("enable_thinking") != first_thinking:
                err("mismatched_thinking", "The enable_thinking of this request does not match "
                    "the rest of the batch.", "body.enable_thinking", n)
        lines.append((cid, body, len(raw)))
    max_lines = CONFIG["test_max_lines"] if is_test else CONFIG["max_lines"]
    max_bytes = CONFIG["test_max_file_bytes"] if is_test else CONFIG["max_file_bytes"]
    if len(raw_lines) > max_lines:
        err("too_many_lines", "The input file has %d requests, more than the %d allowed." % (
            len(raw_lines), max_lines))
    if len(data) > max_bytes:
        err("file_too_large", "The input file is %d bytes, more than the %d allowed." % (
            len(data), max_bytes))
    return lines, errors


def test_answer(rid):
    return {"created": now_s(), "usage": {"completion_tokens": 6, "prompt_tokens": 20,
                                          "total_tokens": 26},
            "model": TEST_MODEL, "id": "chatcmpl-" + rid,
            "choices": [{"finish_reason": "stop", "index": 0,
                         "message": {"role": "assistant", "content": "This is a test result."}}],
            "object": "chat.completion"}


def execute(cid, body, endpoint):
    """One line through the live answer generator: (ok, status, payload)."""
    rid = str(uuid.uuid4())
    fault = CONFIG["fail_lines"].get(cid) if isinstance(cid, str) else None
    if fault and fault.get("times", 1) > 0:
        fault["times"] = fault.get("times", 1) - 1
        status = int(fault.get("status", 500))
        code = "internal_error" if status >= 500 else "invalid_parameter_error"
        return False, status, rid, {"error": {"message": "Injected line failure (%d)." % status,
                                              "type": code, "param": None, "code": code},
                                    "request_id": rid}
    if endpoint == TEST_URL:
        return True, 200, rid, test_answer(rid)
    try:
        if body.get("stream") is not None or body.get("stream_options") is not None:
            raise ApiError(400, "The stream parameter is not supported by the Batch API.",
                           "invalid_request_error", "invalid_parameter_error", "stream")
        a = analyse(body)
    except ApiError as e:
        return False, e.status, rid, {"error": {"message": e.message, "type": e.etype,
                                                "param": e.param, "code": e.code},
                                      "request_id": rid}
    content = build_content(a, a["model"])
    usage = usage_for(a, content, "")
    return True, 200, rid, {
        "created": now_s(), "usage": usage, "model": a["model"], "id": "chatcmpl-" + rid,
        "choices": [{"finish_reason": "stop", "index": 0,
                     "message": {"role": "assistant", "content": content}}],
        "object": "chat.completion"}


class Batch:
    def __init__(self, bid, req, created):
        self.id = bid
        self.input_file_id = req["input_file_id"]
        self.endpoint = req["endpoint"]
        self.window = req["completion_window"]
        self.window_s = window_seconds(self.window)
        self.metadata = req.get("metadata")
        self.created = CLOCK.now()   # exact; created_at is its whole seconds
        self.status = "validating"
        self.ts = {k: None for k in TIMESTAMPS}
        self.ts["created_at"] = created if created is not None else int(self.created)
        self.errors = None
        self.outcomes = None      # [(custom_id, ok, status, rid, payload)] in line order
        self.counts = {"total": 0, "completed": 0, "failed": 0}
        self.output_file_id = self.error_file_id = None
        self.cancel_at = None     # virtual time of the cancel request
        self.run_start = None
        rec = FILES.get(self.input_file_id)
        self.data = rec["data"] if rec else b""

    # -- time ----------------------------------------------------------------
    def done_at(self, t):
        """Lines finished by virtual time t (stall included)."""
        if self.run_start is None or t < self.run_start:
            return 0
        elapsed = t - self.run_start
        rate = max(float(CONFIG["lines_per_s"]), 1e-9)
        stall_after, stall_s = CONFIG["stall_after"], float(CONFIG["stall_s"] or 0)
        if stall_after is not None and stall_s > 0:
            t_stall = stall_after / rate
            if elapsed > t_stall:
                elapsed = max(t_stall, elapsed - stall_s)
        return min(len(self.outcomes), int(elapsed * rate + 1e-9))

    def finish_time(self):
        """Virtual time at which the last line finishes."""
        rate = max(float(CONFIG["lines_per_s"]), 1e-9)
        extra = 0.0
        if CONFIG["stall_after"] is not None and len(self.outcomes) > CONFIG["stall_after"]:
            extra = float(CONFIG["stall_s"] or 0)
        return self.run_start + len(self.outcomes) / rate + extra

    def advance(self):
        t = CLOCK.now()
        if self.status in TERMINAL:
            return
        if self.status == "validating":
            if t < self.created + float(CONFIG["validate_s"]):
                return
            self.run_validation()
            if self.status == "failed":
                return
        if self.status in ("in_progress", "finalizing"):
            deadline = self.created + self.window_s
            finish = self.finish_time()
            if finish > deadline and t >= deadline:
                return self.settle("expired", self.done_at(deadline), int(deadline))
            if t >= finish:
                if t >= finish + float(CONFIG["finalize_s"]):
                    return self.settle("completed", len(self.outcomes),
                                       int(finish + float(CONFIG["finalize_s"])))
                self.status = "finalizing"
            self.show_counts(self.done_at(t))
        if self.status == "cancelling":
            if t >= self.cancel_at + float(CONFIG["cancel_s"]):
                self.settle("cancelled", self.done_at(self.cancel_at),
                            int(self.cancel_at + float(CONFIG["cancel_s"])))

    def run_validation(self):
        lines, errors = validate(self.data, self.endpoint)
        if errors:
            self.status = "failed"
            self.ts["failed_at"] = self.ts["created_at"]
            self.errors = {"object": "list", "data": errors}
            return
        self.outcomes = [(cid, ) + execute(cid, body, self.endpoint) for cid, body, _ in lines]
        self.status = "in_progress"
        self.run_start = self.created + float(CONFIG["validate_s"])
        self.ts["in_progress_at"] = int(self.run_start)
        self.counts["total"] = len(self.outcomes)

    def show_counts(self, done):
        quirk = CONFIG["failed_lines_to"] == "output"
        ok = sum(1 for o in self.outcomes[:done] if o[1] or quirk)
        self.counts["completed"] = ok
        self.counts["failed"] = done - ok

    def settle(self, status, done, when):
        quirk = CONFIG["failed_lines_to"] == "output"
        out, err = [], []
        ok_n = failed_n = 0
        for i, (cid, ok, code, rid, payload) in enumerate(self.outcomes):
            if i < done:
                if ok or quirk:
                    out.append({"id": rid, "custom_id": cid,
                                "response": {"status_code": code, "request_id": rid,
                                             "body": payload}, "error": None})
                    ok_n += 1
                else:
                    e = payload["error"]
                    err.append({"id": rid, "custom_id": cid, "response": None,
                                "error": {"code": e.get("code"), "message": e.get("message")}})
                    failed_n += 1
            elif status == "cancelled" or (status == "expired" and
                                           CONFIG["expired_unrun"] == "error"):
                code = "batch_cancelled" if status == "cancelled" else "batch_expired"
                msg = ("This request was not run: the batch was cancelled." if status == "cancelled"
                       else "This request was not run before the batch expired.")
                err.append({"id": str(uuid.uuid4()), "custom_id": cid, "response": None,
                            "error": {"code": code, "message": msg}})
                failed_n += 1
        if CONFIG["shuffle"]:  # never in input order, so order cannot pass for matching
            for lines, seed in ((out, self.id), (err, self.id + "e")):
                before = list(lines)
                random.Random(seed).shuffle(lines)
                if lines == before:
                    lines.reverse()

        def write(lines):
            if not lines:
                return None
            data = "".join(dumps(x) + "\n" for x in lines).encode("utf-8")
            return new_file(data, "result.jsonl", "batch_output", "file-batch_output-")

        self.output_file_id = write(out)
        self.error_file_id = write(err)
        self.counts = {"total": len(self.outcomes), "completed": ok_n, "failed": failed_n}
        self.status = status
        if status == "completed":
            self.ts["finalizing_at"] = self.ts["completed_at"] = when
        elif status == "expired":
            self.ts["expired_at"] = when
        elif status == "cancelled":
            self.ts["cancelling_at"] = self.ts["cancelled_at"] = when

    def cancel(self):
        self.advance()
        if self.status not in ("validating", "in_progress"):
            return False
        if self.status == "validating":
            self.run_validation()
            if self.status == "failed":
                return False
        self.cancel_at = CLOCK.now()
        self.status = "cancelling"
        return True

    def view(self):
        obj = {"id": self.id, "object": "batch", "endpoint": self.endpoint,
               "errors": self.errors, "input_file_id": self.input_file_id,
               "completion_window": self.window, "status": self.status,
               "output_file_id": self.output_file_id, "error_file_id": self.error_file_id}
        obj.update(self.ts)
        obj["request_counts"] = dict(self.counts)
        obj["metadata"] = self.metadata
        return obj


def stamp(text):
    """yyyyMMddHHmmss -> Unix seconds (UTC, ASSUMED; DashScope does not say)."""
    try:
        return int(time.mktime(time.strptime(text, "%Y%m%d%H%M%S")) - time.timezone)
    except (ValueError, OverflowError):
        return None


# --------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------
def record(h, route):
    """What arrived, in the server's request log (the key redacted)."""
    headers = {k.lower(): v for k, v in h.headers.items()}
    if "authorization" in headers and h.auth_ok():
        headers["authorization"] = "Bearer <redacted>"
    rec = {"time": time.time(), "scenario": None, "attempt": None, "method": h.command,
           "path": h.path, "request_id": h.rid, "headers": headers, "route": route,
           "raw_size": len(h.raw_body)}
    ctype = headers.get("content-type", "")
    if ctype.startswith("application/json") and h.raw_body:
        try:
            rec["body"] = json.loads(h.raw_body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            rec["body"] = None
    elif ctype.startswith("multipart/form-data"):
        parts = parse_multipart(ctype, h.raw_body) or {}
        rec["form"] = {k: ({"filename": f, "type": t, "bytes": len(v),
                            "sha256": hashlib.sha256(v).hexdigest()} if f is not None
                           else v.decode("utf-8", "replace"))
                       for k, (v, f, t) in parts.items()}
    standin.STATE.record(rec)
    with LOCK:
        CALLS[route] = CALLS.get(route, 0) + 1
    with standin.STATE.lock:
        standin.STATE.other_requests += 1


def bad_request(h, message, param=None, code="invalid_request_error", status=400):
    h.send_error_body(status, message, "invalid_request_error", code, param)


def int_arg(h, name, default, lo, hi):
    v = (h.query.get(name) or [None])[0]
    if v is None:
        return default, None
    try:
        n = int(v)
    except ValueError:
        return None, "%s must be an integer" % name
    if not lo <= n <= hi:
        return None, "%s must be in [%d, %d]" % (name, lo, hi)
    return n, None


def page(items, h, default, hi):
    """items newest first -> (slice, has_more) after ?after and ?limit."""
    limit, problem = int_arg(h, "limit", default, 1, hi)
    if problem:
        return None, problem
    after = (h.query.get("after") or [None])[0]
    if after:
        ids = [x["id"] for x in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    return (items[:limit], len(items) > limit), None


def register(router):
    P = router.PREFIX

    def api(method, path, route):
        def deco(fn):
            def wrapped(h, **kw):
                record(h, route)
                if not h.auth_ok():
                    return h.send_auth_error()
                return fn(h, **kw)
            router.add(method, P + path, wrapped)
            return fn
        return deco

    # -- files ---------------------------------------------------------------
    @api("POST", "/files", "POST /files")
    def upload(h):
        parts = parse_multipart(h.headers.get("Content-Type"), h.raw_body)
        if parts is None:
            return bad_request(h, "The request must be multipart/form-data.")
        purpose = parts.get("purpose", (b"", None, None))[0].decode("utf-8", "replace")
        if "file" not in parts or parts["file"][1] is None:
            return bad_request(h, "Missing required parameter: 'file'.", "file")
        if purpose not in FILE_PURPOSES:
            return bad_request(h, "'purpose' must be one of %s" % ", ".join(FILE_PURPOSES),
                               "purpose")
        data, fname, ctype = parts["file"]
        with LOCK:
            live = sum(1 for f in FILES.values() if f["obj"]["purpose"] != "batch_output")
            if live >= CONFIG["max_files"]:
                return bad_request(h, "Upload file number exceed limit.")
            if purpose == "batch" and len(data) > CONFIG["max_file_bytes"]:
                return bad_request(h, "Upload file capacity exceed limit.")
            fid = new_file(data, fname, purpose)
            up = {"file_id": fid, "filename": fname, "bytes": len(data), "type": ctype,
                  "lines": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}
            if len(data) <= CONFIG["keep_content"]:
                up["content"] = data.decode("utf-8", "replace")
            UPLOADS.append(up)
            obj = file_view(FILES[fid])
        h.send_json(200, obj)

    @api("GET", "/files", "GET /files")
    def list_files(h):
        purpose = (h.query.get("purpose") or [None])[0]
        with LOCK:
            items = [file_view(f) for f in FILES.values()
                     if purpose is None or f["obj"]["purpose"] == purpose]
        items.sort(key=lambda o: (o["created_at"], o["id"]), reverse=True)
        got, problem = page(items, h, 2000, 2000)
        if problem:
            return bad_request(h, problem, "limit")
        h.send_json(200, {"object": "list", "data": got[0], "has_more": got[1]})

    @api("GET", "/files/{file_id}", "GET /files/{id}")
    def get_file(h, file_id):
        with LOCK:
            rec = FILES.get(file_id)
            obj = file_view(rec, count_get=True) if rec else None
        if obj is None:
            return bad_request(h, "File not found: %s" % file_id, None, "not_found", 404)
        h.send_json(200, obj)

    @api("GET", "/files/{file_id}/content", "GET /files/{id}/content")
    def file_content(h, file_id):
        with LOCK:
            rec = FILES.get(file_id)
        if rec is None:
            return bad_request(h, "File not found: %s" % file_id, None, "not_found", 404)
        if not file_id.startswith("file-batch_output"):
            return bad_request(h, "Only batch output files can be downloaded.", "file_id")
        data = rec["data"]
        # recorded: no Content-Type on this response
        h.send_raw_headers(200, [("Content-Length", str(len(data)))])
        if h.command != "HEAD":
            h.wfile.write(data)

    @api("DELETE", "/files/{file_id}", "DELETE /files/{id}")
    def delete_file(h, file_id):
        with LOCK:
            rec = FILES.pop(file_id, None)
        if rec is None:
            return bad_request(h, "File not found: %s" % file_id, None, "not_found", 404)
        h.send_json(200, {"id": file_id, "object": "file", "deleted": True})

    # -- batches -------------------------------------------------------------
    @api("POST", "/batches", "POST /batches")
    def create_batch(h):
        try:
            req = json.loads(h.raw_body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            req = None
        if not isinstance(req, dict):
            return bad_request(h, "The request body must be a JSON object.")
        for k in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(req.get(k), str) or not req.get(k):
                return bad_request(h, "Missing required parameter: '%s'." % k, k)
        if req["endpoint"] not in ENDPOINTS:
            return bad_request(h, "The endpoint '%s' is not supported by the Batch API."
                               % req["endpoint"], "endpoint")
        if window_seconds(req["completion_window"]) is None:
            return bad_request(h, "completion_window must be a whole number of hours or days "
                               "(e.g. 24h, 14d) between 24h and 336h.", "completion_window")
        md = req.get("metadata")
        if md is not None and not (isinstance(md, dict) and
                                   all(isinstance(v, str) for v in md.values())):
            return bad_request(h, "metadata must be an object of strings.", "metadata")
        with LOCK:
            fault = CONFIG["create_faults"].pop(0) if CONFIG["create_faults"] else None
            if fault in ("500", "429", "400"):
                status = int(fault)
                msg, code = {
                    429: ("Requests rate limit exceeded, please try again later.", "limit_requests"),
                    500: ("An internal error has occured, please try again later.", "internal_error"),
                    400: ("Injected refusal of this batch.", "invalid_request_error")}[status]
                h.send_error_body(status, msg, code, code)
                return
            rec = FILES.get(req["input_file_id"])
            if rec is None or rec["obj"]["purpose"] != "batch":
                return bad_request(h, "File not found: %s" % req["input_file_id"],
                                   "input_file_id", "not_found", 404)
            bid = "batch_" + str(uuid.uuid4())
            b = Batch(bid, req, None)
            BATCHES[bid] = b
            COUNTS["batches_created"] += 1
            obj = b.view()
        if fault == "reset":
            return h.rst()
        if fault == "cut":
            data = dumps(obj).encode("utf-8")
            h.send_raw_headers(200, [("Content-Type", "application/json;charset=UTF-8"),
                                     ("Content-Length", str(len(data)))])
            h.wfile.write(data[:len(data) // 3])
            h.wfile.flush()
            time.sleep(0.05)
            return h.rst()
        if fault == "500_after_create":
            return h.send_error_body(500, "An internal error has occured, please try again "
                                     "later.", "internal_error", "internal_error")
        if fault and fault.startswith("delay="):
            if not h.wait(float(fault[6:]) / 1000.0):
                return
        h.send_json(200, obj, headers=[("req-cost-time", "12")])

    @api("GET", "/batches", "GET /batches")
    def list_batches(h):
        q = h.query
        ids = (q.get("input_file_ids") or [""])[0]
        ids = [x for x in ids.split(",") if x]
        if len(ids) > 20:
            return bad_request(h, "input_file_ids takes at most 20 ids.", "input_file_ids")
        statuses = [x for x in (q.get("status") or [""])[0].split(",") if x]
        name = (q.get("ds_name") or [None])[0]
        after_t = stamp((q.get("create_after") or [""])[0]) if q.get("create_after") else None
        before_t = stamp((q.get("create_before") or [""])[0]) if q.get("create_before") else None
        with LOCK:
            items = []
            for b in BATCHES.values():
                b.advance()
                if ids and b.input_file_id not in ids:
                    continue
                if statuses and b.status not in statuses:
                    continue
                if name and name not in ((b.metadata or {}).get("ds_name") or ""):
                    continue
                if after_t is not None and b.created < after_t:
                    continue
                if before_t is not None and b.created > before_t:
                    continue
                items.append(b.view())
        items.sort(key=lambda o: (o["created_at"], o["id"]), reverse=True)
        got, problem = page(items, h, 20, 100)
        if problem:
            return bad_request(h, problem, "limit")
        data, more = got
        h.send_json(200, {"object": "list", "data": data or None,
                          "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": more})

    @api("GET", "/batches/{batch_id}", "GET /batches/{id}")
    def get_batch(h, batch_id):
        with LOCK:
            b = BATCHES.get(batch_id)
            if b is not None:
                b.advance()
                obj = b.view()
        if b is None:
            return bad_request(h, "Batch not found: %s" % batch_id, None, "not_found", 404)
        h.send_json(200, obj)

    @api("POST", "/batches/{batch_id}/cancel", "POST /batches/{id}/cancel")
    def cancel_batch(h, batch_id):
        with LOCK:
            b = BATCHES.get(batch_id)
            ok = b.cancel() if b is not None else None
            obj = b.view() if b is not None else None
        if b is None:
            return bad_request(h, "Batch not found: %s" % batch_id, None, "not_found", 404)
        if not ok:
            return bad_request(h, "The batch cannot be cancelled in status %s." % obj["status"])
        obj["cancelling_at"] = None   # recorded: still null in the cancel answer
        h.send_json(200, obj)

    # -- controls ------------------------------------------------------------
    @router.route("GET", "/_standin/batch/config")
    def get_config(h):
        with LOCK:
            h.send_json(200, CONFIG)

    @router.route("POST", "/_standin/batch/config")
    def set_config(h):
        try:
            new = json.loads(h.raw_body.decode("utf-8") or "{}")
        except (ValueError, UnicodeDecodeError):
            new = None
        if not isinstance(new, dict) or any(k not in DEFAULTS for k in new):
            unknown = sorted(k for k in (new or {}) if k not in DEFAULTS)
            return h.send_json(400, {"error": "unknown settings: %s" % ", ".join(unknown)})
        with LOCK:
            CONFIG.update(copy.deepcopy(new))
            h.send_json(200, CONFIG)

    @router.route("GET", "/_standin/batch/clock")
    @router.route("POST", "/_standin/batch/clock")
    def clock(h):
        try:
            new = json.loads(h.raw_body.decode("utf-8") or "{}")
        except (ValueError, UnicodeDecodeError):
            return h.send_json(400, {"error": "not JSON"})
        with LOCK:
            if "speed" in new:
                CLOCK.set_speed(new["speed"])
            if "advance_s" in new:
                CLOCK.advance(new["advance_s"])
            h.send_json(200, {"now": CLOCK.now(), "speed": CLOCK.speed})

    @router.route("GET", "/_standin/batch/state")
    def state(h):
        with LOCK:
            for b in BATCHES.values():
                b.advance()
            out = {"files": sorted((dict(f["obj"]) for f in FILES.values()),
                                   key=lambda o: o["id"]),
                   "batches": [b.view() for b in BATCHES.values()],
                   "uploads": UPLOADS, "calls": CALLS,
                   "batches_created": COUNTS["batches_created"], "now": CLOCK.now()}
            h.send_json(200, out)

    router.on_reset(reset_all)
