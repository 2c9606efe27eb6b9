/* The collector's ring as a Python type (Ring, made by ring()), and ring_codes(), which gives
 * the events that hold their key raw the key's codes. event_sink.h writes events into it.
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 */
#ifndef PREDIS_FASTPATH_RING_H
#define PREDIS_FASTPATH_RING_H

#include <stdint.h>
#include <string.h>
#include "keycodes.h"

/* The collector's ring (models/collector.py's RING_LAYOUT): one writable block of capacity
 * events, column after column: key_hash prefix_hash suffix ts (8 bytes each), size (4),
 * tenant (2), op, outcome, raw_len (1 each). An event of a key of at most RAW_KEY_BYTES bytes
 * holds the key itself, zero-padded, in its three code columns (raw_len: its length + 1):
 * a run only copies it, and the codes are computed when the events are read (ring_codes, on
 * the reader's copy, in the reader's thread); a longer key's codes are computed at once
 * (raw_len 0). A Ring holds the block's buffer for its life and keeps
 * the ring's count itself: written (events ever recorded; the next goes at written %
 * capacity), which the collector reads and advances for the events its Python path records,
 * and tenant, the id the next events carry (pipeline.py sets it to the run's client's). So a
 * run given the ring as its sink writes and counts events with no Python before or after it:
 * no handle, position or time to pass in, no count to add up (ts is the run's now_ms). */
#define RING_EVENT_BYTES 41
#define RAW_KEY_BYTES 24  /* the three 8-byte code columns */

typedef struct {
    PyObject_HEAD
    Py_buffer block;
    Py_ssize_t capacity, position;  /* position == written % capacity */
    long long written;
    uint16_t tenant_id;
    uint64_t *key_hash, *prefix_hash;
    int64_t *suffix, *ts;
    uint32_t *size;
    uint16_t *tenant;
    uint8_t *op, *outcome, *raw_len;
} Ring;

static void ring_dealloc(Ring *r) {
    if (r->block.obj != NULL)
        PyBuffer_Release(&r->block);
    PyObject_Free(r);
}

static PyObject *ring_get_written(Ring *r, void *closure) {
    return PyLong_FromLongLong(r->written);
}

static int ring_set_written(Ring *r, PyObject *value, void *closure) {
    long long written = value == NULL ? -1 : PyLong_AsLongLong(value);
    if (written == -1 && PyErr_Occurred())
        return -1;
    if (written < 0) {
        PyErr_SetString(PyExc_ValueError, "ring: written is a count of events");
        return -1;
    }
    r->written = written;
    r->position = (Py_ssize_t)(written % r->capacity);
    return 0;
}

static PyObject *ring_get_tenant(Ring *r, void *closure) {
    return PyLong_FromLong(r->tenant_id);
}

static int ring_set_tenant(Ring *r, PyObject *value, void *closure) {
    long tenant = value == NULL ? -1 : PyLong_AsLong(value);
    if (tenant == -1 && PyErr_Occurred())
        return -1;
    if (tenant < 0 || tenant > UINT16_MAX) {
        PyErr_SetString(PyExc_ValueError, "ring: a tenant id is 0..65535");
        return -1;
    }
    r->tenant_id = (uint16_t)tenant;
    return 0;
}

