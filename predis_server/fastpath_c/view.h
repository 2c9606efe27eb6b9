/* The store as the C path sees it: the layout it shares with gpu/ (slab blocks, the access
 * clock, the device mirror's pages), the View a native_view() tuple opens to, the view kept
 * open between calls (view_take, view_park, forget_view), and reads through it: a key's slot,
 * a slot's packed bytes, a slot's string value.
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 */
#ifndef PREDIS_FASTPATH_VIEW_H
#define PREDIS_FASTPATH_VIEW_H

#include <stdint.h>
#include <string.h>

#define BLOCK 4                 /* gpu/slabs.py BLOCK */
#define PACKED_MAX 1024         /* gpu/slabs.py PACKED_MAX */
#define IN_CLASS (BLOCK - 1)    /* (n + IN_CLASS) | IN_CLASS is equal within one size class */
#define CLOCK_MASK 0xFFFFFFFFu  /* gpu/cpu.py CLOCK_MASK */
#define LFU_INIT_VAL 5          /* gpu/cpu.py LFU_INIT_VAL */
enum { SLAB_TOP = 0, SLAB_LIMIT = 1, SLAB_USED = 2, SLAB_FREE = 3 };  /* gpu/slabs.py ValueSlabs.state */
enum { MIRROR_SINCE = 0, MIRROR_INSERTS = 1 };  /* gpu/mirror.py PageMirror.state */
#define PAGE_SHIFT 12           /* gpu/mirror.py PAGE_SHIFT: region pages of 4 KiB */
#define SLOT_PAGE_SHIFT 10      /* gpu/mirror.py SLOT_PAGE_SHIFT: slot pages of 1024 slots */
#define BASE_ITEMS 16           /* the CPU store's view; the GPU store's adds 5 */

/* The store, as its native_view() hands it over. */
typedef struct {
    PyObject *index;   /* dict key -> slot */
    PyObject *values;  /* dict slot -> value object (values not packed) */
    PyObject *keys;    /* list slot -> key (None: free) */
    PyObject *free_slots;  /* list of free slots, the next one last */
    PyObject *slab_free;   /* dict size class -> array of free locations (None: no slabs yet) */
    Py_buffer exp, atime, loc, size, flags, region, live, lfu, lfu_time, counts, slab_state,
              key_loc, key_len, region_dirty, slot_dirty, mirror_state;
    int held;          /* buffers acquired so far (released in reverse) */
    Py_ssize_t nslots;
    int64_t *exp_p;
    uint32_t *atime_p, *loc_p, *size_p;
    uint8_t *flags_p, *live_p, *lfu_p;
    uint16_t *lfu_time_p;
    int64_t *counts_p;      /* [0] bytes of keys and object values (gpu/cpu.py counts) */
    int64_t *slab_state_p;  /* SLAB_TOP, SLAB_LIMIT, SLAB_USED, SLAB_FREE; NULL before the first value */
    char *region_p;
    Py_ssize_t region_len;
    /* the GPU store (NULL for the CPU store): per slot its key's packed location and length;
     * a byte per region page and per slot page a write marks for the device mirror's next
     * copy; MIRROR_SINCE, MIRROR_INSERTS (gpu/mirror.py) */
    uint32_t *key_loc_p, *key_len_p;
    uint8_t *region_dirty_p, *slot_dirty_p;
    Py_ssize_t region_pages, slot_pages;
    int64_t *mirror_p;
    PyObject *source;  /* the tuple it was opened from (a reference: compared by identity) */
} View;

static void view_release(View *v) {
    Py_buffer *bufs[] = {&v->exp, &v->atime, &v->loc, &v->size, &v->flags, &v->region, &v->live,
                         &v->lfu, &v->lfu_time, &v->counts, &v->slab_state, &v->key_loc,
                         &v->key_len, &v->region_dirty, &v->slot_dirty, &v->mirror_state};
    for (int i = v->held - 1; i >= 0; i--)
        PyBuffer_Release(bufs[i]);
    v->held = 0;
    Py_CLEAR(v->source);
}

