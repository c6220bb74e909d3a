/*
 * kuard stand-in for kubelite's offline images: a small static HTTP server.
 *
 * Build: gcc -static -O2 -pthread -o kuard kuard.c
 *
 * Listens on :8080 (or --address [HOST]:PORT / --port N / a numeric $KUARD_PORT), one detached
 * thread per connection, every connection gets read/write timeouts (slow clients
 * cannot pin the server), responses always carry "Connection: close".
 * SIGTERM/SIGINT: exit(0) immediately. See README.md next to this file for the API.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

extern char **environ;

#define MAX_HEAD 16384
#define MAX_BODY 65536
#define IO_TIMEOUT_S 30
#define MAX_CONNS 1024

static int g_argc;
static char **g_argv;
static atomic_int g_conns;
static atomic_long g_fail_healthy, g_fail_ready;
static atomic_long g_calls_healthy, g_calls_ready;

/* ------------------------------------------------------------------ memory hog */
struct chunk { void *p; size_t n; struct chunk *next; };
static struct chunk *g_chunks;
static size_t g_allocated;
static pthread_mutex_t g_mem_lock = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------------ growable buffer */
struct buf { char *p; size_t len, cap; };

static void buf_grow(struct buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) abort();
    b->p = p;
    b->cap = cap;
}
static void buf_add(struct buf *b, const char *s, size_t n) {
    buf_grow(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }
static void buf_printf(struct buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    buf_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}
static void buf_json_str(struct buf *b, const char *s) {
    buf_str(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': buf_str(b, "\\\""); break;
        case '\\': buf_str(b, "\\\\"); break;
        case '\n': buf_str(b, "\\n"); break;
        case '\r': buf_str(b, "\\r"); break;
        case '\t': buf_str(b, "\\t"); break;
        default:
            if (*c < 0x20) buf_printf(b, "\\u%04x", *c);
            else buf_add(b, (const char *)c, 1);
        }
    }
    buf_str(b, "\"");
}
static void buf_html(struct buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': buf_str(b, "&lt;"); break;
        case '>': buf_str(b, "&gt;"); break;
        case '&': buf_str(b, "&amp;"); break;
        case '"': buf_str(b, "&quot;"); break;
        default: buf_add(b, s, 1);
        }
    }
}

/* ------------------------------------------------------------------ socket I/O */
static int write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static const char *status_text(int code) {
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void send_head(int fd, int code, const char *ctype, long long len) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %lld\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     code, status_text(code), ctype, len);
    write_all(fd, head, (size_t)n);
}

static void respond(int fd, int code, const char *ctype, const char *body, size_t len, int head_only) {
    send_head(fd, code, ctype, (long long)len);
    if (!head_only && len) write_all(fd, body, len);
}
static void respond_text(int fd, int code, const char *text, int head_only) {
    respond(fd, code, "text/plain; charset=utf-8", text, strlen(text), head_only);
}

