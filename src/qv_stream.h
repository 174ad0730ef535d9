/*
** qv_stream: what a streamed answer has delivered so far, and who has
** seen it. The engine queues a call's event frames (qv_call.h); between
** steps the handle hands them here: each chunk is decoded (lua-cjson),
** its text and reasoning appended, its model, usage and finish reason
** kept in the handle's state table, an error event remembered. Text
** goes to on_delta in coalesced pieces (coalesce_ms, coalesce_bytes) and
** to h:read() as it arrives, scrubbed of the key: a tail that could be
** the start of the key is held back until the next piece shows it is not.
*/
#ifndef QV_STREAM_H
#define QV_STREAM_H

#include "qv_compat.h"
#include "qv_buf.h"
#include "qv_scrub.h"

#pragma GCC visibility push(hidden)

typedef struct qv_stream {
  qv_buf text, reasoning;            /* everything delivered so far */
  qv_buf pend_text, pend_reason;     /* not yet given to on_delta */
  qv_buf unread_text, unread_reason; /* not yet returned by h:read() */
  qv_buf held_text, held_reason;     /* may be the start of a secret */
  const qv_secrets *secrets;         /* the plan's; outlives the stream */
  double coalesce_s;
  long coalesce_bytes;
  double last_emit;
  int done;                          /* saw [DONE] or a finish_reason */
  int failed;                        /* an error event or a bad chunk */
  int callback_failed;               /* on_delta raised: never called again */
} qv_stream;

void qv_stream_init(qv_stream *s, const qv_secrets *sec, double coalesce_s,
                    long coalesce_bytes);
void qv_stream_free(qv_stream *s);

/* Fold the event frames p[0..n) into s and the state table at st (model,
** usage, finish_reason, body_request_id; stream_error for an error event;
** bad_event for a chunk that is not JSON). */
void qv_stream_events(lua_State *L, int st, qv_stream *s, const char *p,
                      size_t n);

/* A whole answer that came as plain JSON to a stream request: its text
** becomes one delta. */
void qv_stream_whole(qv_stream *s, const char *text, size_t n,
                     const char *reasoning, size_t rn);

/* The stream ended: release what was held back. */
void qv_stream_flush(qv_stream *s);

/* Call st.on_delta with the pending text when due (force: all of it).
** Returns 0, or -1 after the callback raised (the message is kept in
** st.callback_error). The interpreter's interrupt is raised through. */
int qv_stream_emit(lua_State *L, int st, qv_stream *s, int force);

#pragma GCC visibility pop
#endif
