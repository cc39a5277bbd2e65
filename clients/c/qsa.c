/* qsa.c: the QSA client library (see qsa.h, docs/qsa-protocol.md and
 * docs/ring-layout.md). C11 for <stdatomic.h>; Linux only (memfd seals,
 * eventfd, SCM_RIGHTS, SOCK_SEQPACKET). */
#define _GNU_SOURCE
#include "qsa.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

/* The ring's shared counters are accessed as C11 atomics. That is only sound
 * if a 64-bit atomic is lock-free and laid out as a plain uint64_t. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t), "atomic u64 must be 8 bytes");

/* ------------------------------------------------------------ constants */

#define MAX_CONTROL_PACKET 65536
#define MAX_FDS_PER_PACKET 252
#define FDS_PER_RING 3
#define MAX_SHARDS 1024

#define RING_MAGIC "PB2BRING"
#define RING_VERSION 1
#define RING_HEADER 512
#define RING_CAP_MIN 4096ULL
#define RING_CAP_MAX (1ULL << 30)
#define OFF_MAGIC 0
#define OFF_VERSION 8
#define OFF_HEADER_SIZE 12
#define OFF_CAPACITY 16
#define OFF_HEAD 128
#define OFF_WAITING 136
#define OFF_TAIL 256
#define OFF_SLEEPING 264
#define KIND_DATA 1u
#define KIND_PAD 2u

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

/* ------------------------------------------------------------ small helpers */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deadline from a timeout (< 0: none), and what is left of it for poll(). */
static int64_t deadline_of(int timeout_ms) { return timeout_ms < 0 ? -1 : now_ms() + timeout_ms; }

static int remaining_ms(int64_t deadline) {
    if (deadline < 0) return -1;
    int64_t left = deadline - now_ms();
    if (left <= 0) return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

static void close_fd(int *fd) {
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF: what Python's decoder (hence msgspec) accepts. */
static bool utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (n - i - 1 < need) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
        i += need + 1;
    }
    return true;
}

/* ------------------------------------------------------------ msgpack reading */

typedef struct {
    const uint8_t *p, *end;
} mp_cur;

enum { MP_NIL, MP_BOOL, MP_UINT, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT };

typedef struct {
    int kind;
    uint64_t u;         /* MP_UINT */
    int64_t i;          /* MP_INT (every signed encoding, also of values >= 0) */
    double f;           /* MP_FLOAT */
    bool b;             /* MP_BOOL */
    const uint8_t *ptr; /* MP_STR, MP_BIN, MP_EXT: the data */
    uint64_t len;       /* MP_STR, MP_BIN, MP_EXT: bytes; MP_ARRAY, MP_MAP: entries */
} mp_obj;

static size_t mp_left(const mp_cur *c) { return (size_t)(c->end - c->p); }

static bool mp_take(mp_cur *c, size_t n, const uint8_t **out) {
    if (mp_left(c) < n) return false;
    *out = c->p;
    c->p += n;
    return true;
}

static uint64_t be_uint(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; k++) v = v << 8 | p[k];
    return v;
}

/* One value's header (and, for str/bin/ext, its data). Bounds-checked; an
 * array or map announcing more entries than bytes left is refused at once,
 * so no count from the peer can make a caller allocate more than the
 * record's size allows. */
