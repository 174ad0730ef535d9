/*
** Fuzz qv_scrub and qv_text. Input: byte 0 = length of the secret (mod
** 32), then the secret (mapped into a key's alphabet, A-Z a-z 0-9 '-',
** as real keys are: so it cannot be made of the mark's brackets), then
** the text. Invariants: qv_scrub's output never holds the secret as
** itself; qv_scrub_found agrees with whether anything was replaced; the
** hold-back is shorter than the secret; UTF-8 repair yields valid UTF-8
** that equals the input when it was valid; JSON spans stay inside the
** text.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qv_scrub.h"
#include "qv_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void add(void *ud, const char *p, size_t n) { qv_buf_add(ud, p, n); }

static int contains(const char *h, size_t hn, const char *w, size_t wn) {
  size_t i;
  if (wn == 0 || hn < wn) return 0;
  for (i = 0; i + wn <= hn; i++)
    if (memcmp(h + i, w, wn) == 0) return 1;
  return 0;
}

static const char ALPHABET[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qv_secrets sec;
  qv_buf out;
  size_t kn, n, hold, off[3], len[3], bad, j;
  const char *text;
  char key[32];
  int k, i, valid;
  if (size < 1) return 0;
  kn = data[0] % 32;
  if (kn > size - 1) kn = size - 1;
  for (j = 0; j < kn; j++) key[j] = ALPHABET[data[1 + j] % (sizeof ALPHABET - 1)];
  text = (const char *)data + 1 + kn;
  n = size - 1 - kn;
  qv_secrets_init(&sec);
  if (qv_secrets_add(&sec, key, kn) != 0) abort();
  qv_secrets_add_url(&sec, text, n);
  qv_buf_init(&out);
  qv_scrub(&sec, text, n, add, &out);
  if (out.oom) abort();
  /* (a key made of letters of the mark itself would reappear in it) */
  if (kn >= QV_SCRUB_MIN && contains(out.data, out.len, key, kn) &&
      !contains(QV_SCRUB_MARK, sizeof QV_SCRUB_MARK - 1, key, kn))
    abort();
  /* found <=> something was replaced (a secret that is itself the mark
  ** would be "replaced" by the same bytes: the URL part may be anything) */
  if (!contains(text, n, QV_SCRUB_MARK, sizeof QV_SCRUB_MARK - 1) &&
      (out.len != n || (n && memcmp(out.data, text, n) != 0)) !=
      (qv_scrub_found(&sec, text, n) != 0))
    abort();
  hold = qv_scrub_holdback(&sec, text, n);
  if (hold > n || (kn >= QV_SCRUB_MIN && hold >= kn && hold > 0 &&
                   sec.count == 1))
    abort();
  qv_buf_free(&out);
  qv_secrets_wipe(&sec);
  /* text */
  valid = qv_text_utf8_valid(text, n, &bad);
  if (bad > n) abort();
  qv_buf_init(&out);
  qv_text_utf8_repair(&out, text, n);
  if (!qv_text_utf8_valid(out.data ? out.data : "", out.len, NULL)) abort();
  if (valid && (out.len != n || (n && memcmp(out.data, text, n) != 0))) abort();
  qv_buf_free(&out);
  k = qv_text_json_spans(text, n, off, len);
  if (k < 0 || k > 3) abort();
  for (i = 0; i < k; i++)
    if (off[i] > n || len[i] > n - off[i] || len[i] == 0) abort();
  return 0;
}
