/* Where a run's access events go (Sink): the collector's ring, or for a prefetcher the access
 * hook's list of event tuples; and whether a GET must go to the Python path to be reported.
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 */
#ifndef PREDIS_FASTPATH_EVENT_SINK_H
#define PREDIS_FASTPATH_EVENT_SINK_H

#include <stdint.h>
#include <string.h>
#include "keycodes.h"
#include "ring.h"

enum { EV_HIT = 0, EV_MISS = 1 };  /* models/collector.py outcome codes */
enum { OP_GET = 0, OP_MGET = 1 };  /* and its op codes */

typedef struct {
    /* list mode (a prefetcher learns from the events in Python): the access hook's list of
     * (key, op, outcome, size, db, tenant) tuples (None: nobody reads them now, they are only
     * counted), and the prefetcher's unread entries, whose first read the Python path must
     * report (PREFETCHED_HIT) */
    int list_mode;
    PyObject *list, *unread, *db_obj, *tenant_obj, *op_obj, *op_mget_obj, *hit_obj, *miss_obj;
    Ring *ring;  /* ring mode (the collector alone) */
    int64_t ts_us;
    Py_ssize_t written;  /* events of this run */
} Sink;

static void sink_release(Sink *k) {
    Py_CLEAR(k->op_obj);
    Py_CLEAR(k->op_mget_obj);
    Py_CLEAR(k->hit_obj);
    Py_CLEAR(k->miss_obj);
}

/* sink: the collector's Ring (its events' time: now_ms), or (events: list, unread: dict or
 * None, db: int, tenant: int). */
static int sink_open(Sink *k, PyObject *sink, long long now_ms) {
    memset(k, 0, sizeof(*k));
    if (PyTuple_Check(sink) && PyTuple_GET_SIZE(sink) == 4
        && (PyList_CheckExact(PyTuple_GET_ITEM(sink, 0)) || PyTuple_GET_ITEM(sink, 0) == Py_None)) {
        k->list_mode = 1;
        k->list = PyTuple_GET_ITEM(sink, 0) == Py_None ? NULL : PyTuple_GET_ITEM(sink, 0);
        k->unread = PyTuple_GET_ITEM(sink, 1);
        k->db_obj = PyTuple_GET_ITEM(sink, 2);
        k->tenant_obj = PyTuple_GET_ITEM(sink, 3);
        k->op_obj = PyLong_FromLong(OP_GET);
        k->op_mget_obj = PyLong_FromLong(OP_MGET);
        k->hit_obj = PyLong_FromLong(EV_HIT);
        k->miss_obj = PyLong_FromLong(EV_MISS);
        if (k->op_obj == NULL || k->op_mget_obj == NULL || k->hit_obj == NULL || k->miss_obj == NULL) {
            sink_release(k);
            return -1;
        }
        if (k->unread == Py_None)
            k->unread = NULL;
        else if (!PyDict_CheckExact(k->unread)) {
            sink_release(k);
            PyErr_SetString(PyExc_TypeError, "event sink: unread entries must be a dict");
            return -1;
        }
        return 0;
    }
    if (Py_TYPE(sink) != &RingType) {
        PyErr_SetString(PyExc_TypeError, "event sink: the collector's ring(), or (list, unread, db, tenant)");
        return -1;
    }
    k->ring = (Ring *)sink;
    k->ts_us = now_ms * 1000;
    return 0;
}

/* 1: the Python path must take this GET (the first read of a prefetched entry); -1: error */
static int sink_defers(Sink *k, PyObject *key) {
    if (k == NULL || k->unread == NULL || PyDict_GET_SIZE(k->unread) == 0)
        return 0;
    return PyDict_Contains(k->unread, key);
}

static int sink_event(Sink *k, PyObject *key, int op, int outcome, Py_ssize_t size) {
    if (k->list_mode && k->list == NULL) {  /* no list: events only counted */
        k->written++;
        return 0;
    }
    if (k->list != NULL) {
        PyObject *size_obj = PyLong_FromSsize_t(size);
        if (size_obj == NULL)
            return -1;
        PyObject *event = PyTuple_Pack(6, key, op ? k->op_mget_obj : k->op_obj,
                                       outcome ? k->miss_obj : k->hit_obj, size_obj, k->db_obj, k->tenant_obj);
        Py_DECREF(size_obj);
        if (event == NULL)
            return -1;
        int failed = PyList_Append(k->list, event);
        Py_DECREF(event);
        if (failed)
            return -1;
        k->written++;
        return 0;
    }
    /* the ring's fields in locals first: extensions build with -fno-strict-aliasing, so
     * each store into a column would otherwise make the compiler read them all again */
    Ring *r = k->ring;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(key);
    const Py_ssize_t n = PyBytes_GET_SIZE(key), at = r->position, capacity = r->capacity;
    uint64_t *const key_hash = r->key_hash, *const prefix_hash = r->prefix_hash;
    int64_t *const suffix = r->suffix, *const ts = r->ts;
    uint32_t *const size_col = r->size;
    const int64_t ts_us = k->ts_us;
    const uint16_t tenant_id = r->tenant_id;
    uint16_t *const tenant = r->tenant;
    uint8_t *const op_col = r->op, *const outcome_col = r->outcome, *const raw_len = r->raw_len;
    r->position = at + 1 == capacity ? 0 : at + 1;
    r->written++;
    k->written++;
    /* the ring is far larger than the caches: ask for the lines a few events ahead now, so
     * the writes do not each wait for their line to be read in; once per 8 events, a line of
     * each 8-byte column (the 4-byte column's lines get asked for twice) */
    if (!(at & 7)) {
        Py_ssize_t ahead = at + 32 < capacity ? at + 32 : at;
        __builtin_prefetch(&key_hash[ahead], 1);
        __builtin_prefetch(&prefix_hash[ahead], 1);
        __builtin_prefetch(&suffix[ahead], 1);
        __builtin_prefetch(&ts[ahead], 1);
        __builtin_prefetch(&size_col[ahead], 1);
    }
    if (n <= RAW_KEY_BYTES) {  /* the key's bytes: its codes are the reader's work */
        key_hash[at] = n ? word_at(p, n, 0) : 0;
        prefix_hash[at] = n > 8 ? word_at(p, n, 8) : 0;
        suffix[at] = (int64_t)(n > 16 ? word_at(p, n, 16) : 0);
        raw_len[at] = (uint8_t)(n + 1);
    } else {
        key_codes(p, n, &key_hash[at], &prefix_hash[at], &suffix[at]);
        raw_len[at] = 0;
    }
    ts[at] = ts_us;
    op_col[at] = (uint8_t)op;
    outcome_col[at] = (uint8_t)outcome;
    size_col[at] = (uint32_t)size;
    tenant[at] = tenant_id;
    return 0;
}

#endif  /* PREDIS_FASTPATH_EVENT_SINK_H */
