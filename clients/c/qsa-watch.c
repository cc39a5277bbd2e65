/* qsa-watch: the C twin of `presence-b2b watch`.
 *
 *     qsa-watch RECORD --subscriber URI [--control-socket PATH | --config FILE]
 *               [--event PACKAGE] [--json] [--count N] [--timeout S]
 *
 * Same arguments, same output (the --json lines are byte for byte those of
 * the Python watch, but for the `document` key of packages other than
 * presence, which this one does not print), same exit status: 0 done or interrupted, 1 --timeout
 * before --count statuses, 2 unreachable, refused or a usage error. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qsa-json.h"
#include "qsa.h"

#define PROG "qsa-watch"

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

typedef struct {
    const char *record, *subscriber, *control_socket, *config, *package;
    int json;
    long count;
    int has_timeout;
    double timeout;
} args;

static int usage(const char *why) {
    fprintf(stderr,
            "usage: " PROG " RECORD --subscriber URI [--control-socket PATH] [--config FILE]\n"
            "                 [--event PACKAGE] [--json] [--count N] [--timeout S]\n" PROG ": error: %s\n",
            why);
    return 2;
}

/* --opt VALUE or --opt=VALUE; NULL if argv[*i] is not --opt. */
static const char *option(int argc, char **argv, int *i, const char *name, int *missing) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

static int parse(int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    a->package = "presence";
    for (int i = 1; i < argc; i++) {
        const char *v;
        int missing = 0;
        char *end;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: " PROG " RECORD --subscriber URI [--control-socket PATH] [--config FILE]\n"
                   "                 [--event PACKAGE] [--json] [--count N] [--timeout S]\n");
            exit(0);
        } else if (strcmp(argv[i], "--json") == 0) {
            a->json = 1;
        } else if ((v = option(argc, argv, &i, "--subscriber", &missing))) {
            a->subscriber = v;
        } else if ((v = option(argc, argv, &i, "--control-socket", &missing))) {
            a->control_socket = v;
        } else if ((v = option(argc, argv, &i, "--config", &missing))) {
            a->config = v;
        } else if ((v = option(argc, argv, &i, "--event", &missing)) ||
                   (v = option(argc, argv, &i, "--package", &missing))) {
            a->package = v;
        } else if ((v = option(argc, argv, &i, "--count", &missing))) {
            errno = 0;
            a->count = strtol(v, &end, 10);
            if (errno || end == v || *end) return usage("argument --count: invalid int value");
        } else if ((v = option(argc, argv, &i, "--timeout", &missing))) {
            a->timeout = strtod(v, &end);
            if (end == v || *end || isnan(a->timeout)) return usage("argument --timeout: invalid float value");
            a->has_timeout = 1;
        } else if (missing) {
            return usage("an option is missing its value");
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            return usage("unrecognized argument");
        } else if (a->record == NULL) {
            a->record = argv[i];
        } else {
            return usage("unrecognized argument");
        }
    }
    if (a->record == NULL) return usage("the following arguments are required: record");
    if (a->subscriber == NULL) return usage("the following arguments are required: --subscriber");
    return 0;
}

/* The control socket a configuration file names: `control_socket` in its
 * [server] table (a basic or literal TOML string on one line). Only that key
 * is read; the Python watch validates the whole file. NULL if the file
 * cannot be read; "" if it does not name one. */
static char *socket_from_config(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    char line[8192], *found = strdup("");
    int in_server = 0;
    while (found != NULL && fgets(line, sizeof line, f)) {
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '[') {
            char *close = strchr(s, ']');
            in_server = close != NULL && close - s - 1 == 6 && strncmp(s + 1, "server", 6) == 0;
            continue;
        }
        if (!in_server || strncmp(s, "control_socket", 14) != 0) continue;
        s += 14;
        while (*s == ' ' || *s == '\t') s++;
        if (*s++ != '=') continue;
        while (*s == ' ' || *s == '\t') s++;
        char quote = *s;
        if (quote != '"' && quote != '\'') continue;
        char *out = malloc(strlen(s) + 1), *o = out;
        if (out == NULL) break;
        for (s++; *s && *s != quote; s++) {
            if (quote == '"' && *s == '\\' && s[1]) {
                s++;
                *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
            } else {
                *o++ = *s;
            }
        }
        *o = 0;
        free(found);
        found = out;
    }
    fclose(f);
    return found;
}

static char *default_socket(void) {
    const char *dir = getenv("RUNTIME_DIRECTORY");
    size_t n = dir != NULL ? strcspn(dir, ":") : 0;
    if (dir == NULL) {
        dir = "/run/presence-b2b";
        n = strlen(dir);
    }
    char *out = malloc(n + sizeof "/qsa.sock");
    if (out != NULL) sprintf(out, "%.*s/qsa.sock", (int)n, dir);
    return out;
}

/* Python's repr() of a str, near enough for the human line. */
static void put_repr(FILE *out, qsa_str s) {
    fputc('\'', out);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '\'' || c == '\\') fprintf(out, "\\%c", c);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c < 0x20 || c == 0x7f) fprintf(out, "\\x%02x", c);
        else fputc(c, out);
    }
    fputc('\'', out);
}