static PyGetSetDef ring_getset[] = {
    {"written", (getter)ring_get_written, (setter)ring_set_written, "events ever recorded", NULL},
    {"tenant", (getter)ring_get_tenant, (setter)ring_set_tenant, "the tenant id of the next events", NULL},
    {NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "predis_server._fastpath.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The collector's ring, as ring(block, capacity) makes it.",
    .tp_getset = ring_getset,
};

PyDoc_STRVAR(ring_doc,
"ring(block, capacity) -> the collector's ring, for run's sink\n\n"
"Holds block's writable, 8-byte aligned buffer (capacity events: the ring's columns one after\n"
"another, see models/collector.py RING_LAYOUT) while it lives. Its written (events ever\n"
"recorded) and tenant (the id events written next carry) are read and set from Python.");

static PyObject *fast_ring(PyObject *self, PyObject *args) {
    PyObject *block;
    Py_ssize_t capacity;
    if (!PyArg_ParseTuple(args, "On", &block, &capacity))
        return NULL;
    Ring *r = PyObject_New(Ring, &RingType);
    if (r == NULL)
        return NULL;
    r->block.obj = NULL;
    r->capacity = capacity;
    r->position = r->written = 0;
    r->tenant_id = 0;
    if (PyObject_GetBuffer(block, &r->block, PyBUF_WRITABLE) < 0) {
        r->block.obj = NULL;
        Py_DECREF(r);
        return NULL;
    }
    if ((uintptr_t)r->block.buf & 7 || capacity <= 0 || capacity > r->block.len / RING_EVENT_BYTES) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_ValueError, "ring: an 8-byte aligned block of capacity events");
        return NULL;
    }
    char *b = r->block.buf;
    r->key_hash = (uint64_t *)b;
    r->prefix_hash = (uint64_t *)(b + 8 * capacity);
    r->suffix = (int64_t *)(b + 16 * capacity);
    r->ts = (int64_t *)(b + 24 * capacity);
    r->size = (uint32_t *)(b + 32 * capacity);
    r->tenant = (uint16_t *)(b + 36 * capacity);
    r->op = (uint8_t *)(b + 38 * capacity);
    r->outcome = (uint8_t *)(b + 39 * capacity);
    r->raw_len = (uint8_t *)(b + 40 * capacity);
    return (PyObject *)r;
}

PyDoc_STRVAR(ring_codes_doc,
"ring_codes(key_hash, prefix_hash, suffix, raw_len) -> None\n\n"
"A reader's copy of ring events: each event whose raw_len is nonzero holds its key (raw_len\n"
"- 1 bytes, zero-padded) in its key_hash, prefix_hash and suffix words; they get the key's\n"
"codes (models/keycodes.py's), in place, without the GIL. raw_len is left as it is.");

static PyObject *fast_ring_codes(PyObject *self, PyObject *args) {
    Py_buffer kh, ph, sx, rl;
    if (!PyArg_ParseTuple(args, "w*w*w*y*", &kh, &ph, &sx, &rl))
        return NULL;
    const Py_ssize_t count = rl.len;
    if (kh.len != 8 * count || ph.len != 8 * count || sx.len != 8 * count
        || (uintptr_t)kh.buf & 7 || (uintptr_t)ph.buf & 7 || (uintptr_t)sx.buf & 7) {
        PyBuffer_Release(&kh);
        PyBuffer_Release(&ph);
        PyBuffer_Release(&sx);
        PyBuffer_Release(&rl);
        PyErr_SetString(PyExc_ValueError, "ring_codes: three aligned 8-byte columns of raw_len's length");
        return NULL;
    }
    uint64_t *key_hash = kh.buf, *prefix_hash = ph.buf;
    int64_t *suffix = sx.buf;
    const uint8_t *raw_len = rl.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!raw_len[i])
            continue;
        const Py_ssize_t n = raw_len[i] - 1 < RAW_KEY_BYTES ? raw_len[i] - 1 : RAW_KEY_BYTES;
        unsigned char key[RAW_KEY_BYTES];
        memcpy(key, &key_hash[i], 8);
        memcpy(key + 8, &prefix_hash[i], 8);
        memcpy(key + 16, &suffix[i], 8);
        key_codes(key, n, &key_hash[i], &prefix_hash[i], &suffix[i]);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&kh);
    PyBuffer_Release(&ph);
    PyBuffer_Release(&sx);
    PyBuffer_Release(&rl);
    Py_RETURN_NONE;
}

#endif  /* PREDIS_FASTPATH_RING_H */