static bool mp_next(mp_cur *c, mp_obj *o) {
    const uint8_t *q;
    if (!mp_take(c, 1, &q)) return false;
    uint8_t t = q[0];
    int szlen = 0;
    memset(o, 0, sizeof *o);
    if (t <= 0x7f) {
        o->kind = MP_UINT;
        o->u = t;
        return true;
    }
    if (t >= 0xe0) {
        o->kind = MP_INT;
        o->i = (int8_t)t;
        return true;
    }
    if (t >= 0x80 && t <= 0x8f) {
        o->kind = MP_MAP;
        o->len = t & 0x0f;
        goto check_count;
    }
    if (t >= 0x90 && t <= 0x9f) {
        o->kind = MP_ARRAY;
        o->len = t & 0x0f;
        goto check_count;
    }
    if (t >= 0xa0 && t <= 0xbf) {
        o->kind = MP_STR;
        o->len = t & 0x1f;
        goto data;
    }
    switch (t) {
    case 0xc0: o->kind = MP_NIL; return true;
    case 0xc2: o->kind = MP_BOOL; o->b = false; return true;
    case 0xc3: o->kind = MP_BOOL; o->b = true; return true;
    case 0xc4: case 0xc5: case 0xc6:
        o->kind = MP_BIN;
        szlen = 1 << (t - 0xc4);
        break;
    case 0xd9: case 0xda: case 0xdb:
        o->kind = MP_STR;
        szlen = 1 << (t - 0xd9);
        break;
    case 0xc7: case 0xc8: case 0xc9: {
        o->kind = MP_EXT;
        szlen = 1 << (t - 0xc7);
        if (!mp_take(c, (size_t)szlen, &q)) return false;
        o->len = be_uint(q, szlen);
        if (!mp_take(c, 1, &q)) return false; /* ext type */
        goto ext_data;
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        o->kind = MP_EXT;
        o->len = 1u << (t - 0xd4);
        if (!mp_take(c, 1, &q)) return false;
        goto ext_data;
    case 0xca: {
        if (!mp_take(c, 4, &q)) return false;
        uint32_t bits = (uint32_t)be_uint(q, 4);
        float f;
        memcpy(&f, &bits, 4);
        o->kind = MP_FLOAT;
        o->f = f;
        return true;
    }
    case 0xcb: {
        if (!mp_take(c, 8, &q)) return false;
        uint64_t bits = be_uint(q, 8);
        memcpy(&o->f, &bits, 8);
        o->kind = MP_FLOAT;
        return true;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int n = 1 << (t - 0xcc);
        if (!mp_take(c, (size_t)n, &q)) return false;
        o->kind = MP_UINT;
        o->u = be_uint(q, n);
        return true;
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (t - 0xd0);
        if (!mp_take(c, (size_t)n, &q)) return false;
        uint64_t v = be_uint(q, n);
        if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~0ULL << (8 * n); /* sign-extend */
        o->kind = MP_INT;
        memcpy(&o->i, &v, 8);
        return true;
    }
    case 0xdc: case 0xdd:
        o->kind = MP_ARRAY;
        if (!mp_take(c, t == 0xdc ? 2 : 4, &q)) return false;
        o->len = be_uint(q, t == 0xdc ? 2 : 4);
        goto check_count;
    case 0xde: case 0xdf:
        o->kind = MP_MAP;
        if (!mp_take(c, t == 0xde ? 2 : 4, &q)) return false;
        o->len = be_uint(q, t == 0xde ? 2 : 4);
        goto check_count;
    default:
        return false; /* 0xc1: never used */
    }
    /* bin and str with an explicit size */
    if (!mp_take(c, (size_t)szlen, &q)) return false;
    o->len = be_uint(q, szlen);
data:
    if (o->len > mp_left(c)) return false;
    o->ptr = c->p;
    c->p += o->len;
    return true;
ext_data:
    if (o->len > mp_left(c)) return false;
    o->ptr = c->p;
    c->p += o->len;
    return true;
check_count:
    /* every entry takes at least one byte (a map entry two) */
    if (o->len > mp_left(c) || (o->kind == MP_MAP && 2 * o->len > mp_left(c))) return false;
    return true;
}

/* Skip one whole value, however nested, without recursion: a count of the
 * values still to be read (each array/map adds its entries). */
static bool mp_skip(mp_cur *c) {
    uint64_t pending = 1;
    while (pending > 0) {
        mp_obj o;
        if (!mp_next(c, &o)) return false;
        pending--;
        if (o.kind == MP_ARRAY) pending += o.len;
        if (o.kind == MP_MAP) pending += 2 * o.len;
        if (pending > mp_left(c)) return false;
    }
    return true;
}

static bool key_is(const mp_obj *k, const char *name) {
    size_t n = strlen(name);
    return k->len == n && memcmp(k->ptr, name, n) == 0;
}

/* ------------------------------------------------------------ typed field readers */

typedef struct {
    char *err;
    size_t errlen;
} errbuf;

static bool fail(errbuf *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Say why in e and return false: `return FAIL(e, "...")`. */
static bool fail(errbuf *e, const char *fmt, ...) {
    if (e->err != NULL && e->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->err, e->errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}
#define FAIL(e, ...) fail((e), __VA_ARGS__)
/* the same, for functions that return an int code */
#define FAILV(e, v, ...) (set_err((e)->err, (e)->errlen, __VA_ARGS__), (v))

static bool rd_str(mp_cur *c, qsa_str *out, const char *what, errbuf *e) {
    mp_obj o;
    if (!mp_next(c, &o)) return FAIL(e, "truncated or malformed msgpack at %s", what);
    if (o.kind != MP_STR) return FAIL(e, "%s: expected a str", what);
    if (!utf8_valid(o.ptr, o.len)) return FAIL(e, "%s: invalid UTF-8", what);
    out->ptr = (const char *)o.ptr;
    out->len = o.len;
    return true;
}

/* str or nil; *has says which. */
static bool rd_opt_str(mp_cur *c, int *has, qsa_str *out, const char *what, errbuf *e) {
    mp_cur save = *c;
    mp_obj o;
    if (!mp_next(c, &o)) return FAIL(e, "truncated or malformed msgpack at %s", what);
    if (o.kind == MP_NIL) {
        *has = 0;
        out->ptr = "";
        out->len = 0;
        return true;
    }
    *c = save;
    *has = 1;
    return rd_str(c, out, what, e);
}

static bool rd_u64(mp_cur *c, uint64_t *out, const char *what, errbuf *e) {
    mp_obj o;
    if (!mp_next(c, &o)) return FAIL(e, "truncated or malformed msgpack at %s", what);
    if (o.kind == MP_UINT) {
        *out = o.u;
        return true;
    }
    if (o.kind == MP_INT && o.i >= 0) {
        *out = (uint64_t)o.i;
        return true;
    }
    return FAIL(e, "%s: expected an unsigned int", what);
}

static bool rd_i64(mp_cur *c, int64_t *out, const char *what, errbuf *e) {
    mp_obj o;
    if (!mp_next(c, &o)) return FAIL(e, "truncated or malformed msgpack at %s", what);
    if (o.kind == MP_INT) {
        *out = o.i;
        return true;
    }
    if (o.kind == MP_UINT && o.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)o.u;
        return true;
    }
    return FAIL(e, "%s: expected an int in the int64 range", what);
}

/* float, or an int (converted, as msgspec does), or nil when allowed. */
static bool rd_opt_float(mp_cur *c, int *has, double *out, const char *what, errbuf *e) {
    mp_obj o;
    if (!mp_next(c, &o)) return FAIL(e, "truncated or malformed msgpack at %s", what);
    *has = 1;
    switch (o.kind) {
    case MP_FLOAT: *out = o.f; return true;
    case MP_UINT: *out = (double)o.u; return true;
    case MP_INT: *out = (double)o.i; return true;
    case MP_NIL: *has = 0; *out = 0; return true;
    default: return FAIL(e, "%s: expected a float or nil", what);
    }
}

/* A map's header; *n entries follow. */
static bool rd_map(mp_cur *c, uint64_t *n, const char *what, errbuf *e) {
    mp_obj o;
    if (!mp_next(c, &o)) return FAIL(e, "truncated or malformed msgpack at %s", what);
    if (o.kind != MP_MAP) return FAIL(e, "%s: expected a map", what);
    *n = o.len;
    return true;
}

static bool rd_key(mp_cur *c, mp_obj *k, const char *what, errbuf *e) {
    if (!mp_next(c, k)) return FAIL(e, "truncated or malformed msgpack in %s", what);
    /* compared byte for byte, so not checked for UTF-8 (msgspec does not either) */
    if (k->kind != MP_STR) return FAIL(e, "%s: a key that is not a str", what);
    return true;
}

/* An array header whose entries each take at least `min_entry` bytes (a
 * cheap bound on what the caller then allocates). */
static bool rd_array(mp_cur *c, uint64_t *n, size_t min_entry, const char *what, errbuf *e) {
    mp_obj o;
    if (!mp_next(c, &o)) return FAIL(e, "truncated or malformed msgpack at %s", what);
    if (o.kind != MP_ARRAY) return FAIL(e, "%s: expected an array", what);
    if (o.len > mp_left(c) / min_entry) return FAIL(e, "%s: more entries than bytes allow", what);
    *n = o.len;
    return true;
}

/* ------------------------------------------------------------ status messages */

static void free_tuples(qsa_tuple *t, size_t n) {
    if (t == NULL) return;
    for (size_t i = 0; i < n; i++) {
        free(t[i].notes);
        free(t[i].extensions);
    }
    free(t);
}

static void free_presentity(qsa_presentity *p) {
    free_tuples(p->tuples, p->n_tuples);
    free(p->notes);
    free(p->extensions);
    memset(p, 0, sizeof *p);
}

static const qsa_str EMPTY = {"", 0};

/* Every map of a status message is decoded from a table of its fields:
 * unknown keys are skipped, a duplicate key overwrites (the last one wins,
 * as in msgspec), required keys are checked at the end. */
typedef enum {
    F_TAG,        /* the "type" key, already checked by find_tag */
    F_STR,        /* qsa_str */
    F_OPT_STR,    /* qsa_str, or nil (int has_ at aux) */
    F_STATE,      /* qsa_str: active, pending or terminated */
    F_BIN,        /* qsa_str holding bytes */
    F_U64,        /* uint64_t */
    F_I64,        /* int64_t */
    F_OPT_FLOAT,  /* double, int or nil (int has_ at aux) */
    F_BASIC,      /* int QSA_BASIC_* */
    F_NOTES,      /* qsa_note *, count (size_t) at aux */
    F_STRS,       /* qsa_str *, count at aux */
    F_TUPLES,     /* qsa_tuple *, count at aux */
    F_PRESENTITY  /* qsa_presentity, or nil (int has_ at aux) */
} field_type;

typedef struct {
    const char *name;
    field_type type;
    size_t at, aux; /* offsets into the struct decoded */
    bool required;
} field;

#define FIELD_AT(base, f, T) ((T *)(void *)((char *)(base) + (f)->at))
#define FIELD_AUX(base, f, T) ((T *)(void *)((char *)(base) + (f)->aux))

static bool dec_fields(mp_cur *c, uint64_t n, const field *fields, size_t nfields, void *base,
                       const char *what, errbuf *e);

static bool str_is(qsa_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static bool dec_map_of(mp_cur *c, const field *fields, size_t nfields, void *base, const char *what,
                       errbuf *e) {
    uint64_t n;
    return rd_map(c, &n, what, e) && dec_fields(c, n, fields, nfields, base, what, e);
}

static const field NOTE[] = {
    {"text", F_STR, offsetof(qsa_note, text), 0, true},
    {"lang", F_OPT_STR, offsetof(qsa_note, lang), offsetof(qsa_note, has_lang), false},
};

static const field TUPLE[] = {
    {"id", F_STR, offsetof(qsa_tuple, id), 0, true},
    {"basic", F_BASIC, offsetof(qsa_tuple, basic), 0, false},
    {"contact", F_OPT_STR, offsetof(qsa_tuple, contact), offsetof(qsa_tuple, has_contact), false},
    {"priority", F_OPT_FLOAT, offsetof(qsa_tuple, priority), offsetof(qsa_tuple, has_priority), false},
    {"timestamp", F_OPT_STR, offsetof(qsa_tuple, timestamp), offsetof(qsa_tuple, has_timestamp), false},
    {"notes", F_NOTES, offsetof(qsa_tuple, notes), offsetof(qsa_tuple, n_notes), false},
    {"extensions", F_STRS, offsetof(qsa_tuple, extensions), offsetof(qsa_tuple, n_extensions), false},
};

static const field PRESENTITY[] = {
    {"entity", F_STR, offsetof(qsa_presentity, entity), 0, true},
    {"tuples", F_TUPLES, offsetof(qsa_presentity, tuples), offsetof(qsa_presentity, n_tuples), false},
    {"notes", F_NOTES, offsetof(qsa_presentity, notes), offsetof(qsa_presentity, n_notes), false},
    {"extensions", F_STRS, offsetof(qsa_presentity, extensions),
     offsetof(qsa_presentity, n_extensions), false},
};

static const field STATUS[] = {
    {"type", F_TAG, 0, 0, false},
    {"id", F_U64, offsetof(qsa_message, id), 0, true},
    {"state", F_STATE, offsetof(qsa_message, state), 0, true},
    {"reason", F_STR, offsetof(qsa_message, reason), 0, false},
    {"presentity", F_PRESENTITY, offsetof(qsa_message, presentity),
     offsetof(qsa_message, has_presentity), false},
    {"content_type", F_STR, offsetof(qsa_message, content_type), 0, false},
    {"body", F_BIN, offsetof(qsa_message, body), 0, false},
    {"error", F_STR, offsetof(qsa_message, parse_error), 0, false},
    {"merged", F_U64, offsetof(qsa_message, merged), 0, false},
    {"list", F_STR, offsetof(qsa_message, list), 0, false},
    {"resource", F_STR, offsetof(qsa_message, resource), 0, false},
};

static const field ERROR[] = {
    {"type", F_TAG, 0, 0, false},
    {"id", F_U64, offsetof(qsa_message, id), 0, true},
    {"kind", F_STR, offsetof(qsa_message, kind), 0, true}, /* an open set: any str */
    {"code", F_I64, offsetof(qsa_message, code), 0, false},
    {"detail", F_STR, offsetof(qsa_message, detail), 0, false},
    {"retry_in", F_OPT_FLOAT, offsetof(qsa_message, retry_in), offsetof(qsa_message, has_retry_in),
     false},
};

#define COUNT(a) (sizeof(a) / sizeof(a)[0])

/* Frees an array of decoded tuples (their notes and extensions with them). */
static void free_tuple_items(void *items, size_t n) { free_tuples(items, n); }

/* An array of `size`-byte elements, each a map decoded by `fields`, each
 * taking at least `min_entry` bytes of the record (a bound on the count).
 * On failure what was decoded is freed with free_items (or free if NULL). */
static bool dec_array_of(mp_cur *c, void **out, size_t *count, size_t size, size_t min_entry,
                         const field *fields, size_t nfields, void (*free_items)(void *, size_t),
                         const char *what, errbuf *e) {
    uint64_t n;
    if (!rd_array(c, &n, min_entry, what, e)) return false;
    char *items = n ? calloc((size_t)n, size) : NULL;
    if (n && items == NULL) return FAIL(e, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        if (!dec_map_of(c, fields, nfields, items + i * size, what, e)) {
            if (free_items != NULL) free_items(items, (size_t)(i + 1));
            else free(items);
            return false;
        }
    }
    *out = items;
    *count = (size_t)n;
    return true;
}

static bool dec_strs(mp_cur *c, qsa_str **out, size_t *count, const char *what, errbuf *e) {
    uint64_t n;
    if (!rd_array(c, &n, 1, what, e)) return false;
    qsa_str *strs = n ? calloc((size_t)n, sizeof *strs) : NULL;
    if (n && strs == NULL) return FAIL(e, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        if (!rd_str(c, &strs[i], what, e)) {
            free(strs);
            return false;
        }
    }
    free(*out);
    *out = strs;
    *count = (size_t)n;
    return true;
}

static bool dec_basic(mp_cur *c, int *basic, errbuf *e) {
    int has = 0;
    qsa_str s;
    if (!rd_opt_str(c, &has, &s, "basic", e)) return false;
    if (!has) *basic = QSA_BASIC_NONE;
    else if (str_is(s, "open")) *basic = QSA_BASIC_OPEN;
    else if (str_is(s, "closed")) *basic = QSA_BASIC_CLOSED;
    else return FAIL(e, "basic: neither open, closed nor nil");
    return true;
}

/* nil, or a presentity map (replacing any earlier one). */
static bool dec_opt_presentity(mp_cur *c, qsa_presentity *p, int *has, errbuf *e) {
    mp_cur save = *c;
    mp_obj o;
    if (!mp_next(c, &o)) return FAIL(e, "truncated msgpack at presentity");
    free_presentity(p);
    *has = o.kind != MP_NIL;
    if (!*has) return true;
    *c = save;
    return dec_map_of(c, PRESENTITY, COUNT(PRESENTITY), p, "presentity", e);
}

static bool dec_field(mp_cur *c, const field *f, void *base, errbuf *e) {
    const char *what = f->name;
    switch (f->type) {
    case F_TAG:
        return mp_skip(c) || FAIL(e, "malformed type");
    case F_STR:
        return rd_str(c, FIELD_AT(base, f, qsa_str), what, e);
    case F_OPT_STR:
        return rd_opt_str(c, FIELD_AUX(base, f, int), FIELD_AT(base, f, qsa_str), what, e);
    case F_STATE: {
        qsa_str *s = FIELD_AT(base, f, qsa_str);
        if (!rd_str(c, s, what, e)) return false;
        return str_is(*s, "active") || str_is(*s, "pending") || str_is(*s, "terminated") ||
               FAIL(e, "state: neither active, pending nor terminated");
    }
    case F_BIN: {
        mp_obj o;
        if (!mp_next(c, &o)) return FAIL(e, "truncated msgpack at %s", what);
        if (o.kind != MP_BIN) return FAIL(e, "%s: expected bin", what);
        FIELD_AT(base, f, qsa_str)->ptr = (const char *)o.ptr;
        FIELD_AT(base, f, qsa_str)->len = o.len;
        return true;
    }
    case F_U64:
        return rd_u64(c, FIELD_AT(base, f, uint64_t), what, e);
    case F_I64:
        return rd_i64(c, FIELD_AT(base, f, int64_t), what, e);
    case F_OPT_FLOAT:
        return rd_opt_float(c, FIELD_AUX(base, f, int), FIELD_AT(base, f, double), what, e);
    case F_BASIC:
        return dec_basic(c, FIELD_AT(base, f, int), e);
    case F_NOTES: { /* a note map takes at least 7 bytes: 81 a4 "text" a0 */
        void *items;
        size_t count;
        if (!dec_array_of(c, &items, &count, sizeof(qsa_note), 7, NOTE, COUNT(NOTE), NULL, what, e))
            return false;
        qsa_note **slot = FIELD_AT(base, f, qsa_note *);
        free(*slot); /* a duplicate key: the last one wins */
        *slot = items;
        *FIELD_AUX(base, f, size_t) = count;
        return true;
    }
    case F_TUPLES: { /* a tuple map takes at least 5 bytes: 81 a2 "id" a0 */
        void *items;
        size_t count;
        if (!dec_array_of(c, &items, &count, sizeof(qsa_tuple), 5, TUPLE, COUNT(TUPLE),
                          free_tuple_items, what, e))
            return false;
        qsa_tuple **slot = FIELD_AT(base, f, qsa_tuple *);
        free_tuples(*slot, *FIELD_AUX(base, f, size_t));
        *slot = items;
        *FIELD_AUX(base, f, size_t) = count;
        return true;
    }
    case F_STRS:
        return dec_strs(c, FIELD_AT(base, f, qsa_str *), FIELD_AUX(base, f, size_t), what, e);
    case F_PRESENTITY:
        return dec_opt_presentity(c, FIELD_AT(base, f, qsa_presentity), FIELD_AUX(base, f, int), e);
    }
    return false;
}

static bool dec_fields(mp_cur *c, uint64_t n, const field *fields, size_t nfields, void *base,
                       const char *what, errbuf *e) {
    uint32_t seen = 0;
    for (size_t j = 0; j < nfields; j++) /* string defaults: "" rather than NULL */
        if (fields[j].type == F_STR || fields[j].type == F_OPT_STR || fields[j].type == F_STATE ||
            fields[j].type == F_BIN)
            *FIELD_AT(base, &fields[j], qsa_str) = EMPTY;
    for (uint64_t i = 0; i < n; i++) {
        mp_obj k;
        if (!rd_key(c, &k, what, e)) return false;
        size_t j = 0;
        while (j < nfields && !key_is(&k, fields[j].name)) j++;
        if (j == nfields) { /* unknown: skipped, whatever it is */
            if (!mp_skip(c)) return FAIL(e, "%s: malformed value of an unknown key", what);
            continue;
        }
        if (!dec_field(c, &fields[j], base, e)) return false;
        seen |= 1u << j;
    }
    for (size_t j = 0; j < nfields; j++)
        if (fields[j].required && !(seen & (1u << j)))
            return FAIL(e, "%s: missing required key %s", what, fields[j].name);
    return true;
}

/* The value of the map's "type" key (the tag may be anywhere; several equal
 * tags are fine, different ones are not). Leaves *c where it was. */
static bool find_tag(const mp_cur *c, uint64_t n, qsa_str *tag, const char *what, errbuf *e) {
    mp_cur k = *c;
    bool found = false;
    for (uint64_t i = 0; i < n; i++) {
        mp_obj key;
        if (!rd_key(&k, &key, what, e)) return false;
        if (key_is(&key, "type")) {
            qsa_str v;
            if (!rd_str(&k, &v, "type", e)) return false;
            if (found && (v.len != tag->len || memcmp(v.ptr, tag->ptr, v.len) != 0))
                return FAIL(e, "two different type keys");
            *tag = v;
            found = true;
        } else if (!mp_skip(&k)) {
            return FAIL(e, "%s: truncated or malformed msgpack", what);
        }
    }
    if (!found) return FAIL(e, "%s: no type key", what);
    return true;
}

void qsa_message_free(qsa_message *m) {
    if (m == NULL) return;
    free_presentity(&m->presentity);
    free(m->copy_);
    memset(m, 0, sizeof *m);
}

int qsa_decode_status(const void *buf, size_t len, qsa_message *m, char *err, size_t errlen) {
    errbuf e = {err, errlen};
    memset(m, 0, sizeof *m);
    m->state = m->reason = m->content_type = m->body = m->parse_error = EMPTY;
    m->list = m->resource = EMPTY;
    m->kind = m->detail = EMPTY; /* the other type's fields */
    m->copy_ = malloc(len ? len : 1);
    if (m->copy_ == NULL) {
        set_err(err, errlen, "out of memory");
        return QSA_ENOMEM;
    }
    if (len) memcpy(m->copy_, buf, len);
    mp_cur c = {m->copy_, m->copy_ + len};
    uint64_t n;
    qsa_str tag = EMPTY;
    bool ok = rd_map(&c, &n, "message", &e) && find_tag(&c, n, &tag, "message", &e);
    if (ok) {
        if (str_is(tag, "status")) {
            m->type = QSA_MSG_STATUS;
            ok = dec_fields(&c, n, STATUS, COUNT(STATUS), m, "status", &e);
        } else if (str_is(tag, "error")) {
            m->type = QSA_MSG_ERROR;
            ok = dec_fields(&c, n, ERROR, COUNT(ERROR), m, "error", &e);
        } else {
            ok = FAIL(&e, "not a status ring message (type neither status nor error)");
        }
    }
    if (ok && c.p != c.end) ok = FAIL(&e, "%zu trailing bytes after the message", mp_left(&c));
    if (!ok) {
        qsa_message_free(m);
        return QSA_EPROTO;
    }
    return QSA_OK;
}

int qsa_presentity_basic(const qsa_presentity *p) {
    int seen = QSA_BASIC_NONE;
    for (size_t i = 0; i < p->n_tuples; i++) {
        if (p->tuples[i].basic == QSA_BASIC_OPEN) return QSA_BASIC_OPEN;
        if (p->tuples[i].basic == QSA_BASIC_CLOSED) seen = QSA_BASIC_CLOSED;
    }
    return seen;
}

void qsa_event_free(qsa_event *ev) {
    if (ev == NULL) return;
    qsa_message_free(&ev->msg);
    free(ev->record);
    free(ev->subscriber);
    ev->record = ev->subscriber = NULL;
}

/* ------------------------------------------------------------ msgpack writing */

typedef struct {
    uint8_t *p;
    size_t cap, len;
    bool overflow;
} mp_w;

static void w_raw(mp_w *w, const void *data, size_t n) {
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->len, data, n);
    w->len += n;
}

static void w_byte(mp_w *w, uint8_t b) { w_raw(w, &b, 1); }

static void w_be(mp_w *w, uint64_t v, int n) {
    uint8_t b[8];
    for (int k = 0; k < n; k++) b[k] = (uint8_t)(v >> (8 * (n - 1 - k)));
    w_raw(w, b, (size_t)n);
}

static void w_map(mp_w *w, uint32_t n) {
    if (n < 16) {
        w_byte(w, (uint8_t)(0x80 | n));
    } else if (n <= 0xffff) {
        w_byte(w, 0xde);
        w_be(w, n, 2);
    } else {
        w_byte(w, 0xdf);
        w_be(w, n, 4);
    }
}

static void w_str(mp_w *w, const char *s, size_t n) {
    if (!utf8_valid((const uint8_t *)s, n) || n > UINT32_MAX) {
        w->overflow = true;
        return;
    }
    if (n < 32) {
        w_byte(w, (uint8_t)(0xa0 | n));
    } else if (n <= 0xff) {
        w_byte(w, 0xd9);
        w_be(w, n, 1);
    } else if (n <= 0xffff) {
        w_byte(w, 0xda);
        w_be(w, n, 2);
    } else {
        w_byte(w, 0xdb);
        w_be(w, n, 4);
    }
    w_raw(w, s, n);
}

static void w_cstr(mp_w *w, const char *s) { w_str(w, s, strlen(s)); }

static void w_uint(mp_w *w, uint64_t v) {
    if (v < 128) {
        w_byte(w, (uint8_t)v);
    } else if (v <= 0xff) {
        w_byte(w, 0xcc);
        w_be(w, v, 1);
    } else if (v <= 0xffff) {
        w_byte(w, 0xcd);
        w_be(w, v, 2);
    } else if (v <= 0xffffffffULL) {
        w_byte(w, 0xce);
        w_be(w, v, 4);
    } else {
        w_byte(w, 0xcf);
        w_be(w, v, 8);
    }
}

/* A message map of `fields` entries after its "type"; then one call per key. */
static void w_message(mp_w *w, const char *type, uint32_t fields) {
    w_map(w, fields + 1);
    w_cstr(w, "type");
    w_cstr(w, type);
}

static void w_key_str(mp_w *w, const char *key, const char *value) {
    w_cstr(w, key);
    w_cstr(w, value);
}

static void w_key_uint(mp_w *w, const char *key, uint64_t value) {
    w_cstr(w, key);
    w_uint(w, value);
}

size_t qsa_encode_subscribe(uint8_t *out, size_t cap, uint64_t id, const char *package,
                            const char *record, const char *subscriber) {
    mp_w w = {out, cap, 0, false};
    w_message(&w, "subscribe", 4);
    w_key_uint(&w, "id", id);
    w_key_str(&w, "package", package);
    w_key_str(&w, "record", record);
    w_key_str(&w, "subscriber", subscriber);
    return w.overflow ? 0 : w.len;
}

size_t qsa_encode_unsubscribe(uint8_t *out, size_t cap, uint64_t id) {
    mp_w w = {out, cap, 0, false};
    w_message(&w, "unsubscribe", 1);
    w_key_uint(&w, "id", id);
    return w.overflow ? 0 : w.len;
}

static size_t encode_hello(uint8_t *out, size_t cap, const char *name) {
    mp_w w = {out, cap, 0, false};
    w_message(&w, "hello", 3);
    w_key_uint(&w, "version", QSA_PROTOCOL_VERSION);
    w_key_str(&w, "role", "client");
    w_key_str(&w, "name", name);
    return w.overflow ? 0 : w.len;
}

/* ------------------------------------------------------------ control messages */

enum { CTL_WELCOME = 1, CTL_MORE_FDS, CTL_REFUSED };

typedef struct {
    int type;
    uint64_t version, client_id, shards, request_ring_bytes, status_ring_bytes, fds, offset;
    char reason[512];
} control_msg;

static bool dec_control(const uint8_t *buf, size_t len, control_msg *m, errbuf *e) {
    mp_cur c = {buf, buf + len};
    uint64_t n;
    qsa_str tag;
    memset(m, 0, sizeof *m);
    if (!rd_map(&c, &n, "control message", e) || !find_tag(&c, n, &tag, "control message", e))
        return false;
    if (str_is(tag, "welcome")) {
        m->type = CTL_WELCOME;
    } else if (str_is(tag, "more-fds")) {
        m->type = CTL_MORE_FDS;
    } else if (str_is(tag, "refused")) {
        m->type = CTL_REFUSED;
    } else {
        return FAIL(e, "unexpected control message (type neither welcome, more-fds nor refused)");
    }
    unsigned seen = 0;
    for (uint64_t i = 0; i < n; i++) {
        mp_obj k;
        bool ok = true;
        if (!rd_key(&c, &k, "control message", e)) return false;
        static const char *const ints[] = {"version",           "client_id",
                                           "shards",            "request_ring_bytes",
                                           "status_ring_bytes", "fds",
                                           "offset"};
        uint64_t *slots[] = {&m->version,           &m->client_id, &m->shards,
                             &m->request_ring_bytes, &m->status_ring_bytes, &m->fds,
                             &m->offset};
        int which = -1;
        for (int j = 0; j < 7; j++)
            if (key_is(&k, ints[j])) which = j;
        if (which >= 0 && (m->type == CTL_WELCOME ? which < 6 : m->type == CTL_MORE_FDS && which == 6)) {
            ok = rd_u64(&c, slots[which], ints[which], e);
            seen |= 1u << which;
        } else if (m->type == CTL_REFUSED && key_is(&k, "reason")) {
            qsa_str r;
            ok = rd_str(&c, &r, "reason", e);
            if (ok) {
                size_t cut = r.len < sizeof m->reason - 1 ? r.len : sizeof m->reason - 1;
                memcpy(m->reason, r.ptr, cut);
                m->reason[cut] = 0;
                seen |= 1u << 7;
            }
        } else {
            ok = mp_skip(&c) || FAIL(e, "control message: malformed value");
        }
        if (!ok) return false;
    }
    if (c.p != c.end) return FAIL(e, "trailing bytes after the control message");
    /* required keys: welcome all but fds (default 0); more-fds offset; refused reason */
    unsigned need = m->type == CTL_WELCOME ? 0x1f : m->type == CTL_MORE_FDS ? 0x40 : 0x80;
    if ((seen & need) != need) return FAIL(e, "control message is missing a required key");
    return true;
}

/* ------------------------------------------------------------ fd passing */

/* One packet and the fds it carries (close-on-exec), waiting up to the
 * deadline. Returns the packet length (0: EOF), or -1 with err set. On
 * MSG_CTRUNC or MSG_TRUNC every fd that came is closed and -1 returned. */
static ssize_t recv_packet(int sock, uint8_t *buf, size_t cap, int *fds, size_t *nfds,
                           size_t maxfds, int64_t deadline, errbuf *e) {
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(MAX_FDS_PER_PACKET * sizeof(int))];
    } ctl;
    *nfds = 0;
    for (;;) {
        struct iovec iov = {buf, cap};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof ctl.buf;
        ssize_t got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {sock, POLLIN, 0};
            int left = remaining_ms(deadline);
            if (left == 0) return FAILV(e, -1, "no answer from the service");
            int rc = poll(&pfd, 1, left);
            if (rc < 0 && errno != EINTR) return FAILV(e, -1, "poll: %s", strerror(errno));
            continue;
        }
        if (got < 0) return FAILV(e, -1, "control socket: %s", strerror(errno));
        /* collect every fd first, so that each error path below can close them */
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
            if (cm->cmsg_len < CMSG_LEN(0)) continue;
            size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            const unsigned char *data = CMSG_DATA(cm);
            for (size_t k = 0; k < count; k++) {
                int fd;
                memcpy(&fd, data + k * sizeof(int), sizeof fd);
                if (*nfds < maxfds)
                    fds[(*nfds)++] = fd;
                else
                    close(fd); /* more than expected: never kept */
            }
        }
        if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
            bool ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;
            for (size_t k = 0; k < *nfds; k++) close(fds[k]);
            *nfds = 0;
            return FAILV(e, -1, ctrunc ? "the service sent more fds than a packet may carry (MSG_CTRUNC)"
                                  : "control packet longer than 65536 bytes (MSG_TRUNC)");
        }
        return got;
    }
}

