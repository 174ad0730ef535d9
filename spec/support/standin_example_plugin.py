"""A route group for the stand-in, as a working example of ``register``.

Loaded with ``standin.py --plugin standin_example_plugin`` (from Lua:
``standin.start{ plugins = { "standin_example_plugin" } }``); the router
tests in spec/standin_spec.lua use it.  A real group (the Batch and Files
APIs in standin_batch.py) has the same shape.

    PUT  /_standin/example/notes/{name}   store the body (auth)
    GET  /_standin/example/notes/{name}   read it back (404 when absent)
    GET  /compatible-mode/v1/example/{rest*}   echo the decoded rest of the path
POST /_standin/reset forgets the notes.
"""

import standin  # the running server module, not a second copy

NOTES = {}


def register(router):
    @router.route("PUT", "/_standin/example/notes/{name}")
    def put_note(h, name):
        if not h.auth_ok():
            return h.send_auth_error()
        with standin.STATE.lock:
            NOTES[name] = h.raw_body.decode("utf-8", "replace")
        h.send_json(200, {"name": name, "bytes": len(h.raw_body), "request_id": h.rid})

    @router.route("GET", "/_standin/example/notes/{name}")
    def get_note(h, name):
        with standin.STATE.lock:
            text = NOTES.get(name)
        if text is None:
            return h.not_found()
        h.send_json(200, {"name": name, "text": text})

    @router.route("GET", router.PREFIX + "/example/{rest*}")
    def rest_of_path(h, rest):
        h.send_json(200, {"rest": rest, "query": h.query})

    def forget():
        with standin.STATE.lock:
            NOTES.clear()

    router.on_reset(forget)