/* ------------------------------------------------------------------ request */
struct request {
    char method[16];
    char target[4096]; /* raw, with query */
    char path[4096];   /* percent-decoded, no query */
    char query[4096];
    char *head;        /* raw head (request line + headers) */
    char body[MAX_BODY + 1];
    size_t body_len;
    char peer[INET6_ADDRSTRLEN + 8];
};

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}
static void url_decode(const char *in, size_t n, char *out, size_t cap, int plus_is_space) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (in[i] == '%' && i + 2 < n && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            out[o++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else if (plus_is_space && in[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = 0;
}

/* value of `key` in a query string or form body (a=1&b=2); returns 1 if found */
static int param(const char *qs, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    const char *p = qs;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        if (seg > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            url_decode(p + kl + 1, seg - kl - 1, out, cap, 1);
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* number from a JSON body like {"failNext": 3} or {"size": 1000} */
static int json_number(const char *body, const char *key, long long *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(body, pat);
    if (!p) return 0;
    p += strlen(pat);
    while (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '"') p++;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p) return 0;
    *out = v;
    return 1;
}

/* "100", "64Ki", "10M", "1Gi" -> bytes; -1 on error */
static long long parse_size(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -1;
    long long mul = 1;
    if (*end) {
        char u = (char)toupper((unsigned char)*end);
        int bin = end[1] == 'i' || end[1] == 'I';
        long long base = bin ? 1024 : 1000;
        switch (u) {
        case 'K': mul = base; break;
        case 'M': mul = base * base; break;
        case 'G': mul = base * base * base; break;
        case 'B': mul = 1; break;
        default: return -1;
        }
    }
    return (long long)(v * (double)mul);
}

static const char *header_value(const char *head, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] && !(p[2] == '\r' && p[3] == '\n')) {
        p += 2;
        const char *eol = strstr(p, "\r\n");
        if (!eol) break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t') v++;
            size_t n = (size_t)(eol - v);
            if (n >= cap) n = cap - 1;
            memcpy(out, v, n);
            out[n] = 0;
            return out;
        }
        p = eol;
    }
    return NULL;
}

/* reads head (+ body if Content-Length); returns 0 ok, else HTTP error code, -1 on disconnect */
static int read_request(int fd, struct request *r, char *raw, size_t rawcap) {
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len >= rawcap - 1) return 431;
        ssize_t n = recv(fd, raw + len, rawcap - 1 - len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        len += (size_t)n;
        raw[len] = 0;
        end = strstr(raw, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - raw) + 4;
    char saved = raw[head_len];
    raw[head_len] = 0;
    r->head = raw;

    char version[16] = "";
    if (sscanf(raw, "%15s %4095s %15s", r->method, r->target, version) != 3) return 400;
    if (strncmp(version, "HTTP/", 5) != 0) return 400;
    char *q = strchr(r->target, '?');
    size_t plen = q ? (size_t)(q - r->target) : strlen(r->target);
    url_decode(r->target, plen, r->path, sizeof r->path, 0);
    snprintf(r->query, sizeof r->query, "%s", q ? q + 1 : "");

    char cl[32];
    r->body_len = 0;
    r->body[0] = 0;
    if (header_value(raw, "Content-Length", cl, sizeof cl)) {
        long long want = atoll(cl);
        if (want < 0) return 400;
        if (want > MAX_BODY) return 413;
        raw[head_len] = saved;
        size_t have = len - head_len;
        if (have > (size_t)want) have = (size_t)want;
        memcpy(r->body, raw + head_len, have);
        while (have < (size_t)want) {
            ssize_t n = recv(fd, r->body + have, (size_t)want - have, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return -1;
            have += (size_t)n;
        }
        r->body_len = have;
        r->body[have] = 0;
        raw[head_len] = 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ handlers */
static void add_addresses(struct buf *b, int html) {
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) != 0) return;
    int first = 1;
    for (i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        int fam = i->ifa_addr->sa_family;
        if (fam != AF_INET && fam != AF_INET6) continue;
        char a[INET6_ADDRSTRLEN];
        const void *src = fam == AF_INET ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
                                         : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
        if (!inet_ntop(fam, src, a, sizeof a)) continue;
        if (html) {
            buf_str(b, "<li>");
            buf_html(b, i->ifa_name);
            buf_str(b, ": ");
            buf_html(b, a);
            buf_str(b, "</li>\n");
        } else {
            if (!first) buf_str(b, ",");
            buf_str(b, "{\"interface\":");
            buf_json_str(b, i->ifa_name);
            buf_str(b, ",\"address\":");
            buf_json_str(b, a);
            buf_str(b, "}");
        }
        first = 0;
    }
    freeifaddrs(ifs);
}

static void handle_index(int fd, struct request *r, int head_only) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *color = getenv("KUARD_COLOR");
    struct buf b = {0};
    buf_str(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>KUAR Demo</title></head><body>\n");
    buf_str(&b, "<h1>KUAR Demo</h1>\n<p>Hostname: <b id=\"hostname\">");
    buf_html(&b, host);
    buf_str(&b, "</b></p>\n");
    if (color) {
        buf_str(&b, "<p>Version: <b id=\"version\">");
        buf_html(&b, color);
        buf_str(&b, "</b></p>\n");
    }
    buf_str(&b, "<h2>Addresses</h2>\n<ul id=\"addresses\">\n");
    add_addresses(&b, 1);
    buf_str(&b, "</ul>\n<h2>Request</h2>\n<p>From: ");
    buf_html(&b, r->peer);
    buf_str(&b, "</p>\n<pre id=\"request\">");
    buf_html(&b, r->head);
    buf_str(&b, "</pre>\n<h2>API</h2>\n<ul>"
                "<li><a href=\"/healthy\">/healthy</a> (fail next N: /healthy/api/fail?n=N)</li>"
                "<li><a href=\"/ready\">/ready</a> (fail next N: /ready/api/fail?n=N)</li>"
                "<li><a href=\"/env/api\">/env/api</a></li>"
                "<li><a href=\"/mem/api\">/mem/api</a> (alloc?size=N, clear)</li>"
                "<li><a href=\"/fs/\">/fs/</a></li></ul>\n</body></html>\n");
    respond(fd, 200, "text/html; charset=utf-8", b.p, b.len, head_only);
    free(b.p);
}

static void handle_probe(int fd, struct request *r, atomic_long *fail, atomic_long *calls, const char *sub,
                         int head_only) {
    char v[64];
    long long n;
    if (*sub == 0 || strcmp(sub, "/") == 0) {
        atomic_fetch_add(calls, 1);
        long cur = atomic_load(fail);
        while (cur > 0 && !atomic_compare_exchange_weak(fail, &cur, cur - 1)) {
        }
        if (cur > 0) respond_text(fd, 500, "fail", head_only);
        else respond_text(fd, 200, "ok", head_only);
        return;
    }
    if (strcmp(sub, "/api/fail") == 0) {
        if (param(r->query, "n", v, sizeof v) || param(r->body, "n", v, sizeof v)) n = atoll(v);
        else if (!json_number(r->body, "failNext", &n)) n = 1;
        atomic_store(fail, n < 0 ? 0 : n);
    } else if (strcmp(sub, "/api/config") == 0 || strcmp(sub, "/api") == 0) {
        if (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0) {
            if (json_number(r->body, "failNext", &n) || (param(r->body, "failNext", v, sizeof v) && (n = atoll(v), 1)))
                atomic_store(fail, n < 0 ? 0 : n);
        } else if (param(r->query, "failNext", v, sizeof v)) {
            n = atoll(v);
            atomic_store(fail, n < 0 ? 0 : n);
        }
    } else {
        respond_text(fd, 404, "not found\n", head_only);
        return;
    }
    struct buf b = {0};
    buf_printf(&b, "{\"failNext\":%ld,\"calls\":%ld}\n", atomic_load(fail), atomic_load(calls));
    respond(fd, 200, "application/json", b.p, b.len, head_only);
    free(b.p);
}

static void handle_env(int fd, int head_only) {
    struct buf b = {0};
    buf_str(&b, "{\"commandLine\":[");
    for (int i = 0; i < g_argc; i++) {
        if (i) buf_str(&b, ",");
        buf_json_str(&b, g_argv[i]);
    }
    buf_str(&b, "],\"env\":{");
    int first = 1;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        char key[1024];
        size_t kl = (size_t)(eq - *e);
        if (kl >= sizeof key) kl = sizeof key - 1;
        memcpy(key, *e, kl);
        key[kl] = 0;
        if (!first) buf_str(&b, ",");
        first = 0;
        buf_json_str(&b, key);
        buf_str(&b, ":");
        buf_json_str(&b, eq + 1);
    }
    buf_str(&b, "}}\n");
    respond(fd, 200, "application/json", b.p, b.len, head_only);
    free(b.p);
}

static void mem_status(int fd, int code, const char *err, int head_only) {
    struct buf b = {0};
    pthread_mutex_lock(&g_mem_lock);
    size_t n = 0;
    for (struct chunk *c = g_chunks; c; c = c->next) n++;
    buf_printf(&b, "{\"allocated\":%zu,\"chunks\":%zu", g_allocated, n);
    pthread_mutex_unlock(&g_mem_lock);
    if (err) {
        buf_str(&b, ",\"error\":");
        buf_json_str(&b, err);
    }
    buf_str(&b, "}\n");
    respond(fd, code, "application/json", b.p, b.len, head_only);
    free(b.p);
}

static void handle_mem(int fd, struct request *r, const char *sub, int head_only) {
    if (strcmp(sub, "/api/alloc") == 0) {
        char v[64];
        long long size = -1, js;
        if (param(r->query, "size", v, sizeof v) || param(r->body, "size", v, sizeof v)) size = parse_size(v);
        else if (json_number(r->body, "size", &js)) size = js;
        if (size <= 0) {
            mem_status(fd, 400, "size must be a positive number of bytes (suffixes K, M, G, Ki, Mi, Gi)", head_only);
            return;
        }
        void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            mem_status(fd, 500, strerror(errno), head_only);
            return;
        }
        long page = sysconf(_SC_PAGESIZE);
        for (long long off = 0; off < size; off += page) ((volatile char *)p)[off] = 1; /* touch */
        struct chunk *c = malloc(sizeof *c);
        c->p = p;
        c->n = (size_t)size;
        pthread_mutex_lock(&g_mem_lock);
        c->next = g_chunks;
        g_chunks = c;
        g_allocated += (size_t)size;
        pthread_mutex_unlock(&g_mem_lock);
        mem_status(fd, 200, NULL, head_only);
    } else if (strcmp(sub, "/api/clear") == 0) {
        pthread_mutex_lock(&g_mem_lock);
        struct chunk *c = g_chunks;
        g_chunks = NULL;
        g_allocated = 0;
        pthread_mutex_unlock(&g_mem_lock);
        while (c) {
            struct chunk *next = c->next;
            munmap(c->p, c->n);
            free(c);
            c = next;
        }
        mem_status(fd, 200, NULL, head_only);
    } else if (strcmp(sub, "/api") == 0 || *sub == 0 || strcmp(sub, "/") == 0) {
        mem_status(fd, 200, NULL, head_only);
    } else {
        respond_text(fd, 404, "not found\n", head_only);
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void handle_fs(int fd, const char *path, int head_only) {
    char full[4200];
    snprintf(full, sizeof full, "/%s", path);
    struct stat st;
    if (stat(full, &st) != 0) {
        respond_text(fd, errno == EACCES ? 403 : 404, strerror(errno), head_only);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(full);
        if (!d) {
            respond_text(fd, 403, strerror(errno), head_only);
            return;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                names = realloc(names, cap * sizeof *names);
            }
            char child[8400];
            struct stat cst;
            snprintf(child, sizeof child, "%s/%s", full, de->d_name);
            int isdir = stat(child, &cst) == 0 && S_ISDIR(cst.st_mode);
            size_t l = strlen(de->d_name);
            names[n] = malloc(l + 2);
            memcpy(names[n], de->d_name, l);
            names[n][l] = isdir ? '/' : 0;
            names[n][l + 1] = 0;
            n++;
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_str);
        struct buf b = {0};
        for (size_t i = 0; i < n; i++) {
            buf_str(&b, names[i]);
            buf_str(&b, "\n");
            free(names[i]);
        }
        free(names);
        respond(fd, 200, "text/plain; charset=utf-8", b.p ? b.p : "", b.len, head_only);
        free(b.p);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        respond_text(fd, 403, "not a regular file\n", head_only);
        return;
    }
    int f = open(full, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        respond_text(fd, 403, strerror(errno), head_only);
        return;
    }
    send_head(fd, 200, "application/octet-stream", (long long)st.st_size);
    if (!head_only) {
        char chunk[65536];
        long long left = st.st_size;
        while (left > 0) {
            ssize_t n = read(f, chunk, sizeof chunk < (size_t)left ? sizeof chunk : (size_t)left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || write_all(fd, chunk, (size_t)n) != 0) break;
            left -= n;
        }
    }
    close(f);
}

static const char *strip_prefix(const char *path, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0) return NULL;
    if (path[n] != 0 && path[n] != '/') return NULL;
    return path + n;
}