static void put_notes(FILE *out, const qsa_note *notes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        fputc(' ', out);
        put_repr(out, notes[i].text);
    }
}

/* One human line: time, record, then what changed. */
static void print_line(FILE *out, const qsa_event *ev) {
    const qsa_message *m = &ev->msg;
    char stamp[16];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%H:%M:%S", localtime(&now));
    fprintf(out, "%s %s ", stamp, ev->record);
    if (m->type == QSA_MSG_ERROR) {
        fprintf(out, "error %.*s", (int)m->kind.len, m->kind.ptr);
        if (m->code) fprintf(out, " %lld", (long long)m->code);
        if (m->detail.len) {
            fputc(' ', out);
            put_repr(out, m->detail);
        }
        if (m->has_retry_in) fprintf(out, " retry in %g s", m->retry_in);
        else fputs(" final", out);
        return;
    }
    if (m->resource.len) fprintf(out, "%.*s ", (int)m->resource.len, m->resource.ptr);
    fprintf(out, "%.*s", (int)m->state.len, m->state.ptr);
    if (m->reason.len) fprintf(out, " (%.*s)", (int)m->reason.len, m->reason.ptr);
    int basic = m->has_presentity ? qsa_presentity_basic(&m->presentity) : QSA_BASIC_NONE;
    fputs(basic == QSA_BASIC_OPEN ? " open" : basic == QSA_BASIC_CLOSED ? " closed" : " -", out);
    if (m->has_presentity) {
        put_notes(out, m->presentity.notes, m->presentity.n_notes);
        for (size_t i = 0; i < m->presentity.n_tuples; i++)
            put_notes(out, m->presentity.tuples[i].notes, m->presentity.tuples[i].n_notes);
    }
    if (m->parse_error.len) fprintf(out, " [%.*s]", (int)m->parse_error.len, m->parse_error.ptr);
    if (m->merged) fprintf(out, " [+%llu merged]", (unsigned long long)m->merged);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int watch(const args *a, const char *path) {
    qsa_client *c;
    char err[600];
    int rc = qsa_connect(path, "watch", 5000, &c, err, sizeof err);
    if (rc != QSA_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        return 2;
    }
    uint64_t id;
    rc = qsa_subscribe(c, a->package, a->record, a->subscriber, 5000, &id);
    if (rc != QSA_OK) {
        fprintf(stderr, PROG ": cannot subscribe: %s\n", qsa_last_error(c));
        qsa_close(c);
        return 2;
    }
    int64_t deadline = -1;
    if (a->has_timeout) {
        double ms = a->timeout * 1000.0;
        deadline = now_ms() + (ms > 1e12 ? (int64_t)1e12 : ms < 0 ? 0 : (int64_t)ms);
    }
    long statuses = 0;
    int code = 0;
    while (!stop && (!a->count || statuses < a->count)) {
        int left = -1;
        if (deadline >= 0) {
            int64_t r = deadline - now_ms();
            if (r <= 0) {
                if (a->count) {
                    fprintf(stderr, PROG ": timeout after %g s with %ld of %ld statuses\n", a->timeout,
                            statuses, a->count);
                    code = 1;
                }
                break;
            }
            left = r > 1000000000 ? 1000000000 : (int)r;
        }
        qsa_event ev;
        rc = qsa_next(c, left, &ev);
        if (rc == QSA_ELOST) {
            fprintf(stderr, PROG ": connection lost (%s); reconnecting\n", qsa_last_error(c));
            qsa_reconnect(c, left); /* QSA_EINTR and QSA_ETIMEOUT: the loop's checks decide */
            continue;
        }
        if (rc != 1) continue; /* 0: the deadline check above; QSA_EINTR: stop */
        if (a->json) qsa_json_event(stdout, &ev.msg, ev.record, ev.subscriber);
        else print_line(stdout, &ev);
        fputc('\n', stdout);
        int is_status = ev.msg.type == QSA_MSG_STATUS;
        qsa_event_free(&ev);
        if (fflush(stdout) != 0) break; /* EPIPE (output into `head`): not an error */
        if (is_status) statuses++;
    }
    qsa_unsubscribe(c, id, 2000);
    qsa_close(c);
    return code;
}

int main(int argc, char **argv) {
    args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    if (a.count < 0) {
        fprintf(stderr, PROG ": --count must be >= 0\n");
        return 2;
    }
    char *path;
    if (a.control_socket != NULL) {
        path = strdup(a.control_socket);
    } else if (a.config != NULL) {
        path = socket_from_config(a.config);
        if (path == NULL) {
            fprintf(stderr, PROG ": configuration refused: cannot read %s: %s\n", a.config, strerror(errno));
            return 2;
        }
        if (*path == 0) {
            free(path);
            path = default_socket();
        }
    } else {
        path = default_socket();
    }
    if (path == NULL) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a signal ends the wait at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = watch(&a, path);
    free(path);
    return rc;
}
