/* qsa-json.c: see qsa-json.h. */
#include "qsa-json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The next code point of s[*i..n), or -1 for an ill-formed sequence, after
 * which *i has advanced past its maximal valid prefix (at least one byte):
 * the "maximal subpart" rule CPython's UTF-8 decoder follows, so that one
 * U+FFFD stands for what Python replaces with one. */
static long next_cp(const unsigned char *s, size_t n, size_t *i) {
    unsigned char c = s[*i];
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    long cp;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        (*i)++;
        return -1;
    }
    size_t k = 1;
    for (; k <= need; k++) {
        if (*i + k >= n) break;
        unsigned char b = s[*i + k];
        unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) break;
        cp = cp << 6 | (b & 0x3F);
    }
    *i += k;
    return k == need + 1 ? cp : -1;
}

static void put_u(FILE *out, unsigned v) { fprintf(out, "\\u%04x", v); }

void qsa_json_string(FILE *out, const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    fputc('"', out);
    while (i < len) {
        long cp = next_cp(s, len, &i);
        if (cp < 0) cp = 0xFFFD;
        switch (cp) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        default:
            if (cp >= 0x20 && cp < 0x7F) {
                fputc((int)cp, out);
            } else if (cp < 0x10000) {
                put_u(out, (unsigned)cp);
            } else {
                cp -= 0x10000;
                put_u(out, (unsigned)(0xD800 | (cp >> 10)));
                put_u(out, (unsigned)(0xDC00 | (cp & 0x3FF)));
            }
        }
    }
    fputc('"', out);
}

static void put_str(FILE *out, qsa_str s) { qsa_json_string(out, s.ptr, s.len); }

void qsa_json_float(char *buf, size_t len, double x) {
    if (isnan(x)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(x)) {
        snprintf(buf, len, x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    /* the shortest %e that reads back as x: repr()'s digits */
    char sci[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec, x);
        if (strtod(sci, NULL) == x) break;
    }
    const char *p = sci;
    const char *sign = "";
    if (*p == '-') {
        sign = "-";
        p++;
    }
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd < sizeof digits - 1) digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exp = *p == 'e' ? atoi(p + 1) : 0;
    if (exp < -4 || exp >= 16) { /* 1e-05, 1e+16, 1.2345678901234568e+17 */
        if (nd == 1)
            snprintf(buf, len, "%s%ce%c%02d", sign, digits[0], exp < 0 ? '-' : '+', abs(exp));
        else
            snprintf(buf, len, "%s%c.%se%c%02d", sign, digits[0], digits + 1, exp < 0 ? '-' : '+',
                     abs(exp));
        return;
    }
    char fixed[64];
    size_t o = 0;
    if (exp < 0) { /* 0.0001 */
        fixed[o++] = '0';
        fixed[o++] = '.';
        for (int z = 0; z < -exp - 1; z++) fixed[o++] = '0';
        for (size_t k = 0; k < nd; k++) fixed[o++] = digits[k];
    } else { /* 120.0, 0.1 (exp 0 with the point after the first digit) */
        for (int k = 0; k <= exp; k++) fixed[o++] = (size_t)k < nd ? digits[k] : '0';
        fixed[o++] = '.';
        if ((size_t)exp + 1 < nd)
            for (size_t k = (size_t)exp + 1; k < nd; k++) fixed[o++] = digits[k];
        else
            fixed[o++] = '0';
    }
    fixed[o] = 0;
    snprintf(buf, len, "%s%s", sign, fixed);
}

static void put_float(FILE *out, double x) {
    char buf[48];
    qsa_json_float(buf, sizeof buf, x);
    fputs(buf, out);
}

static void put_note_list(FILE *out, const qsa_note *notes, size_t n, int *first) {
    for (size_t i = 0; i < n; i++) {
        if (!*first) fputs(", ", out);
        *first = 0;
        put_str(out, notes[i].text);
    }
}