/* ------------------------------------------------------------ rings */

typedef struct {
    uint8_t *base;
    size_t size;
    uint64_t cap;
    uint64_t pos;  /* producer: own head; consumer: own tail */
    uint64_t peer; /* producer: cached tail */
    int memfd, data_efd, space_efd;
    bool broken;
} ring;

#define RING_U64(r, off) ((_Atomic uint64_t *)(void *)((r)->base + (off)))
#define RING_DATA(r) ((r)->base + RING_HEADER)

static void ring_close(ring *r) {
    if (r->base != NULL) munmap(r->base, r->size);
    r->base = NULL;
    close_fd(&r->memfd);
    close_fd(&r->data_efd);
    close_fd(&r->space_efd);
}

static bool is_eventfd(int fd, errbuf *e) {
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) {
        if (errno == ENOENT) return FAIL(e, "fd %d is not open", fd);
        return true; /* no /proc: the kernel refuses a wrong fd at the first read or write */
    }
    target[n] = 0;
    if (strcmp(target, "anon_inode:[eventfd]") != 0)
        return FAIL(e, "fd %d is not an eventfd (%s)", fd, target);
    return true;
}

static void ring_bell(int efd) {
    uint64_t one = 1;
    ssize_t rc = write(efd, &one, 8); /* EAGAIN: saturated, already rung */
    (void)rc;
}

