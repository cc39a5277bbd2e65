/* qsa-json.h: the `presence-b2b watch --json` object of a message, byte for
 * byte as Python's json.dumps writes it (", " and ": " separators, ASCII
 * only with \uXXXX escapes, floats as repr(), NaN/Infinity). Shared by
 * qsa-watch and the decoder's fuzz driver; not part of the library. */
#ifndef QSA_JSON_H
#define QSA_JSON_H

#include <stdio.h>

#include "qsa.h"

/* One line (no newline) for `msg`, subscribed as record/subscriber. */
void qsa_json_event(FILE *out, const qsa_message *msg, const char *record, const char *subscriber);

/* Python's repr() of a float, as json.dumps writes it; buf >= 32 bytes. */
void qsa_json_float(char *buf, size_t len, double x);

/* `s` as a JSON string; bytes that are not UTF-8 become U+FFFD the way
 * Python's decode("utf-8", errors="replace") does it. */
void qsa_json_string(FILE *out, const char *s, size_t len);

#endif
