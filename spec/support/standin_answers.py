"""Answer generator of the DashScope stand-in (spec/support/standin.py).

Validates a chat request the way DashScope's OpenAI-compatible mode does
(``analyse``), then computes what the "model" says (``build_content``,
``reasoning_for``, ``usage_for``).  Answers are computed from what arrived,
so a spec can prove what its client sent.  Nothing here knows about HTTP,
sockets or fault steps.

Model families (``family``): the model name decides the conventions.
    qwen3-vl-*               relative grounding (0..1000), bare JSON; thinking
                             allowed streamed and non-streamed; frame lists
                             up to 2000 (plus/flash) or 512; "-thinking"
                             models always think
    qwen3.5-* .. qwen3.9-*   the same with frame lists up to 8000
    qwen-vl-max, -plus (and their -latest / 2025-08 snapshots)
                             absolute grounding in the pixels the model saw,
                             32-pixel grid (the notes list these with 32x32
                             tokens); ```json fenced
    other qwen-vl-max-* / qwen-vl-plus-* snapshots, qwen2.5-vl-*
                             the same with a 28-pixel grid
    qvq-*                    28-pixel grid, absolute, fenced; streaming only;
                             always thinks and refuses enable_thinking
    qwen-vl-ocr*, *-ocr      OCR lines; one user message, no system message,
                             no json_object, no thinking. Grounding and the
                             seen size: qwen-vl-ocr, -latest, -2025-11-20
                             (Qwen3-VL based) as qwen3-vl on a 32 grid; the
                             older dated snapshots absolute on a 28 grid
    anything else            like qwen3-vl, but thinking only when streamed
                             (the stand-in's behaviour before families)

Checks (400, invalid_parameter_error unless noted), in order: model and
messages present (invalid_request_error); temperature in [0, 2);
max_tokens in [1, 32768]; QVQ: stream only (type invalid_request_error)
and no enable_thinking at all; json_object with enable_thinking; thinking
without stream where the family does not allow it; every message: role one
of system/assistant/user/tool/function, content a string or a list of
text/image_url/video/video_url parts (null only for assistant); OCR rules;
json_object needs "json" in some message; every image and video frame:
data URL <= 10 MB, base64, decodable header, sides > 10 px, aspect <=
200:1, OCR <= 15.68 MP, min_pixels/max_pixels positive integers; videos:
fps in [0.1, 10] (default 2), frame lists of 4..the family's maximum, at
most 64 videos.

Reasoning: "thinking about <n> image(s)" when enable_thinking is true or
the family always thinks; streamed as reasoning_content deltas before the
content, non-streamed as message.reasoning_content.

Answer, in order of precedence:
    oversize=N step          N bytes of lorem ipsum
    JSON Schema in a prompt  a document generated from it (standin_schema)
    grounding prompt         the last user message's text contains "bbox_2d"
                             and/or "point_2d": a JSON list
                               [{"bbox_2d":[x1,y1,x2,y2],"label":"target"},
                                {"point_2d":[x,y],"label":"center"}]
                             (only the kinds asked for) for a target at the
                             fractions (0.25,0.25)-(0.50,0.75) of the last
                             image with a known size (from its header, EXIF
                             orientation ignored), centre (0.375,0.5).
                             Relative families answer round(f*1000);
                             absolute ones round(f*side) of smart_resize(h,
                             w) with the part's min_pixels/max_pixels or the
                             family's defaults (vl_high_resolution_images
                             lifts max_pixels to the family's cap).  An
                             empty list when no image has a known size.
    OCR model                one line per image, in order:
                               "LINE <i>: image <sha256[:8]> <w>x<h> seen <w'>x<h'>"
                             (w'/h': smart_resize with the OCR grid and the
                             part's min/max_pixels), "LINE <i>: image url <url>"
                             for URLs, "LINE 1: no image" without images.
                             A prompt containing "[unreadable]" gets
                             "LINE <i>: [unreadable] image url <url>" (the
                             stand-in fetches nothing); one containing
                             "NOTES:" a last line "NOTES: <n> image(s) read
                             from their bytes, confident; <u> given by URL
                             not read"
    otherwise                "STANDIN " + a JSON report (bare in json_object
                             mode), keys sorted:
                               images  every image, in order: format, width,
                                       height, bytes, sha256, mime,
                                       orientation (+min_pixels, max_pixels,
                                       detail when sent) or {url}
                               videos  every video (see video_report)
                               turns   every message in order: role, text
                                       (its text parts joined by "\\n"),
                                       images, videos
                               prompt  the last user message's text
                               system  the first system message's text
                               model   the answering model

Assumptions (the notes in /work/shared/notes/dashscope-api.md document the
limits, not these details):
    - smart_resize defaults per family: min_pixels 4 tokens, max_pixels
      1280 tokens on the 28 and 32 Qwen2.5-VL grids (documented: 1,003,520
      for 28; the 32-grid qwen-vl-max/-plus value is assumed the same token
      count, 1,310,720), 2560 tokens for Qwen3-VL (documented 2,621,440),
      OCR 3,072 / 8,388,608 (documented, 32 grid; the same 3 / 8192
      tokens on the older snapshots' 28 grid); a part's max_pixels is capped at
      16384 tokens (the documented per-image maximum) rather than refused.
    - Grounding coordinates round half up; fenced for Qwen2.5-VL-era and
      QVQ, bare for Qwen3-VL (either can be forced with fenced / bare).
    - Refusal texts that DashScope does not document (QVQ with
      enable_thinking, OCR refusals, video limits, roles and part shapes
      apart from the "developer" one) are the stand-in's own wording; the
      status (400) and code (invalid_parameter_error) follow the notes.

Python 3 standard library only.
"""