static void drain_bell(int efd) {
    uint64_t v;
    ssize_t rc = read(efd, &v, 8); /* EAGAIN: was not rung */
    (void)rc;
}

/* ring-layout.md §7: check everything about a ring made by the service,
 * then map it. On success the ring owns the three fds. */
static bool ring_attach(ring *r, int memfd, int data_efd, int space_efd, bool producer, errbuf *e) {
    memset(r, 0, sizeof *r);
    r->memfd = r->data_efd = r->space_efd = -1;
    int seals = fcntl(memfd, F_GET_SEALS);
    if (seals < 0) return FAIL(e, "fd %d is not a memfd (F_GET_SEALS: %s)", memfd, strerror(errno));
    if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
        return FAIL(e, "memfd is not sealed against shrink and grow; refusing to map it");
    if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) return FAIL(e, "memfd is sealed against writes");
    struct stat st;
    if (fstat(memfd, &st) < 0) return FAIL(e, "fstat: %s", strerror(errno));
    if (st.st_size < (off_t)(RING_HEADER + RING_CAP_MIN) || st.st_size > (off_t)(RING_HEADER + RING_CAP_MAX))
        return FAIL(e, "memfd size %lld is out of range", (long long)st.st_size);
    if (!is_eventfd(data_efd, e) || !is_eventfd(space_efd, e)) return false;
    size_t size = (size_t)st.st_size;
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
    if (base == MAP_FAILED) return FAIL(e, "cannot map memfd read-write: %s", strerror(errno));
    r->base = base;
    r->size = size;
    uint32_t version, header_size;
    uint64_t cap;
    memcpy(&version, r->base + OFF_VERSION, 4);
    memcpy(&header_size, r->base + OFF_HEADER_SIZE, 4);
    memcpy(&cap, r->base + OFF_CAPACITY, 8);
    const char *why = NULL;
    if (memcmp(r->base + OFF_MAGIC, RING_MAGIC, 8) != 0) why = "bad magic";
    else if (version != RING_VERSION) why = "unsupported ring version";
    else if (header_size != RING_HEADER) why = "bad header size";
    else if (cap < RING_CAP_MIN || cap > RING_CAP_MAX || (cap & (cap - 1)) != 0) why = "bad capacity";
    else if (size != RING_HEADER + cap) why = "memfd size does not match the capacity";
    if (why != NULL) {
        munmap(r->base, r->size);
        r->base = NULL;
        return FAIL(e, "%s", why);
    }
    r->cap = cap;
    if (producer) {
        uint64_t head = atomic_load_explicit(RING_U64(r, OFF_HEAD), memory_order_acquire);
        uint64_t tail = atomic_load_explicit(RING_U64(r, OFF_TAIL), memory_order_acquire);
        if ((head | tail) & 7 || tail > head || head - tail > cap) {
            munmap(r->base, r->size);
            r->base = NULL;
            return FAIL(e, "request ring counters are inconsistent");
        }
        r->pos = head;
        r->peer = tail;
    } else {
        r->pos = atomic_load_explicit(RING_U64(r, OFF_TAIL), memory_order_acquire);
        if (r->pos & 7) {
            munmap(r->base, r->size);
            r->base = NULL;
            return FAIL(e, "status ring tail is not a multiple of 8");
        }
    }
    /* Both eventfds are used non-blocking (O_NONBLOCK is shared with the service). */
    if (fcntl(data_efd, F_SETFL, fcntl(data_efd, F_GETFL) | O_NONBLOCK) < 0 ||
        fcntl(space_efd, F_SETFL, fcntl(space_efd, F_GETFL) | O_NONBLOCK) < 0) {
        munmap(r->base, r->size);
        r->base = NULL;
        return FAIL(e, "fcntl O_NONBLOCK: %s", strerror(errno));
    }
    r->memfd = memfd;
    r->data_efd = data_efd;
    r->space_efd = space_efd;
    return true;
}