static void route(int fd, struct request *r) {
    int head_only = strcmp(r->method, "HEAD") == 0;
    const char *sub;
    if (strcmp(r->path, "/") == 0 || strcmp(r->path, "/index.html") == 0) {
        handle_index(fd, r, head_only);
    } else if ((sub = strip_prefix(r->path, "/healthy"))) {
        handle_probe(fd, r, &g_fail_healthy, &g_calls_healthy, sub, head_only);
    } else if ((sub = strip_prefix(r->path, "/ready"))) {
        handle_probe(fd, r, &g_fail_ready, &g_calls_ready, sub, head_only);
    } else if (strcmp(r->path, "/env/api") == 0 || strcmp(r->path, "/env") == 0) {
        handle_env(fd, head_only);
    } else if ((sub = strip_prefix(r->path, "/mem"))) {
        handle_mem(fd, r, sub, head_only);
    } else if ((sub = strip_prefix(r->path, "/fs"))) {
        handle_fs(fd, *sub == '/' ? sub + 1 : sub, head_only);
    } else if (strcmp(r->path, "/api/exit") == 0) {
        char v[32];
        int code = param(r->query, "code", v, sizeof v) ? atoi(v) : 0;
        respond_text(fd, 200, "bye\n", head_only);
        shutdown(fd, SHUT_WR);
        _exit(code);
    } else {
        respond_text(fd, 404, "not found\n", head_only);
    }
}