import json
import math
import re

from standin_images import (ImageError, decode_data_url, inspect_image, sha256_hex,
                            smart_resize, sniff_video)
from standin_schema import find_schema, generate_from_schema

DATA_URI_LIMIT = 10485760
ALGO = "<400> InternalError.Algo.InvalidParameter: "
MSG_BAD_URL = "The provided URL does not appear to be valid. Ensure it is correctly formatted."
MSG_DECODE = ALGO + "Failed to decode the image during the data inspection."
ROLES = ("system", "assistant", "user", "tool", "function")
ROLE_LIST = "['system','assistant','user','tool','function']"
PART_TYPES = ("text", "image_url", "video", "video_url")
MSG_QVQ_STREAM = ("This model only support stream mode, please enable the stream parameter "
                  "to access the model. ")
MAX_VIDEOS = 64
FPS_RANGE = (0.1, 10.0)
MAX_ASPECT = 200
OCR_MAX_IMAGE_PIXELS = 15680000


def dumps(obj, sort_keys=False):
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False)


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


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------
# Model families
# --------------------------------------------------------------------------
def _fam(name, factor, coords, fenced, max_frames, thinking, max_tokens=1280,
         stream_only=False, refuse_thinking_param=False, ocr=False,
         min_pixels=None, max_pixels=None):
    return {
        "name": name, "factor": factor, "coords": coords, "fenced": fenced,
        "max_frames": max_frames,
        # "hybrid": enable_thinking streamed or not; "always": reasoning
        # without asking; "stream": only streamed (the old rule); "never".
        "thinking": thinking, "stream_only": stream_only,
        "refuse_thinking_param": refuse_thinking_param, "ocr": ocr,
        "min_pixels": min_pixels or 4 * factor * factor,
        "max_pixels": max_pixels or max_tokens * factor * factor,
        "max_pixels_cap": 16384 * factor * factor,
    }


# Snapshots the notes list with a 32x32 pixel token although they are
# Qwen2.5-VL-era names.
_QWEN_VL_32 = ("qwen-vl-max", "qwen-vl-max-latest", "qwen-vl-max-2025-08-13",
               "qwen-vl-plus", "qwen-vl-plus-latest", "qwen-vl-plus-2025-08-15")
