/* The reply buffer a call encodes its replies into (Out: a bytes object grown as it fills),
 * and the writes into it: a bulk string, raw bytes.
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 */
#ifndef PREDIS_FASTPATH_REPLY_BUFFER_H
#define PREDIS_FASTPATH_REPLY_BUFFER_H

#include <string.h>
#include "int_text.h"

/* A growing reply buffer: a bytes object resized as it fills, trimmed at the end. */
typedef struct {
    PyObject *bytes;
    char *p;
    Py_ssize_t len, cap;
} Out;

static int out_init(Out *o, Py_ssize_t cap) {
    o->bytes = PyBytes_FromStringAndSize(NULL, cap);
    if (o->bytes == NULL)
        return -1;
    o->p = PyBytes_AS_STRING(o->bytes);
    o->len = 0;
    o->cap = cap;
    return 0;
}

/* A first guess at a reply's size (per_item bytes an item), capped: a huge MGET or a long
 * list of commands grows the buffer as it fills instead of reserving for the worst case. */
static Py_ssize_t initial_capacity(Py_ssize_t per_item, Py_ssize_t items) {
    Py_ssize_t cap = 64 + per_item * (items > 0 ? items : 1);
    return cap < (1 << 16) ? cap : (1 << 16);
}

static int out_reserve(Out *o, Py_ssize_t extra) {
    if (o->len + extra <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap * 2;
    if (cap < o->len + extra)
        cap = o->len + extra + 256;
    if (_PyBytes_Resize(&o->bytes, cap) < 0)
        return -1;
    o->p = PyBytes_AS_STRING(o->bytes);
    o->cap = cap;
    return 0;
}

static PyObject *out_finish(Out *o) {
    if (_PyBytes_Resize(&o->bytes, o->len) < 0)
        return NULL;
    return o->bytes;
}

/* "$<n>\r\n<data>\r\n" */
static int put_bulk(Out *o, const char *data, Py_ssize_t n) {
    if (out_reserve(o, n + 26) < 0)
        return -1;
    char *p = o->p + o->len;
    *p++ = '$';
    p += format_ll(p, n);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, data, n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
    o->len = p - o->p;
    return 0;
}

static int put_raw(Out *o, const char *data, Py_ssize_t n) {
    if (out_reserve(o, n) < 0)
        return -1;
    memcpy(o->p + o->len, data, n);
    o->len += n;
    return 0;
}

#endif  /* PREDIS_FASTPATH_REPLY_BUFFER_H */