/* ------------------------------------------------------------------ server */
struct conn { int fd; struct sockaddr_storage peer; };

static void *serve_conn(void *arg) {
    struct conn *c = arg;
    int fd = c->fd;
    struct request *r = calloc(1, sizeof *r);
    char *raw = malloc(MAX_HEAD + 1);
    if (!r || !raw) goto out;
    if (c->peer.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->peer;
        inet_ntop(AF_INET6, &s6->sin6_addr, r->peer, INET6_ADDRSTRLEN);
        if (strncmp(r->peer, "::ffff:", 7) == 0) memmove(r->peer, r->peer + 7, strlen(r->peer + 7) + 1);
        snprintf(r->peer + strlen(r->peer), 8, ":%u", ntohs(s6->sin6_port));
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&c->peer;
        inet_ntop(AF_INET, &s4->sin_addr, r->peer, INET6_ADDRSTRLEN);
        snprintf(r->peer + strlen(r->peer), 8, ":%u", ntohs(s4->sin_port));
    }
    int rc = read_request(fd, r, raw, MAX_HEAD + 1);
    if (rc > 0) respond_text(fd, rc, status_text(rc), 0);
    else if (rc == 0) route(fd, r);
out:
    shutdown(fd, SHUT_WR);
    /* drain briefly so the peer sees a clean FIN instead of a reset */
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char sink[1024];
    while (recv(fd, sink, sizeof sink, 0) > 0) {
    }
    close(fd);
    free(raw);
    free(r);
    free(c);
    atomic_fetch_sub(&g_conns, 1);
    return NULL;
}

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static int listen_on(const char *host, int port) {
    int one = 1, zero = 0, fd = -1;
    if (!host || !*host || strcmp(host, "0.0.0.0") != 0) {
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
            if (host && *host && inet_pton(AF_INET6, host, &a6.sin6_addr) != 1) {
                close(fd);
                fd = -1;
            } else {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
                if (bind(fd, (struct sockaddr *)&a6, sizeof a6) != 0) {
                    close(fd);
                    fd = -1;
                }
            }
        }
    }
    if (fd < 0) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (host && *host && inet_pton(AF_INET, host, &a4.sin_addr) != 1) {
            fprintf(stderr, "kuard: bad address %s\n", host);
            return -1;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0) {
            perror("kuard: bind");
            return -1;
        }
    }
    if (listen(fd, 512) != 0) {
        perror("kuard: listen");
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    g_argc = argc;
    g_argv = argv;
    int port = 8080;
    char host[128] = "";
    /* a number only: a Service named "kuard" gives every later container of its namespace the
     * Docker link variable KUARD_PORT=tcp://<cluster IP>:<port> (enableServiceLinks) */
    const char *env_port = getenv("KUARD_PORT");
    if (env_port && *env_port && strspn(env_port, "0123456789") == strlen(env_port)) port = atoi(env_port);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strncmp(a, "--address=", 10) == 0) v = a + 10;
        else if (strcmp(a, "--address") == 0 && i + 1 < argc) v = argv[++i];
        if (v) {
            const char *colon = strrchr(v, ':');
            if (colon) {
                size_t hl = (size_t)(colon - v);
                if (hl >= sizeof host) hl = sizeof host - 1;
                memcpy(host, v, hl);
                host[hl] = 0;
                port = atoi(colon + 1);
            } else {
                port = atoi(v);
            }
            continue;
        }
        if (strncmp(a, "--port=", 7) == 0) port = atoi(a + 7);
        else if (strcmp(a, "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    }
    /* strip brackets of [::]:8080 */
    if (host[0] == '[') {
        size_t l = strlen(host);
        memmove(host, host + 1, l);
        if (l >= 2 && host[l - 2] == ']') host[l - 2] = 0;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = listen_on(host, port);
    if (lfd < 0) return 1;
    fprintf(stderr, "kuard: serving on %s:%d\n", *host ? host : "*", port);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (;;) {
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            sleep(1);
            continue;
        }
        socklen_t sl = sizeof c->peer;
        int fd = accept4(lfd, (struct sockaddr *)&c->peer, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            free(c);
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) usleep(100000);
            continue;
        }
        c->fd = fd;
        struct timeval tv = {IO_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (atomic_fetch_add(&g_conns, 1) >= MAX_CONNS) {
            atomic_fetch_sub(&g_conns, 1);
            respond_text(fd, 503, "too many connections\n", 0);
            close(fd);
            free(c);
            continue;
        }
        pthread_t t;
        if (pthread_create(&t, &attr, serve_conn, c) != 0) {
            atomic_fetch_sub(&g_conns, 1);
            close(fd);
            free(c);
        }
    }
}
