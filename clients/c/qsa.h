/* qsa.h: a C client of presence-b2b's QSA protocol (protocol version 1).
 *
 * The protocol is specified in docs/qsa-protocol.md and the rings under it in
 * docs/ring-layout.md; this library implements both from the documents, with
 * no dependency beyond libc (it carries its own msgpack encoder and decoder).
 *
 * The client is single-threaded and blocking with timeouts: one qsa_client
 * must not be used from two threads at once. Everything the service sends is
 * treated as hostile: every length, count, counter and index read from the
 * control socket or the shared memory is bounds-checked before use.
 *
 *     qsa_client *c;
 *     char err[256];
 *     if (qsa_connect("/run/presence-b2b/qsa.sock", "rls", 5000, &c, err, sizeof err) != QSA_OK)
 *         die(err);
 *     uint64_t id;
 *     qsa_subscribe(c, "presence", "sip:bob@example.com", "sip:alice@example.com", 5000, &id);
 *     for (;;) {
 *         qsa_event ev;
 *         int rc = qsa_next(c, -1, &ev);
 *         if (rc == 1) { ...ev.msg.state, ev.record...; qsa_event_free(&ev); }
 *         else if (rc == QSA_ELOST) qsa_reconnect(c, -1);   // replays live subscriptions
 *     }
 *     qsa_close(c);    // closing the control socket ends every subscription
 */
#ifndef QSA_H
#define QSA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QSA_PROTOCOL_VERSION 1

/* Return codes (negative) of the functions below. */
enum {
    QSA_OK = 0,
    QSA_ECONNECT = -1, /* cannot connect, or the handshake failed (see qsa_last_error) */
    QSA_EREFUSED = -2, /* the service refused the connection (its reason in the error text) */
    QSA_ETIMEOUT = -3, /* the request ring stayed full for the whole timeout */
    QSA_ELOST = -4,    /* the connection is lost: call qsa_reconnect */
    QSA_ENOMEM = -5,
    QSA_EINVAL = -6,   /* a bad argument: not UTF-8, too long for a ring record, unknown id */
    QSA_EPROTO = -7,   /* a message that does not decode (qsa_decode_status) */
    QSA_EINTR = -8     /* a signal interrupted the wait; nothing was lost, call again */
};

/* A string from a decoded message: `len` bytes of valid UTF-8 at `ptr`, NOT
 * NUL-terminated (it may contain NUL). Points into the message's own copy of
 * the record; valid until qsa_message_free. */
typedef struct {
    const char *ptr;
    size_t len;
} qsa_str;

typedef struct {
    qsa_str text;
    int has_lang;
    qsa_str lang;
} qsa_note;

enum { QSA_BASIC_NONE = 0, QSA_BASIC_OPEN = 1, QSA_BASIC_CLOSED = 2 };

typedef struct {
    qsa_str id;
    int basic; /* QSA_BASIC_* (NONE: nil or absent) */
    int has_contact;
    qsa_str contact;
    int has_priority;
    double priority;
    int has_timestamp;
    qsa_str timestamp;
    qsa_note *notes;
    size_t n_notes;
    qsa_str *extensions;
    size_t n_extensions;
} qsa_tuple;

typedef struct {
    qsa_str entity;
    qsa_tuple *tuples;
    size_t n_tuples;
    qsa_note *notes;
    size_t n_notes;
    qsa_str *extensions;
    size_t n_extensions;
} qsa_presentity;

enum { QSA_MSG_STATUS = 1, QSA_MSG_ERROR = 2 };

/* One decoded record of a status ring: a `status` or an `error` message.
 * Absent optional keys hold their protocol defaults (empty strings, 0, nil). */
typedef struct {
    int type; /* QSA_MSG_STATUS or QSA_MSG_ERROR */
    uint64_t id;
    /* status */
    qsa_str state; /* "active", "pending" or "terminated" */
    qsa_str reason;
    int has_presentity;
    qsa_presentity presentity;
    qsa_str content_type;
    qsa_str body; /* raw bytes (msgpack bin): NOT necessarily UTF-8 */
    qsa_str parse_error; /* the message's `error` key: why presentity is nil */
    uint64_t merged;
    /* a resource list's status (RFC 4662): the list's URI, and the resource's
       ("" for the list itself); both "" for every other status */
    qsa_str list;
    qsa_str resource;
    /* error: `kind` is an opaque string (new kinds appear without notice) */
    qsa_str kind;
    int64_t code;
    qsa_str detail;
    int has_retry_in; /* 0: final, the subscription is over */
    double retry_in;
    /* private */
    uint8_t *copy_;
} qsa_message;