/* Take buffer i of the tuple (writable, items of width bytes, at least min_items) and point
 * *data at its bytes; -1 with the view released on failure. An optional one may be None
 * (left unset, *data NULL). */
static int view_buffer(View *v, PyObject *tuple, Py_ssize_t i, Py_buffer *buf, Py_ssize_t width,
                       Py_ssize_t min_items, int optional, void *data) {
    PyObject *obj = PyTuple_GET_ITEM(tuple, i);
    if (optional && obj == Py_None) {
        v->held++;  /* an unset Py_buffer (obj NULL) is released as a no-op */
        return 0;
    }
    if (PyObject_GetBuffer(obj, buf, PyBUF_WRITABLE) < 0) {
        view_release(v);
        return -1;
    }
    v->held++;
    if (buf->itemsize != width || buf->len / width < min_items) {
        view_release(v);
        PyErr_SetString(PyExc_TypeError, "store view: an array too short or of the wrong width");
        return -1;
    }
    *(void **)data = buf->buf;
    return 0;
}

static int view_open(View *v, PyObject *tuple) {
    memset(v, 0, sizeof(*v));
    if (!PyTuple_CheckExact(tuple)
        || (PyTuple_GET_SIZE(tuple) != BASE_ITEMS && PyTuple_GET_SIZE(tuple) != BASE_ITEMS + 5)) {
        PyErr_SetString(PyExc_TypeError, "store view: a 16-tuple (21 with a device mirror)");
        return -1;
    }
    v->index = PyTuple_GET_ITEM(tuple, 0);
    v->values = PyTuple_GET_ITEM(tuple, 1);
    v->keys = PyTuple_GET_ITEM(tuple, 8);
    v->free_slots = PyTuple_GET_ITEM(tuple, 9);
    v->slab_free = PyTuple_GET_ITEM(tuple, 15);
    if (!PyDict_CheckExact(v->index) || !PyDict_CheckExact(v->values) || !PyList_CheckExact(v->keys)
        || !PyList_CheckExact(v->free_slots) || (v->slab_free != Py_None && !PyDict_CheckExact(v->slab_free))) {
        PyErr_SetString(PyExc_TypeError, "store view: index, values, keys, free slots or slab lists of the wrong type");
        return -1;
    }
    Py_buffer *bufs[] = {&v->exp, &v->atime, &v->loc, &v->size, &v->flags};
    void *datas[] = {&v->exp_p, &v->atime_p, &v->loc_p, &v->size_p, &v->flags_p};
    Py_ssize_t widths[] = {8, 4, 4, 4, 1};
    for (int i = 0; i < 5; i++)
        if (view_buffer(v, tuple, 2 + i, bufs[i], widths[i], 0, 0, datas[i]) < 0)
            return -1;
    v->nslots = PY_SSIZE_T_MAX;
    for (int i = 0; i < 5; i++) {
        Py_ssize_t n = bufs[i]->len / widths[i];
        if (n < v->nslots)
            v->nslots = n;
    }
    if (view_buffer(v, tuple, 7, &v->region, 1, 0, 1, &v->region_p) < 0
        || view_buffer(v, tuple, 10, &v->live, 1, v->nslots, 0, &v->live_p) < 0
        || view_buffer(v, tuple, 11, &v->lfu, 1, v->nslots, 0, &v->lfu_p) < 0
        || view_buffer(v, tuple, 12, &v->lfu_time, 2, v->nslots, 0, &v->lfu_time_p) < 0
        || view_buffer(v, tuple, 13, &v->counts, 8, 1, 0, &v->counts_p) < 0
        || view_buffer(v, tuple, 14, &v->slab_state, 8, 4, 1, &v->slab_state_p) < 0)
        return -1;
    v->region_len = v->region_p ? v->region.len : 0;
    if (PyTuple_GET_SIZE(tuple) > BASE_ITEMS) {
        /* the GPU store: writes mark the pages they touch; new keys pack their key too */
        if (view_buffer(v, tuple, BASE_ITEMS, &v->key_loc, 4, v->nslots, 0, &v->key_loc_p) < 0
            || view_buffer(v, tuple, BASE_ITEMS + 1, &v->key_len, 4, v->nslots, 0, &v->key_len_p) < 0
            || view_buffer(v, tuple, BASE_ITEMS + 2, &v->region_dirty, 1, 0, 0, &v->region_dirty_p) < 0
            || view_buffer(v, tuple, BASE_ITEMS + 3, &v->slot_dirty, 1, 0, 0, &v->slot_dirty_p) < 0
            || view_buffer(v, tuple, BASE_ITEMS + 4, &v->mirror_state, 8, 2, 0, &v->mirror_p) < 0)
            return -1;
        v->region_pages = v->region_dirty.len;
        v->slot_pages = v->slot_dirty.len;
    }
    Py_INCREF(tuple);
    v->source = tuple;
    return 0;
}