# The dated OCR snapshots before the Qwen3-VL based qwen-vl-ocr-2025-11-20
# (which qwen-vl-ocr and -latest follow): Qwen2.5-VL based, 28x28 tokens.
_OLD_OCR = re.compile(r"qwen-vl-ocr-(2024|2025-0|1028$|0413$|0828$)")
_FAMILY_CACHE = {}


def family(model):
    """The conventions of a model name (see the module docstring)."""
    f = _FAMILY_CACHE.get(model)
    if f is None:
        f = _family(model.lower())
        if len(_FAMILY_CACHE) < 1000:
            _FAMILY_CACHE[model] = f
    return f


def _family(m):
    if m.startswith("qvq"):
        return _fam("qvq", 28, "absolute", True, 512, "always", stream_only=True,
                    refuse_thinking_param=True)
    if m.startswith("qwen-vl-ocr") or m.endswith("-ocr") or "-ocr-" in m:
        if _OLD_OCR.match(m):
            return _fam("ocr", 28, "absolute", True, 80, "never", ocr=True,
                        min_pixels=3 * 28 * 28, max_pixels=8192 * 28 * 28)
        return _fam("ocr", 32, "relative", False, 80, "never", ocr=True,
                    min_pixels=3072, max_pixels=8388608)
    if m.startswith("qwen3-vl"):
        frames = 2000 if m.startswith(("qwen3-vl-plus", "qwen3-vl-flash")) else 512
        think = "always" if "-thinking" in m else "hybrid"
        return _fam("qwen3-vl", 32, "relative", False, frames, think, max_tokens=2560)
    if re.match(r"qwen3\.[5-9]", m):
        return _fam("qwen3.5", 32, "relative", False, 8000, "hybrid", max_tokens=2560)
    if m in _QWEN_VL_32:
        return _fam("qwen2.5-vl", 32, "absolute", True, 512, "stream")
    if m.startswith(("qwen-vl-max", "qwen-vl-plus", "qwen2.5-vl")):
        return _fam("qwen2.5-vl", 28, "absolute", True, 512, "stream")
    return _fam("other", 32, "relative", False, 80, "stream", max_tokens=2560)


# --------------------------------------------------------------------------
# Request validation
# --------------------------------------------------------------------------
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


def _check_message_shape(i, m):
    role = m.get("role")
    if not isinstance(role, str):
        raise bad("Required parameter(messages[%d].role) missing or invalid" % i)
    if role not in ROLES:
        raise bad("%s is not one of %s" % (role, ROLE_LIST))
    c = m.get("content")
    if c is None:
        if role == "assistant":  # tool calls only
            return
        raise bad("Required parameter(messages[%d].content) missing or invalid" % i)
    if isinstance(c, str):
        return
    if not isinstance(c, list):
        raise bad("Required parameter(messages[%d].content) missing or invalid" % i)
    for part in c:
        if isinstance(part, str):
            continue
        if not isinstance(part, dict):
            raise bad("Required parameter(messages[%d].content) missing or invalid" % i)
        t = part.get("type")
        if t not in PART_TYPES:
            raise bad("%s is not one of ['text','image_url','video','video_url']" % (t,))
        if t == "text" and not isinstance(part.get("text"), str):
            raise bad("Required parameter(messages[%d].content.text) missing or invalid" % i)


def _pixel_fields(part, holder, rep):
    for k in ("min_pixels", "max_pixels"):
        if k in part:
            v = part[k]
        elif isinstance(holder, dict) and k in holder:
            v = holder[k]
        else:
            continue
        if not _is_int(v) or v < 1:
            raise bad(ALGO + "%s must be a positive integer" % k)
        rep[k] = v


def _data_url_bytes(url, decode_msg):
    """(mime, raw) of a data URL item: the service's size limit, then the
    decoding; a payload that does not decode gets decode_msg."""
    if len(url) > DATA_URI_LIMIT:
        raise bad("Exceeded limit on max bytes per data-uri item : %d" % DATA_URI_LIMIT)
    try:
        return decode_data_url(url)
    except ValueError:
        raise bad(MSG_BAD_URL)
    except ImageError:
        raise bad(decode_msg)


