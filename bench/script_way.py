#!/usr/bin/env python3
"""The script's way, for bench/wan_bench.lua: what the original Python
script did for each image -- read the file, base64 it into a data URL,
build the chat body, and `requests.post` it (no Session: a new connection
for every call) -- so qwenvl can be compared with it on the same link.

    python3 bench/script_way.py --url URL --key KEY --image PATH [--prompt TEXT]
    python3 bench/script_way.py --url URL --key KEY --body FILE --calls N
    (either with --cainfo PEM: trust this CA, for a stand-in over TLS)

With --image: one call, as one process per image does; prints the answer.
With --body: N sequential calls posting exactly these bytes (the body
qwenvl sends), each through requests.post; prints ``SEQ <seconds>`` for
the N calls (interpreter start-up and imports excluded).
Exits 1 on any failed call. Needs python3-requests.
"""

import argparse
import base64
import mimetypes
import sys
import time

import requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="the chat/completions URL")
    ap.add_argument("--key", required=True)
    ap.add_argument("--image")
    ap.add_argument("--prompt", default="Describe the image.")
    ap.add_argument("--model", default="qwen3-vl-plus")
    ap.add_argument("--body")
    ap.add_argument("--calls", type=int, default=1)
    ap.add_argument("--cainfo", help="CA file for a private certificate (requests' verify=)")
    a = ap.parse_args()
    headers = {"Authorization": "Bearer " + a.key, "Content-Type": "application/json"}
    verify = a.cainfo or True
    if a.body:
        with open(a.body, "rb") as f:
            body = f.read()
        t0 = time.monotonic()
        for _ in range(a.calls):
            r = requests.post(a.url, headers=headers, data=body, timeout=120, verify=verify)
            if r.status_code != 200:
                sys.exit("HTTP %d: %s" % (r.status_code, r.text[:300]))
            r.json()["choices"][0]["message"]["content"]
        print("SEQ %.6f" % (time.monotonic() - t0))
        return
    with open(a.image, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    mime = mimetypes.guess_type(a.image)[0] or "image/png"
    payload = {
        "model": a.model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:%s;base64,%s" % (mime, data)}},
            {"type": "text", "text": a.prompt},
        ]}],
        "max_tokens": 512,
        "temperature": 0.2,
    }
    r = requests.post(a.url, headers=headers, json=payload, timeout=120, verify=verify)
    if r.status_code != 200:
        sys.exit("HTTP %d: %s" % (r.status_code, r.text[:300]))
    print(r.json()["choices"][0]["message"]["content"])


if __name__ == "__main__":
    main()