/* The last view a call opened, kept open for the next: opening one takes a buffer of every
 * array (11, or 16 for the GPU store), as much work as a few commands, and a pipeline's chunk
 * is one call. Matched by the tuple's identity (held, so not reused): the store builds a new
 * tuple whenever its layout changes, and hands the old one to forget_view() before it closes
 * its region (an mmap with a buffer taken cannot close). A call takes the view out (it is its
 * own while the store's Python code may run) and parks it back when it succeeds. */
static View parked;

static int view_take(View *v, PyObject *tuple) {
    if (parked.source != NULL && parked.source == tuple) {
        *v = parked;
        memset(&parked, 0, sizeof(parked));
        return 0;
    }
    return view_open(v, tuple);
}

static void view_park(View *v) {
    view_release(&parked);
    parked = *v;
    memset(v, 0, sizeof(*v));
}

PyDoc_STRVAR(forget_view_doc,
"forget_view(view) -> None\n\n"
"Let go of the store view kept open between calls if it is ``view``: the store calls this\n"
"when it stops using that view (its arrays replaced, its region about to close).");

static PyObject *fast_forget_view(PyObject *self, PyObject *view_tuple) {
    if (parked.source == view_tuple)
        view_release(&parked);
    Py_RETURN_NONE;
}

/* The slot of key (-1: absent, -2: error or a slot outside the arrays). */
static Py_ssize_t slot_of(View *v, PyObject *key, PyObject **slot_obj) {
    PyObject *s = PyDict_GetItemWithError(v->index, key);
    *slot_obj = s;
    if (s == NULL)
        return PyErr_Occurred() ? -2 : -1;
    Py_ssize_t slot = PyLong_AsSsize_t(s);
    if (slot < 0 || slot >= v->nslots) {
        PyErr_Clear();
        return -2;
    }
    return slot;
}

/* The packed bytes of slot, or NULL when its location is outside the region. */
static const char *packed_at(View *v, Py_ssize_t slot, Py_ssize_t *len) {
    Py_ssize_t off = (Py_ssize_t)v->loc_p[slot] * BLOCK, n = v->size_p[slot];
    if (v->region_p == NULL || off + n > v->region_len)
        return NULL;
    *len = n;
    return v->region_p + off;
}

/* The string value of slot for a reply: 1 with its bytes in (data, n), 0 when the slot holds
 * another type, -1 on error, -2 when there is nothing to read (a packed location outside the
 * region, or no value object): the caller stops or answers nil. */
static int value_of(View *v, Py_ssize_t slot, PyObject *slot_obj, const char **data, Py_ssize_t *n) {
    *data = NULL;
    if (v->loc_p[slot]) {
        *data = packed_at(v, slot, n);
        return *data == NULL ? -2 : 1;
    }
    PyObject *value = PyDict_GetItemWithError(v->values, slot_obj);
    if (value == NULL)
        return PyErr_Occurred() ? -1 : -2;
    if (!PyBytes_CheckExact(value))
        return 0;
    *data = PyBytes_AS_STRING(value);
    *n = PyBytes_GET_SIZE(value);
    return 1;
}

#endif  /* PREDIS_FASTPATH_VIEW_H */