/* The overall basic status as `presence-b2b watch` shows it: OPEN if any
 * tuple is open, else CLOSED if any is closed, else NONE. */
int qsa_presentity_basic(const qsa_presentity *p);

/* A message with the names it was subscribed with. record and subscriber are
 * the event's own copies. */
typedef struct {
    qsa_message msg;
    char *record;
    char *subscriber;
    int final; /* 1: the last message of this id; the client forgot the id */
} qsa_event;

/* Decode one status-ring record (copied by the decoder; `buf` may be freed
 * afterwards). Returns QSA_OK, QSA_EPROTO (reason in err) or QSA_ENOMEM. On
 * success free `out` with qsa_message_free. Never reads outside buf[0..len). */
int qsa_decode_status(const void *buf, size_t len, qsa_message *out, char *err, size_t errlen);
void qsa_message_free(qsa_message *m);
void qsa_event_free(qsa_event *ev);

/* Encoders for the two requests (for tests and for programs that write
 * their own rings); return the encoded length, or 0 if `cap` is too small
 * or a string is not UTF-8. */
size_t qsa_encode_subscribe(uint8_t *out, size_t cap, uint64_t id, const char *package,
                            const char *record, const char *subscriber);
size_t qsa_encode_unsubscribe(uint8_t *out, size_t cap, uint64_t id);

typedef struct qsa_client qsa_client;

/* Connect to the control socket at `path`, say hello as `name`, receive and
 * attach every ring of the welcome. timeout_ms < 0: no limit. On failure
 * *out is NULL and err (if given) says why; QSA_EREFUSED carries the
 * service's reason. */
int qsa_connect(const char *path, const char *name, int timeout_ms, qsa_client **out, char *err,
                size_t errlen);

/* Subscribe `record` as `subscriber` in event package `package`; the new id
 * (counted up from 1, never reused) goes to *id. Waits up to timeout_ms while
 * the request ring is full (QSA_ETIMEOUT: nothing was sent or kept). While
 * the connection is lost the subscription is kept and sent by
 * qsa_reconnect. */
int qsa_subscribe(qsa_client *c, const char *package, const char *record, const char *subscriber,
                  int timeout_ms, uint64_t *id);

/* End subscription `id`; its final status (terminated, "unsubscribed") still
 * comes as an event. Unknown ids: QSA_OK, nothing sent. */
int qsa_unsubscribe(qsa_client *c, uint64_t id, int timeout_ms);

/* The next message for one of this client's ids. Returns 1 and fills *ev
 * (free it with qsa_event_free), 0 after timeout_ms (< 0: no limit),
 * QSA_ELOST once the connection is gone and what was left in the status
 * rings has been delivered, QSA_EINTR on a signal. Records that do not
 * decode and messages for unknown ids are counted and skipped. */
int qsa_next(qsa_client *c, int timeout_ms, qsa_event *ev);

/* After QSA_ELOST: reconnect with jittered exponential backoff (0.1 s
 * doubling to 5 s, each delay times a random factor in [0.5, 1]) until
 * connected or timeout_ms (< 0: no limit), then replay every live
 * subscription under its id, in the order they were made. Returns QSA_OK,
 * QSA_ETIMEOUT or QSA_EINTR (call again: a replay cut short resumes where it
 * stopped), or QSA_ENOMEM. A refusal or a failed handshake is retried
 * (qsa_last_error says the latest reason). A connected client with nothing
 * to replay returns QSA_OK at once. */
int qsa_reconnect(qsa_client *c, int timeout_ms);

/* Close the control socket and the rings; the service then ends every
 * subscription of this connection. Frees c. */
void qsa_close(qsa_client *c);

int qsa_connected(const qsa_client *c);
const char *qsa_last_error(const qsa_client *c);

typedef struct {
    uint64_t client_id;  /* the service's number for this connection */
    uint32_t shards;
    uint64_t bad_records; /* malformed ring records and undecodable messages */
    uint64_t unknown_ids; /* messages for ids this client does not know */
    uint64_t reconnects;
    size_t live;          /* live subscriptions (replayed on reconnect) */
} qsa_stats;
void qsa_get_stats(const qsa_client *c, qsa_stats *out);

#ifdef __cplusplus
}
#endif

#endif
