/*
** qv_sse: a Server-Sent Events parser (WHATWG "event stream
** interpretation"). Feed it bytes as they arrive, in pieces of any size;
** it calls back once per dispatched event. Handles LF, CRLF and CR line
** ends (also split across feeds), comment lines, multi-line data,
** "event:" names, a leading BOM, and fields without a colon.
*/
#ifndef QV_SSE_H
#define QV_SSE_H

#include <stddef.h>
#include "qv_buf.h"

#pragma GCC visibility push(hidden)

/* Called with the event's name ("message" unless set) and its data
** (lines joined with '\n', without the final newline). Return nonzero to
** stop parsing: qv_sse_feed then returns that value. */
typedef int (*qv_sse_event_fn)(void *ud, const char *event, size_t event_len,
                               const char *data, size_t data_len);

typedef struct qv_sse {
  qv_buf line;      /* partial line carried across feeds */
  qv_buf data;      /* data of the event being assembled */
  qv_buf event;     /* event name of the event being assembled */
  int has_data;     /* a data field was seen */
  int last_cr;      /* previous feed ended with CR: skip a leading LF */
  int started;      /* BOM check done */
  size_t max_line;  /* refuse lines longer than this (0 = 8 MiB) */
} qv_sse;

void qv_sse_init(qv_sse *p);
void qv_sse_free(qv_sse *p);
/* Returns 0, the callback's nonzero value, or -1 when a line exceeds
** max_line or memory runs out (the parser must then be reset). */
int qv_sse_feed(qv_sse *p, const char *s, size_t n, qv_sse_event_fn fn,
                void *ud);
/* End of stream: an unterminated last line is processed, but an event
** without its blank line is discarded (as the spec says). */
int qv_sse_finish(qv_sse *p, qv_sse_event_fn fn, void *ud);

#pragma GCC visibility pop
#endif