def _frame_from_url(url, fam, what="image"):
    """Report of one image given by URL or data URL (an image or a video frame)."""
    if not isinstance(url, str) or not url:
        raise bad(MSG_BAD_URL)
    low = url[:8].lower()
    if low.startswith("http://") or low.startswith("https://"):
        return {"url": url}
    if not low.startswith("data:"):
        raise bad(MSG_BAD_URL)
    mime, raw = _data_url_bytes(url, MSG_DECODE)
    try:
        fmt, w, h, orient = inspect_image(raw)
    except ImageError:
        raise bad(MSG_DECODE)
    if w <= 10 or h <= 10:
        raise bad(ALGO + "The image length and width do not meet the model restrictions. "
                  "[height:%d or width:%d must be larger than 10]" % (h, w))
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise bad(ALGO + "The image length and width do not meet the model restrictions. "
                  "[absolute aspect ratio must be smaller than %d, got %d x %d]" % (MAX_ASPECT, w, h))
    if fam["ocr"] and w * h > OCR_MAX_IMAGE_PIXELS:
        raise bad(ALGO + "The image length and width do not meet the model restrictions. "
                  "[total pixels %d exceed %d]" % (w * h, OCR_MAX_IMAGE_PIXELS))
    return {"format": fmt, "width": w, "height": h, "bytes": len(raw),
            "sha256": sha256_hex(raw), "mime": mime, "orientation": orient}


def image_report(part, fam):
    iu = part.get("image_url")
    detail = None
    if isinstance(iu, dict):
        url = iu.get("url")
        detail = iu.get("detail")
    else:
        url = iu
    rep = _frame_from_url(url, fam)
    _pixel_fields(part, iu, rep)
    if detail is not None:
        rep["detail"] = detail
    return rep


def _fps(part):
    fps = part.get("fps", 2.0)
    if not _is_num(fps) or not (FPS_RANGE[0] <= fps <= FPS_RANGE[1]):
        raise bad(ALGO + "The fps parameter should be in [0.1, 10], got %s" % (dumps(fps),))
    return fps


def video_report(part, fam):
    """{"type":"video","fps","frame_count","frames":[image reports]} for a
    frame list; {"type":"video_url","fps", url | format,bytes,sha256,mime}
    for a video file."""
    fps = _fps(part)
    if part["type"] == "video":
        frames = part.get("video")
        if not isinstance(frames, list) or not frames:
            raise bad(ALGO + "Required parameter(video) missing or invalid")
        lo, hi = 4, fam["max_frames"]
        if not (lo <= len(frames) <= hi):
            raise bad(ALGO + "The number of video frames should be in [%d, %d], got %d"
                      % (lo, hi, len(frames)))
        reps = [_frame_from_url(u, fam) for u in frames]
        rep = {"type": "video", "fps": fps, "frame_count": len(reps), "frames": reps}
    else:
        vu = part.get("video_url")
        url = vu.get("url") if isinstance(vu, dict) else vu
        if not isinstance(url, str) or not url:
            raise bad(MSG_BAD_URL)
        low = url[:8].lower()
        rep = {"type": "video_url", "fps": fps}
        if low.startswith("http://") or low.startswith("https://"):
            rep["url"] = url
        elif low.startswith("data:"):
            mime, raw = _data_url_bytes(url, ALGO + "Failed to decode the video during the data inspection.")
            rep.update({"format": sniff_video(raw), "bytes": len(raw), "sha256": sha256_hex(raw),
                        "mime": mime})
        else:
            raise bad(MSG_BAD_URL)
    return rep