/* Consumer: store the new tail (release), fence, ring the producer if it
 * said it waits for space (ring-layout.md §5, "Consumer, reading records"). */
static void ring_publish_tail(ring *r, uint64_t tail) {
    r->pos = tail;
    atomic_store_explicit(RING_U64(r, OFF_TAIL), tail, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(RING_U64(r, OFF_WAITING), memory_order_relaxed)) ring_bell(r->space_efd);
}

/* Consumer: copy the next data record out. 1: *out (malloc'd, *len bytes);
 * 0: the ring is empty; -1: the counters are broken (never chased). Malformed
 * records are counted in *bad and skipped up to head. */
static int ring_read(ring *r, uint8_t **out, uint32_t *len, uint64_t *bad) {
    if (r->broken) return -1;
    for (;;) {
        uint64_t head = atomic_load_explicit(RING_U64(r, OFF_HEAD), memory_order_acquire);
        uint64_t tail = r->pos; /* our own copy, never the shared one */
        if (head == tail) return 0;
        if ((head & 7) || head < tail || head - tail > r->cap) {
            r->broken = true;
            return -1;
        }
        uint64_t p = tail & (r->cap - 1), avail = head - tail;
        uint64_t hdr; /* one 8-byte read: length and kind from the same instant */
        memcpy(&hdr, RING_DATA(r) + p, 8);
        uint32_t n = (uint32_t)hdr, kind = (uint32_t)(hdr >> 32);
        uint64_t size = ((uint64_t)n + 15) & ~(uint64_t)7;
        if (kind == KIND_DATA && n <= r->cap / 2 - 8 && size <= avail && p + size <= r->cap) {
            uint8_t *copy = malloc(n ? n : 1);
            if (copy == NULL) return 0; /* try again later; nothing consumed */
            memcpy(copy, RING_DATA(r) + p + 8, n);
            ring_publish_tail(r, tail + size);
            *out = copy;
            *len = n;
            return 1;
        }
        if (kind == KIND_PAD && n == r->cap - p - 8 && r->cap - p <= avail) {
            ring_publish_tail(r, tail + (r->cap - p));
            continue;
        }
        (*bad)++; /* where the next record starts is unknowable: skip what is published */
        ring_publish_tail(r, head);
    }
}

