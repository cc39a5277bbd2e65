/* qsa-decode: the status decoder on its own, for tests and fuzzing.
 *
 * Reads records from standard input, each framed as a little-endian u32
 * length and that many bytes, and writes one line per record: the
 * `presence-b2b watch --json` object of the decoded message (record and
 * subscriber empty), or `bad: <reason>`. Exit status 0 unless the framing
 * itself is broken (2). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsa-json.h"
#include "qsa.h"

int main(void) {
    size_t cap = 1 << 16, len = 0;
    uint8_t *all = malloc(cap);
    if (all == NULL) return 2;
    for (;;) { /* the whole input first */
        if (len == cap) {
            uint8_t *grown = realloc(all, cap * 2);
            if (grown == NULL) return 2;
            all = grown;
            cap *= 2;
        }
        size_t got = fread(all + len, 1, cap - len, stdin);
        if (got == 0) break;
        len += got;
    }
    size_t at = 0;
    int rc = 0;
    while (at < len) {
        if (len - at < 4) {
            rc = 2;
            break;
        }
        uint32_t n = (uint32_t)all[at] | (uint32_t)all[at + 1] << 8 | (uint32_t)all[at + 2] << 16 |
                     (uint32_t)all[at + 3] << 24;
        at += 4;
        if (n > len - at) {
            rc = 2;
            break;
        }
        /* a private copy of exactly n bytes, so that ASan sees any overread */
        uint8_t *rec = malloc(n ? n : 1);
        if (rec == NULL) return 2;
        memcpy(rec, all + at, n);
        at += n;
        qsa_message m;
        char err[256];
        if (qsa_decode_status(rec, n, &m, err, sizeof err) == QSA_OK) {
            qsa_json_event(stdout, &m, "", "");
            fputc('\n', stdout);
            qsa_message_free(&m);
        } else {
            printf("bad: %s\n", err);
        }
        free(rec);
    }
    free(all);
    if (fflush(stdout) != 0) return 2;
    return rc;
}