def analyse(body, model=None):
    """Validate a chat request body. Returns an analysis dict or raises ApiError.

    ``model`` overrides the body's model for the family rules (fault
    scenarios answer as qwen3-vl-plus, or as their ``model=`` modifier).
    """
    if not isinstance(body, dict):
        raise bad("Request body must be a JSON object", "invalid_request_error", "invalid_request_error")
    req_model = body.get("model")
    if not isinstance(req_model, str) or not req_model:
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
    model = model or req_model
    fam = family(model)
    rf = body.get("response_format")
    json_mode = isinstance(rf, dict) and rf.get("type") == "json_object"
    thinking = body.get("enable_thinking") is True
    stream = body.get("stream") is True
    if fam["stream_only"] and not stream:
        raise ApiError(400, MSG_QVQ_STREAM, "invalid_request_error", "invalid_parameter_error")
    if fam["refuse_thinking_param"] and "enable_thinking" in body:
        raise ApiError(400, "The enable_thinking parameter is not supported by model %s: "
                       "it always thinks." % model, "invalid_request_error", "invalid_parameter_error")
    if json_mode and thinking:
        raise bad("Json mode response is not supported when enable_thinking is true")
    if thinking and not stream and fam["thinking"] not in ("hybrid", "always"):
        raise bad("parameter.enable_thinking must be set to false for non-streaming calls")
    for i, m in enumerate(msgs):
        _check_message_shape(i, m)
    if fam["ocr"]:
        _check_ocr(body, msgs, model, json_mode, thinking)
    all_texts = []
    for m in msgs:
        all_texts.extend(message_texts(m))
    if json_mode and not any("json" in t.lower() for t in all_texts):
        raise bad("'messages' must contain the word 'json' in some form, "
                  "to use 'response_format' of type 'json_object'.")
    images, videos, turns = [], [], []
    for m in msgs:
        t_imgs, t_vids = [], []
        c = m.get("content")
        if isinstance(c, list):
            for part in c:
                if not isinstance(part, dict):
                    continue
                t = part.get("type")
                if t == "image_url":
                    t_imgs.append(image_report(part, fam))
                elif t in ("video", "video_url"):
                    t_vids.append(video_report(part, fam))
        images.extend(t_imgs)
        videos.extend(t_vids)
        turns.append({"role": m["role"], "text": "\n".join(message_texts(m)),
                      "images": t_imgs, "videos": t_vids})
    if len(videos) > MAX_VIDEOS:
        raise bad(ALGO + "Too many videos in the request: %d > %d" % (len(videos), MAX_VIDEOS))
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
    video_tokens = 0
    for v in videos:
        sized = [f for f in v.get("frames", ()) if "width" in f]
        if sized:
            f = sized[0]
            video_tokens += (math.ceil(v["frame_count"] / 2) * math.ceil(f["height"] / 32)
                             * math.ceil(f["width"] / 32) + 2)
    text_chars = sum(len(t) for t in all_texts)
    text_tokens = max(1, math.ceil(text_chars / 4))
    so = body.get("stream_options")
    return {
        "model": model, "family": fam, "images": images, "videos": videos, "turns": turns,
        "prompt": prompt if prompt is not None else "",
        "system": system, "json_mode": json_mode, "stream": stream,
        "thinking": thinking or fam["thinking"] == "always",
        "high_res": body.get("vl_high_resolution_images") is True,
        "include_usage": isinstance(so, dict) and so.get("include_usage") is True,
        "schema": find_schema(all_texts), "image_tokens": image_tokens,
        "video_tokens": video_tokens, "text_tokens": text_tokens,
    }


def _check_ocr(body, msgs, model, json_mode, thinking):
    """What the OCR guide rules out: system messages, multi-turn, structured
    output, thinking, tools.  The message texts are the stand-in's own."""
    def no(what):
        return bad(ALGO + "The model %s does not support %s." % (model, what))
    if any(m.get("role") == "system" for m in msgs):
        raise no("system messages")
    if len(msgs) > 1:
        raise no("multi-turn conversations")
    if json_mode:
        raise no("response_format json_object")
    if thinking:
        raise no("enable_thinking")
    if body.get("tools"):
        raise no("tools")


# --------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------
def _r(v):
    """Round half up (the answers are integers, like the model's)."""
    return int(math.floor(v + 0.5))