/* Consumer: announce sleep; false if data arrived meanwhile. */
static bool ring_prepare_sleep(ring *r) {
    atomic_store_explicit(RING_U64(r, OFF_SLEEPING), 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(RING_U64(r, OFF_HEAD), memory_order_acquire) != r->pos) {
        atomic_store_explicit(RING_U64(r, OFF_SLEEPING), 0, memory_order_relaxed);
        return false;
    }
    return true;
}

static void ring_wake(ring *r) { atomic_store_explicit(RING_U64(r, OFF_SLEEPING), 0, memory_order_relaxed); }

/* Producer: reload the consumer's tail and check it (a multiple of 8, not
 * backwards, not past our head). */
static bool ring_refresh_tail(ring *r) {
    uint64_t t = atomic_load_explicit(RING_U64(r, OFF_TAIL), memory_order_acquire);
    if ((t & 7) || t < r->peer || t > r->pos) {
        r->broken = true;
        return false;
    }
    r->peer = t;
    return true;
}

/* Producer: 1 written and published, 0 full, -1 broken. */
static int ring_try_write(ring *r, const uint8_t *buf, uint32_t n) {
    if (r->broken) return -1;
    uint64_t size = ((uint64_t)n + 15) & ~(uint64_t)7;
    uint64_t p = r->pos & (r->cap - 1), room = r->cap - p;
    uint64_t need = size <= room ? size : room + size;
    if (r->pos + need - r->peer > r->cap) {
        if (!ring_refresh_tail(r)) return -1;
        if (r->pos + need - r->peer > r->cap) return 0;
    }
    uint64_t head = r->pos;
    if (size > room) { /* padding to the end of the data area, then wrap */
        uint64_t pad = (room - 8) | (uint64_t)KIND_PAD << 32;
        memcpy(RING_DATA(r) + p, &pad, 8);
        head += room;
        p = 0;
    }
    uint64_t hdr = n | (uint64_t)KIND_DATA << 32;
    memcpy(RING_DATA(r) + p, &hdr, 8);
    memcpy(RING_DATA(r) + p + 8, buf, n);
    head += size;
    r->pos = head;
    atomic_store_explicit(RING_U64(r, OFF_HEAD), head, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(RING_U64(r, OFF_SLEEPING), memory_order_relaxed)) ring_bell(r->data_efd);
    return 1;
}

/* ------------------------------------------------------------ the client */

typedef struct {
    uint64_t id;
    char *package, *record, *subscriber;
    bool live; /* not unsubscribed: replayed on reconnect */
    bool sent; /* its subscribe was written on the current connection */
} sub;

typedef struct {
    int sock;
    uint64_t client_id;
    uint32_t shards;
    ring request;
    ring *status;
    bool lost;
} conn;

struct qsa_client {
    char *path, *name;
    int connect_timeout_ms;
    conn *conn;
    sub *subs; /* in the order they were made; linear lookups */
    size_t n_subs, cap_subs;
    uint64_t next_id;
    uint64_t bad_records, unknown_ids, reconnects;
    uint32_t rr; /* the status ring to look at first */
    uint64_t rng;
    char error[512];
};

static void conn_free(conn *k) {
    if (k == NULL) return;
    ring_close(&k->request);
    for (uint32_t i = 0; k->status != NULL && i < k->shards; i++) ring_close(&k->status[i]);
    free(k->status);
    close_fd(&k->sock);
    free(k);
}

static void close_all(int *fds, size_t n) {
    for (size_t i = 0; i < n; i++) close_fd(&fds[i]);
}