/* msgspec.to_builtins of a PresenceTuple: fields in order, defaults omitted. */
static void put_tuple(FILE *out, const qsa_tuple *t) {
    fputs("{\"id\": ", out);
    put_str(out, t->id);
    if (t->basic != QSA_BASIC_NONE)
        fputs(t->basic == QSA_BASIC_OPEN ? ", \"basic\": \"open\"" : ", \"basic\": \"closed\"", out);
    if (t->has_contact) {
        fputs(", \"contact\": ", out);
        put_str(out, t->contact);
    }
    if (t->has_priority) {
        fputs(", \"priority\": ", out);
        put_float(out, t->priority);
    }
    if (t->has_timestamp) {
        fputs(", \"timestamp\": ", out);
        put_str(out, t->timestamp);
    }
    if (t->n_notes) {
        fputs(", \"notes\": [", out);
        for (size_t i = 0; i < t->n_notes; i++) {
            fputs(i ? ", {\"text\": " : "{\"text\": ", out);
            put_str(out, t->notes[i].text);
            if (t->notes[i].has_lang) {
                fputs(", \"lang\": ", out);
                put_str(out, t->notes[i].lang);
            }
            fputc('}', out);
        }
        fputc(']', out);
    }
    if (t->n_extensions) {
        fputs(", \"extensions\": [", out);
        for (size_t i = 0; i < t->n_extensions; i++) {
            if (i) fputs(", ", out);
            put_str(out, t->extensions[i]);
        }
        fputc(']', out);
    }
    fputc('}', out);
}

void qsa_json_event(FILE *out, const qsa_message *m, const char *record, const char *subscriber) {
    int status = m->type == QSA_MSG_STATUS;
    const qsa_presentity *p = status && m->has_presentity ? &m->presentity : NULL;
    fprintf(out, "{\"kind\": \"%s\", \"id\": %llu, \"record\": ", status ? "status" : "error",
            (unsigned long long)m->id);
    qsa_json_string(out, record, strlen(record));
    fputs(", \"subscriber\": ", out);
    qsa_json_string(out, subscriber, strlen(subscriber));
    if (status) {
        fputs(", \"state\": ", out);
        put_str(out, m->state);
        fputs(", \"reason\": ", out);
        put_str(out, m->reason);
    } else {
        fputs(", \"state\": null, \"reason\": null", out);
    }
    fputs(", \"entity\": ", out);
    if (p) put_str(out, p->entity);
    else fputs("null", out);
    int basic = p ? qsa_presentity_basic(p) : QSA_BASIC_NONE;
    fputs(basic == QSA_BASIC_OPEN ? ", \"basic\": \"open\""
          : basic == QSA_BASIC_CLOSED ? ", \"basic\": \"closed\""
                                      : ", \"basic\": null",
          out);
    /* notes: the document's, then each tuple's */
    fputs(", \"notes\": [", out);
    int first = 1;
    if (p) {
        put_note_list(out, p->notes, p->n_notes, &first);
        for (size_t i = 0; i < p->n_tuples; i++)
            put_note_list(out, p->tuples[i].notes, p->tuples[i].n_notes, &first);
    }
    fputs("], \"tuples\": [", out);
    for (size_t i = 0; p && i < p->n_tuples; i++) {
        if (i) fputs(", ", out);
        put_tuple(out, &p->tuples[i]);
    }
    fputc(']', out);
    if (status) {
        fputs(", \"content_type\": ", out);
        put_str(out, m->content_type);
        fputs(", \"body\": ", out);
        put_str(out, m->body); /* bytes: not UTF-8 is replaced */
        fputs(", \"parse_error\": ", out);
        if (m->parse_error.len) put_str(out, m->parse_error);
        else fputs("null", out);
        fprintf(out, ", \"merged\": %llu, \"error_kind\": null, \"code\": null, \"detail\": null, "
                     "\"retry_in\": null",
                (unsigned long long)m->merged);
        if (m->list.len) { /* a resource list's status: the keys watch adds */
            fputs(", \"list\": ", out);
            put_str(out, m->list);
            fputs(", \"resource\": ", out);
            if (m->resource.len) put_str(out, m->resource);
            else fputs("null", out);
        }
        fputc('}', out);
    } else {
        fputs(", \"content_type\": null, \"body\": null, \"parse_error\": null, \"merged\": 0, "
              "\"error_kind\": ",
              out);
        put_str(out, m->kind);
        fprintf(out, ", \"code\": %lld, \"detail\": ", (long long)m->code);
        put_str(out, m->detail);
        fputs(", \"retry_in\": ", out);
        if (m->has_retry_in) put_float(out, m->retry_in);
        else fputs("null", out);
        fputc('}', out);
    }
}