def seen_size(img, a):
    """(width, height) the model saw: smart_resize with the family's grid."""
    fam = a["family"]
    cap = fam["max_pixels_cap"]
    max_p = cap if a.get("high_res") else min(img.get("max_pixels") or fam["max_pixels"], cap)
    min_p = min(img.get("min_pixels") or fam["min_pixels"], max_p)
    h, w = smart_resize(img["height"], img["width"], fam["factor"], min_p, max_p)
    return w, h


def wants_grounding(a):
    p = a["prompt"]
    return "bbox_2d" in p or "point_2d" in p


def grounding_items(a):
    sized = [im for im in a["images"] if "width" in im]
    if not sized:
        return []
    img = sized[-1]
    if a["family"]["coords"] == "relative":
        w = h = 1000
    else:
        w, h = seen_size(img, a)
    items = []
    if "bbox_2d" in a["prompt"]:
        items.append({"bbox_2d": [_r(0.25 * w), _r(0.25 * h), _r(0.50 * w), _r(0.75 * h)],
                      "label": "target"})
    if "point_2d" in a["prompt"]:
        items.append({"point_2d": [_r(0.375 * w), _r(0.5 * h)], "label": "center"})
    return items


def grounding_answer(a, fenced=None):
    text = dumps(grounding_items(a))
    if fenced is None:
        fenced = a["family"]["fenced"]
    return "```json\n" + text + "\n```" if fenced else text


def ocr_answer(a):
    """The OCR lines; a prompt that asks for "[unreadable]" marks gets one
    on each image the stand-in cannot read (given by URL), and one that
    asks for "NOTES:" gets a last line with confidence notes."""
    marks = "[unreadable]" in a["prompt"]
    lines, read, unread = [], 0, 0
    for i, im in enumerate(a["images"], 1):
        if "width" in im:
            sw, sh = seen_size(im, a)
            lines.append("LINE %d: image %s %dx%d seen %dx%d"
                         % (i, im["sha256"][:8], im["width"], im["height"], sw, sh))
            read += 1
        else:
            lines.append("LINE %d: %simage url %s" % (i, "[unreadable] " if marks else "", im["url"]))
            unread += 1
    text = "\n".join(lines) or "LINE 1: no image"
    if "NOTES:" in a["prompt"]:
        text += ("\nNOTES: %d image(s) read from their bytes, confident; %d given by URL "
                 "not read" % (read, unread))
    return text


def build_content(a, model_out, badschema=False, oversize=None, fenced=None):
    if oversize is not None:
        unit = "lorem ipsum dolor sit amet "
        return (unit * (oversize // len(unit) + 1))[:oversize]
    if a["schema"] is not None:
        return dumps(generate_from_schema(a["schema"], bad=badschema))
    if wants_grounding(a):
        return grounding_answer(a, fenced)
    if a["family"]["ocr"]:
        return ocr_answer(a)
    rep = dumps({"images": a["images"], "videos": a["videos"], "turns": a["turns"],
                 "prompt": a["prompt"], "system": a["system"], "model": model_out},
                sort_keys=True)
    return rep if a["json_mode"] else "STANDIN " + rep


def reasoning_for(a):
    if not a["thinking"]:
        return ""
    n = len(a["images"])
    return "thinking about %d image%s" % (n, "" if n == 1 else "s")


def usage_for(a, content, reasoning):
    p = a["image_tokens"] + a["text_tokens"] + a["video_tokens"]
    c = math.ceil(len(content) / 4)
    r = math.ceil(len(reasoning) / 4) if reasoning else 0
    details = {"image_tokens": a["image_tokens"], "text_tokens": a["text_tokens"]}
    if a["videos"]:
        details["video_tokens"] = a["video_tokens"]
    u = {"prompt_tokens": p, "completion_tokens": c + r, "total_tokens": p + c + r,
         "prompt_tokens_details": details}
    if reasoning:
        u["completion_tokens_details"] = {"reasoning_tokens": r, "text_tokens": c}
    return u