static int open_control(const char *path, int64_t deadline, errbuf *e) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) return FAILV(e, -1, "cannot connect to %s: path too long", path);
    strcpy(addr.sun_path, path);
    int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sock < 0) return FAILV(e, -1, "socket: %s", strerror(errno));
    for (;;) {
        if (connect(sock, (struct sockaddr *)&addr, sizeof addr) == 0) return sock;
        if (errno == EINTR) continue;
        if (errno == EAGAIN && remaining_ms(deadline) != 0) { /* backlog full: try again */
            poll(NULL, 0, 10);
            continue;
        }
        if (errno == EINPROGRESS) {
            struct pollfd pfd = {sock, POLLOUT, 0};
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (poll(&pfd, 1, remaining_ms(deadline)) > 0 &&
                getsockopt(sock, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                return sock;
            errno = soerr ? soerr : ETIMEDOUT;
        }
        FAIL(e, "cannot connect to %s: %s", path, strerror(errno));
        close(sock);
        return -1;
    }
}

static bool send_packet(int sock, const uint8_t *buf, size_t n, int64_t deadline, errbuf *e) {
    for (;;) {
        ssize_t rc = send(sock, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (rc == (ssize_t)n) return true;
        if (rc >= 0) return FAIL(e, "short send on the control socket");
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return FAIL(e, "control socket: %s", strerror(errno));
        struct pollfd pfd = {sock, POLLOUT, 0};
        int left = remaining_ms(deadline);
        if (left == 0) return FAIL(e, "control socket: timed out sending hello");
        poll(&pfd, 1, left);
    }
}

/* qsa-protocol.md §2 and §4: connect, hello, welcome (and more-fds), attach
 * every ring. All or nothing. */
static int handshake(const char *path, const char *name, int timeout_ms, conn **out, errbuf *e) {
    int64_t deadline = deadline_of(timeout_ms);
    uint8_t *buf = NULL;
    int *fds = NULL;
    size_t nfds = 0, expected = 0;
    conn *k = NULL;
    int rc = QSA_ECONNECT;
    int first[MAX_FDS_PER_PACKET];
    size_t nfirst = 0;
    *out = NULL;

    uint8_t hello[512];
    size_t hlen = encode_hello(hello, sizeof hello, name);
    if (hlen == 0) return FAILV(e, QSA_EINVAL, "client name is too long or not UTF-8");
    int sock = open_control(path, deadline, e);
    if (sock < 0) return QSA_ECONNECT;
    buf = malloc(MAX_CONTROL_PACKET);
    if (buf == NULL) {
        close(sock);
        return FAILV(e, QSA_ENOMEM, "out of memory");
    }
    if (!send_packet(sock, hello, hlen, deadline, e)) goto fail;
    ssize_t got = recv_packet(sock, buf, MAX_CONTROL_PACKET, first, &nfirst, MAX_FDS_PER_PACKET, deadline, e);
    if (got < 0) goto fail;
    if (got == 0) {
        FAIL(e, "the service closed the connection");
        goto fail;
    }
    control_msg m;
    if (!dec_control(buf, (size_t)got, &m, e)) goto fail;
    if (m.type == CTL_REFUSED) {
        FAIL(e, "refused by the service: %s", m.reason);
        rc = QSA_EREFUSED;
        goto fail;
    }
    if (m.type != CTL_WELCOME) {
        FAIL(e, "expected a welcome");
        goto fail;
    }
    if (m.version != QSA_PROTOCOL_VERSION) {
        FAIL(e, "service speaks protocol %llu, not %d", (unsigned long long)m.version, QSA_PROTOCOL_VERSION);
        goto fail;
    }
    if (m.shards < 1 || m.shards > MAX_SHARDS || m.fds != FDS_PER_RING * (1 + m.shards)) {
        FAIL(e, "welcome announces %llu fds for %llu shards", (unsigned long long)m.fds,
             (unsigned long long)m.shards);
        goto fail;
    }
    expected = (size_t)m.fds;
    fds = malloc(expected * sizeof *fds);
    if (fds == NULL) {
        FAIL(e, "out of memory");
        rc = QSA_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < nfirst; i++) {
        if (nfds < expected) fds[nfds++] = first[i];
        else close(first[i]);
        first[i] = -1;
    }
    if (nfirst > expected) {
        nfirst = 0;
        FAIL(e, "welcome carried more fds than it announced");
        goto fail;
    }
    nfirst = 0;
    while (nfds < expected) {
        int extra[MAX_FDS_PER_PACKET];
        size_t nextra = 0;
        got = recv_packet(sock, buf, MAX_CONTROL_PACKET, extra, &nextra, MAX_FDS_PER_PACKET, deadline, e);
        if (got <= 0) {
            if (got == 0) FAIL(e, "the service closed the connection during the welcome");
            goto fail;
        }
        size_t before = nfds;
        for (size_t i = 0; i < nextra; i++) {
            if (nfds < expected) fds[nfds++] = extra[i];
            else close(extra[i]);
        }
        control_msg more;
        if (!dec_control(buf, (size_t)got, &more, e)) goto fail;
        if (more.type != CTL_MORE_FDS || more.offset != before || nextra == 0 || nfds - before != nextra) {
            FAIL(e, "bad fd continuation in the welcome");
            goto fail;
        }
    }
    if (nfds != expected) {
        FAIL(e, "welcome carried %zu fds, expected %zu", nfds, expected);
        goto fail;
    }
    k = calloc(1, sizeof *k);
    if (k == NULL || (k->status = calloc((size_t)m.shards, sizeof *k->status)) == NULL) {
        FAIL(e, "out of memory");
        rc = QSA_ENOMEM;
        goto fail;
    }
    k->sock = -1;
    k->request.memfd = k->request.data_efd = k->request.space_efd = -1;
    k->shards = 0; /* counts the status rings attached so far */
    k->client_id = m.client_id;
    char why[256];
    errbuf re = {why, sizeof why};
    if (!ring_attach(&k->request, fds[0], fds[1], fds[2], true, &re)) {
        FAIL(e, "ring 0 of the welcome: %s", why);
        goto fail;
    }
    fds[0] = fds[1] = fds[2] = -1;
    for (uint32_t i = 0; i < m.shards; i++) {
        size_t at = FDS_PER_RING * (1 + (size_t)i);
        if (!ring_attach(&k->status[i], fds[at], fds[at + 1], fds[at + 2], false, &re)) {
            FAIL(e, "ring %u of the welcome: %s", i + 1, why);
            goto fail;
        }
        fds[at] = fds[at + 1] = fds[at + 2] = -1;
        k->shards = i + 1;
    }
    k->sock = sock;
    free(fds);
    free(buf);
    *out = k;
    return QSA_OK;
fail:
    close_all(first, nfirst);
    if (fds != NULL) close_all(fds, nfds);
    free(fds);
    conn_free(k);
    free(buf);
    close(sock);
    return rc;
}

/* ------------------------------------------------------------ subscriptions */

static sub *find_sub(qsa_client *c, uint64_t id) {
    for (size_t i = 0; i < c->n_subs; i++)
        if (c->subs[i].id == id) return &c->subs[i];
    return NULL;
}

static void forget_sub(qsa_client *c, sub *s) {
    free(s->package);
    free(s->record);
    free(s->subscriber);
    size_t i = (size_t)(s - c->subs);
    memmove(&c->subs[i], &c->subs[i + 1], (c->n_subs - i - 1) * sizeof *s);
    c->n_subs--;
}

static void lose(qsa_client *c, const char *why) {
    if (c->conn != NULL && !c->conn->lost) {
        c->conn->lost = true;
        snprintf(c->error, sizeof c->error, "%s", why);
    }
}

/* The connection is gone: free it; unsubscribed ids are over (the service
 * forgot them with the connection), live ones wait for the replay. */
static void teardown(qsa_client *c) {
    conn_free(c->conn);
    c->conn = NULL;
    for (size_t i = c->n_subs; i-- > 0;) {
        c->subs[i].sent = false;
        if (!c->subs[i].live) forget_sub(c, &c->subs[i]);
    }
}

/* The control socket is only read for EOF (or a refused just before it). */
static void check_control(qsa_client *c) {
    conn *k = c->conn;
    uint8_t buf[1024];
    for (;;) {
        ssize_t n = recv(k->sock, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            lose(c, n == 0 ? "the service closed the connection" : "control socket error");
            return;
        }
        control_msg m;
        char why[128];
        errbuf e = {why, sizeof why};
        if (dec_control(buf, (size_t)n, &m, &e) && m.type == CTL_REFUSED)
            snprintf(c->error, sizeof c->error, "the service ended the connection: %.400s", m.reason);
    }
}

/* Write one request, waiting for room (ring-layout.md §5, "Producer, when
 * the ring is full"). QSA_OK, QSA_ETIMEOUT, QSA_ELOST, QSA_EINTR. */
static int write_request(qsa_client *c, const uint8_t *buf, size_t n, int timeout_ms) {
    conn *k = c->conn;
    if (k == NULL || k->lost) return QSA_ELOST;
    ring *r = &k->request;
    if (n > r->cap / 2 - 8) return QSA_EINVAL;
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        int rc = ring_try_write(r, buf, (uint32_t)n);
        if (rc == 1) return QSA_OK;
        if (rc < 0) {
            lose(c, "the request ring is broken (the service published a bad tail)");
            return QSA_ELOST;
        }
        uint64_t before = r->peer;
        atomic_store_explicit(RING_U64(r, OFF_WAITING), 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        if (!ring_refresh_tail(r)) {
            lose(c, "the request ring is broken (the service published a bad tail)");
            return QSA_ELOST;
        }
        if (r->peer == before) {
            int left = remaining_ms(deadline);
            if (left == 0) {
                atomic_store_explicit(RING_U64(r, OFF_WAITING), 0, memory_order_relaxed);
                return QSA_ETIMEOUT;
            }
            struct pollfd pfd[2] = {{r->space_efd, POLLIN, 0}, {k->sock, POLLIN, 0}};
            int prc = poll(pfd, 2, left);
            if (prc < 0 && errno == EINTR) {
                atomic_store_explicit(RING_U64(r, OFF_WAITING), 0, memory_order_relaxed);
                return QSA_EINTR;
            }
            if (prc > 0 && pfd[0].revents) drain_bell(r->space_efd);
            if (prc > 0 && pfd[1].revents) check_control(c);
        }
        atomic_store_explicit(RING_U64(r, OFF_WAITING), 0, memory_order_relaxed);
        if (k->lost) return QSA_ELOST;
    }
}

static int send_subscribe(qsa_client *c, sub *s, int timeout_ms) {
    size_t cap = 64 + strlen(s->package) + strlen(s->record) + strlen(s->subscriber);
    uint8_t *buf = malloc(cap);
    if (buf == NULL) return QSA_ENOMEM;
    size_t n = qsa_encode_subscribe(buf, cap, s->id, s->package, s->record, s->subscriber);
    int rc = n == 0 ? QSA_EINVAL : write_request(c, buf, n, timeout_ms);
    free(buf);
    if (rc == QSA_OK) s->sent = true;
    return rc;
}

int qsa_subscribe(qsa_client *c, const char *package, const char *record, const char *subscriber,
                  int timeout_ms, uint64_t *id) {
    if (!utf8_valid((const uint8_t *)package, strlen(package)) ||
        !utf8_valid((const uint8_t *)record, strlen(record)) ||
        !utf8_valid((const uint8_t *)subscriber, strlen(subscriber))) {
        snprintf(c->error, sizeof c->error, "package, record and subscriber must be UTF-8");
        return QSA_EINVAL;
    }
    if (c->next_id == 0) { /* wrapped past 2^64 - 1 */
        snprintf(c->error, sizeof c->error, "subscription ids exhausted");
        return QSA_EINVAL;
    }
    if (c->n_subs == c->cap_subs) {
        size_t cap = c->cap_subs ? 2 * c->cap_subs : 16;
        sub *grown = realloc(c->subs, cap * sizeof *grown);
        if (grown == NULL) return QSA_ENOMEM;
        c->subs = grown;
        c->cap_subs = cap;
    }
    sub *s = &c->subs[c->n_subs];
    memset(s, 0, sizeof *s);
    s->package = strdup(package);
    s->record = strdup(record);
    s->subscriber = strdup(subscriber);
    if (s->package == NULL || s->record == NULL || s->subscriber == NULL) {
        free(s->package);
        free(s->record);
        free(s->subscriber);
        return QSA_ENOMEM;
    }
    s->id = c->next_id;
    s->live = true;
    c->n_subs++;
    int rc = c->conn == NULL || c->conn->lost ? QSA_ELOST : send_subscribe(c, s, timeout_ms);
    if (rc != QSA_OK && rc != QSA_ELOST) { /* not sent: not kept either */
        if (rc == QSA_ETIMEOUT)
            snprintf(c->error, sizeof c->error, "request ring stayed full for %d ms: the service is not reading",
                     timeout_ms);
        forget_sub(c, &c->subs[c->n_subs - 1]);
        return rc;
    }
    *id = c->next_id++;
    return QSA_OK; /* on QSA_ELOST it is sent by qsa_reconnect's replay */
}

int qsa_unsubscribe(qsa_client *c, uint64_t id, int timeout_ms) {
    sub *s = find_sub(c, id);
    if (s == NULL || !s->live) return QSA_OK;
    if (c->conn == NULL || c->conn->lost || !s->sent) {
        forget_sub(c, s); /* the service never had it on this connection */
        return QSA_OK;
    }
    uint8_t buf[32];
    size_t n = qsa_encode_unsubscribe(buf, sizeof buf, id);
    s->live = false;
    int rc = write_request(c, buf, n, timeout_ms);
    s = find_sub(c, id);
    if (rc == QSA_ELOST) {
        if (s != NULL) forget_sub(c, s);
        return QSA_OK;
    }
    if (rc != QSA_OK && s != NULL) s->live = true;
    return rc;
}

/* Decode one record into an event; false (counted) if it is not one. */
static bool deliver(qsa_client *c, uint8_t *rec, uint32_t n, qsa_event *ev) {
    char why[160];
    int rc = qsa_decode_status(rec, n, &ev->msg, why, sizeof why);
    free(rec);
    if (rc != QSA_OK) {
        c->bad_records++;
        return false;
    }
    sub *s = find_sub(c, ev->msg.id);
    if (s == NULL) {
        c->unknown_ids++;
        qsa_message_free(&ev->msg);
        return false;
    }
    bool final = ev->msg.type == QSA_MSG_ERROR ? !ev->msg.has_retry_in
                                               : str_is(ev->msg.state, "terminated") && !s->live;
    ev->final = final;
    if (final) { /* the event takes the names over; the id is forgotten */
        ev->record = s->record;
        ev->subscriber = s->subscriber;
        s->record = s->subscriber = NULL;
        forget_sub(c, s);
        return true;
    }
    ev->record = strdup(s->record);
    ev->subscriber = strdup(s->subscriber);
    if (ev->record == NULL || ev->subscriber == NULL) {
        qsa_event_free(ev);
        return false;
    }
    return true;
}

int qsa_next(qsa_client *c, int timeout_ms, qsa_event *ev) {
    int64_t deadline = deadline_of(timeout_ms);
    struct pollfd *pfd = NULL;
    bool expired = false;
    int result;
    memset(ev, 0, sizeof *ev);
    for (;;) {
        conn *k = c->conn;
        if (k == NULL) {
            result = QSA_ELOST;
            break;
        }
        bool got = false;
        for (uint32_t j = 0; j < k->shards && !got; j++) {
            uint32_t i = (c->rr + j) % k->shards;
            for (;;) { /* until an event, an empty ring or a broken one */
                uint8_t *rec;
                uint32_t n;
                int rc = ring_read(&k->status[i], &rec, &n, &c->bad_records);
                if (rc < 0) lose(c, "a status ring is broken (the service published bad counters)");
                if (rc != 1) break;
                if (deliver(c, rec, n, ev)) {
                    c->rr = (i + 1) % k->shards; /* the next call starts at the next ring */
                    got = true;
                    break;
                }
            }
        }
        if (got) {
            result = 1;
            break;
        }
        if (k->lost) { /* what was left in the rings has been delivered */
            teardown(c);
            result = QSA_ELOST;
            break;
        }
        if (expired) {
            result = 0;
            break;
        }
        bool data = false;
        for (uint32_t i = 0; i < k->shards && !data; i++)
            if (!ring_prepare_sleep(&k->status[i])) data = true;
        if (data) {
            for (uint32_t i = 0; i < k->shards; i++) ring_wake(&k->status[i]);
            continue;
        }
        if (pfd == NULL && (pfd = calloc((size_t)k->shards + 1, sizeof *pfd)) == NULL) {
            for (uint32_t i = 0; i < k->shards; i++) ring_wake(&k->status[i]);
            result = QSA_ENOMEM;
            break;
        }
        for (uint32_t i = 0; i < k->shards; i++) pfd[i] = (struct pollfd){k->status[i].data_efd, POLLIN, 0};
        pfd[k->shards] = (struct pollfd){k->sock, POLLIN, 0};
        int prc = poll(pfd, (nfds_t)k->shards + 1, remaining_ms(deadline));
        int err = errno;
        for (uint32_t i = 0; i < k->shards; i++) {
            ring_wake(&k->status[i]);
            if (prc > 0 && pfd[i].revents) drain_bell(k->status[i].data_efd);
        }
        if (prc > 0 && pfd[k->shards].revents) check_control(c);
        if (prc < 0 && err == EINTR) {
            result = QSA_EINTR;
            break;
        }
        if (prc == 0) expired = true; /* one last look at the rings, then 0 */
    }
    free(pfd);
    return result;
}

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Send the subscribe of every live subscription the current connection has
 * not had yet, in the order they were made. */
static int replay(qsa_client *c, int64_t deadline) {
    for (size_t i = 0; i < c->n_subs;) {
        sub *s = &c->subs[i];
        if (!s->live || s->sent) {
            i++;
            continue;
        }
        int rc = send_subscribe(c, s, remaining_ms(deadline));
        if (rc == QSA_EINVAL) { /* too large for this service's ring: it can never be sent */
            snprintf(c->error, sizeof c->error, "subscription %llu dropped: too large for the request ring",
                     (unsigned long long)s->id);
            forget_sub(c, s);
            continue;
        }
        if (rc != QSA_OK) return rc;
        i++;
    }
    return QSA_OK;
}

int qsa_reconnect(qsa_client *c, int timeout_ms) {
    int64_t deadline = deadline_of(timeout_ms);
    int delay = BACKOFF_FIRST_MS;
    for (;;) {
        if (c->conn != NULL && c->conn->lost) teardown(c);
        if (c->conn == NULL) {
            /* jittered backoff: delay times a random factor in [0.5, 1] */
            int wait = (int)((uint64_t)delay / 2 + xorshift(&c->rng) % ((uint64_t)delay / 2 + 1));
            int left = remaining_ms(deadline);
            if (left >= 0 && wait > left) wait = left;
            if (wait > 0 && poll(NULL, 0, wait) < 0 && errno == EINTR) return QSA_EINTR;
            delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
            char why[sizeof c->error];
            errbuf e = {why, sizeof why};
            int budget = c->connect_timeout_ms;
            left = remaining_ms(deadline);
            if (left >= 0 && (budget < 0 || left < budget)) budget = left;
            int rc = handshake(c->path, c->name, budget, &c->conn, &e);
            if (rc != QSA_OK) {
                snprintf(c->error, sizeof c->error, "%s", why);
                if (rc == QSA_ENOMEM || rc == QSA_EINVAL) return rc;
                if (remaining_ms(deadline) == 0) return QSA_ETIMEOUT;
                continue;
            }
            c->reconnects++;
        }
        /* A replay cut short (timeout, signal) resumes on the next call. */
        int rc = replay(c, deadline);
        if (rc != QSA_ELOST) return rc;
        if (remaining_ms(deadline) == 0) return QSA_ETIMEOUT;
    }
}

int qsa_connect(const char *path, const char *name, int timeout_ms, qsa_client **out, char *err,
                size_t errlen) {
    errbuf e = {err, errlen};
    *out = NULL;
    qsa_client *c = calloc(1, sizeof *c);
    if (c == NULL) return FAILV(&e, QSA_ENOMEM, "out of memory");
    c->path = strdup(path);
    c->name = strdup(name ? name : "");
    if (c->path == NULL || c->name == NULL) {
        qsa_close(c);
        return FAILV(&e, QSA_ENOMEM, "out of memory");
    }
    c->connect_timeout_ms = timeout_ms;
    c->next_id = 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^ 0x9e3779b97f4a7c15ULL;
    int rc = handshake(path, c->name, timeout_ms, &c->conn, &e);
    if (rc != QSA_OK) {
        qsa_close(c);
        return rc;
    }
    *out = c;
    return QSA_OK;
}

void qsa_close(qsa_client *c) {
    if (c == NULL) return;
    conn_free(c->conn);
    for (size_t i = 0; i < c->n_subs; i++) {
        free(c->subs[i].package);
        free(c->subs[i].record);
        free(c->subs[i].subscriber);
    }
    free(c->subs);
    free(c->path);
    free(c->name);
    free(c);
}

int qsa_connected(const qsa_client *c) { return c->conn != NULL && !c->conn->lost; }

const char *qsa_last_error(const qsa_client *c) { return c->error; }

void qsa_get_stats(const qsa_client *c, qsa_stats *out) {
    memset(out, 0, sizeof *out);
    if (c->conn != NULL) {
        out->client_id = c->conn->client_id;
        out->shards = c->conn->shards;
    }
    out->bad_records = c->bad_records;
    out->unknown_ids = c->unknown_ids;
    out->reconnects = c->reconnects;
    for (size_t i = 0; i < c->n_subs; i++) out->live += c->subs[i].live;
}
