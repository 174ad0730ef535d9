"""Image inspector of the DashScope stand-in (spec/support/standin.py).

What an image or video frame looks like as it arrives, without PIL:
format, width and height from the file header, EXIF/TIFF orientation, byte
count and SHA-256; base64 data-URL decoding; the summary that replaces data
URLs in the stand-in's records; and ``smart_resize``, the rule by which the
service rescales an image before the model sees it (used for grounding
coordinates and the OCR answer).

Python 3 standard library only.  Nothing here knows about HTTP or requests.
"""

import base64
import binascii
import hashlib
import math
import struct


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
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), whose payloads
        # could otherwise pass for a frame header.
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            if len(seg) < 5:
                raise ImageError("short SOF")
            h, w = struct.unpack(">HH", seg[1:5])
            return w, h, orientation
        i += seglen
    raise ImageError("no SOF")


def inspect_image(data):
    """Returns (format, width, height, orientation) or raises ImageError."""
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


def sniff_video(data):
    """A container name for a video payload ("mp4", "webm", "avi") or None."""
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    return None


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


def sha256_hex(raw):
    return hashlib.sha256(raw).hexdigest()


def summarize_data_url(url):
    """What the records keep of a data URL: its size, hash and format."""
    out = {"data_url_bytes": len(url.encode("utf-8")), "sha256": None, "format": None}
    try:
        mime, raw = decode_data_url(url)
        out["mime"] = mime
        out["decoded_bytes"] = len(raw)
        out["sha256"] = sha256_hex(raw)
        try:
            out["format"] = inspect_image(raw)[0]
        except ImageError:
            out["format"] = sniff_video(raw)
    except (ValueError, ImageError):
        pass
    return out


def redact_body(obj):
    """A request body with every data URL replaced by its summary."""
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
# smart_resize: the size the model sees
# --------------------------------------------------------------------------
def _round_by(n, f):
    # Python's round() (half to even), as the reference implementation uses.
    return round(n / f) * f


def _floor_by(n, f):
    return math.floor(n / f) * f


def _ceil_by(n, f):
    return math.ceil(n / f) * f


def smart_resize(height, width, factor, min_pixels, max_pixels):
    """(height, width) the service scales an image to before the model sees it.

    The documented rule (Qwen2.5-VL / Qwen3-VL, qwen-vl-utils): round each
    side to a multiple of ``factor``, then scale both sides by the same
    square-root factor so the pixel count falls within [min_pixels,
    max_pixels], flooring when shrinking and ceiling when growing.  Sides
    never drop below one factor.
    """
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, _floor_by(height / beta, factor))
        w_bar = max(factor, _floor_by(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by(height * beta, factor)
        w_bar = _ceil_by(width * beta, factor)
    return h_bar, w_bar
