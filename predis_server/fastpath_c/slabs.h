/* New keys placed in C: the slabs' size classes, a block of a class (a free one, else the bump
 * pointer's), and insert_new, which adds a key with a short value as the store's set() does.
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 */
#ifndef PREDIS_FASTPATH_SLABS_H
#define PREDIS_FASTPATH_SLABS_H

#include <string.h>
#include "mirror_marks.h"
#include "view.h"

static int same_class(Py_ssize_t a, Py_ssize_t b) {
    return ((a + IN_CLASS) | IN_CLASS) == ((b + IN_CLASS) | IN_CLASS);
}

/* A block of cls bytes from the slabs: the last free one of its class (taken, *bucket: its
 * list) or the bump pointer's (*bucket NULL, not taken yet). 0: none within the limit; -1: error. */
static Py_ssize_t slab_find(View *v, Py_ssize_t cls, Py_ssize_t bump_from, PyObject **bucket) {
    *bucket = NULL;
    if (PyDict_GET_SIZE(v->slab_free)) {
        PyObject *cls_obj = PyLong_FromSsize_t(cls);
        if (cls_obj == NULL)
            return -1;
        PyObject *list = PyDict_GetItemWithError(v->slab_free, cls_obj);
        Py_DECREF(cls_obj);
        if (list == NULL && PyErr_Occurred())
            return -1;
        if (list != NULL) {
            Py_ssize_t free_blocks = PyObject_Size(list);
            if (free_blocks < 0)
                return -1;
            if (free_blocks > 0) {
                *bucket = list;
                return 1;
            }
        }
    }
    return bump_from + cls / BLOCK <= v->slab_state_p[SLAB_LIMIT] ? 1 : 0;
}

/* Take the block slab_find found: its location (-1: error). */
static Py_ssize_t slab_take(View *v, Py_ssize_t cls, PyObject *bucket) {
    Py_ssize_t loc;
    if (bucket != NULL) {
        PyObject *popped = PyObject_CallMethod(bucket, "pop", NULL);
        loc = popped ? PyLong_AsSsize_t(popped) : -1;
        Py_XDECREF(popped);
        if (loc < 0)
            return -1;
        v->slab_state_p[SLAB_FREE]--;
    } else {
        loc = v->slab_state_p[SLAB_TOP];
    }
    if ((loc + cls / BLOCK) * BLOCK > v->region_len) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "insert_new: a slab location outside the region");
        return -1;
    }
    if (bucket == NULL)
        v->slab_state_p[SLAB_TOP] = loc + cls / BLOCK;
    v->slab_state_p[SLAB_USED] += cls;
    return loc;
}

static inline Py_ssize_t slab_class(Py_ssize_t n) {
    return n ? (n + BLOCK - 1) & -BLOCK : BLOCK;
}

/* SET (or INCR) of an absent key to a short string, as the store's set() does it for one:
 * a slot (the last free one, else a new one below the arrays' capacity), the value packed in
 * the slabs (the last free block of its size class, else the bump pointer), the metadata of a
 * new key, the byte counts; on the GPU store the key packed too and the pages marked. The new
 * slot, or -1 when set() must do it (no slabs yet or full, the arrays full, a long value or
 * key; the GPU store's limit is the end of the region's mirrored range, which set() grows), -2 on
 * error (out of memory). *slot_obj: borrowed. */
static Py_ssize_t insert_new(View *v, PyObject *key, const char *data, Py_ssize_t n,
                             long long now_ms, PyObject **slot_obj) {
    if (n > PACKED_MAX || v->slab_state_p == NULL || v->region_p == NULL)
        return -1;
    Py_ssize_t klen = PyBytes_GET_SIZE(key), cls = slab_class(n), kcls = slab_class(klen);
    PyObject *bucket = NULL, *kbucket = NULL;  /* the classes' free blocks, if any */
    Py_ssize_t found = slab_find(v, cls, v->slab_state_p[SLAB_TOP], &bucket);
    if (found <= 0)
        return found < 0 ? -2 : -1;  /* the region is full: set() */
    if (v->mirror_p != NULL) {
        if (klen > PACKED_MAX)
            return -1;
        Py_ssize_t bump = v->slab_state_p[SLAB_TOP] + (bucket ? 0 : cls / BLOCK);
        found = slab_find(v, kcls, bump, &kbucket);
        if (found <= 0)
            return found < 0 ? -2 : -1;
        if (kbucket != NULL && kbucket == bucket && PyObject_Size(bucket) < 2) {
            kbucket = NULL;  /* one free block of the class: the value's; the key's from the bump */
            if (bump + kcls / BLOCK > v->slab_state_p[SLAB_LIMIT])
                return -1;
        }
    }
    Py_ssize_t free_slots = PyList_GET_SIZE(v->free_slots), slot;
    if (free_slots) {
        slot = PyLong_AsSsize_t(PyList_GET_ITEM(v->free_slots, free_slots - 1));
        if (slot < 0 || slot >= v->nslots || slot >= PyList_GET_SIZE(v->keys)) {
            PyErr_Clear();
            return -1;
        }
    } else {
        slot = PyList_GET_SIZE(v->keys);
        if (slot >= v->nslots)
            return -1;  /* set() grows the arrays */
    }
    /* the fallible steps first: until the index holds the key nothing else has changed */
    PyObject *slot_int = PyLong_FromSsize_t(slot);
    if (slot_int == NULL)
        return -2;
    if (PyDict_SetItem(v->index, key, slot_int) < 0) {
        Py_DECREF(slot_int);
        return -2;
    }
    Py_DECREF(slot_int);  /* the index holds it */
    *slot_obj = PyDict_GetItem(v->index, key);
    int failed;
    if (free_slots) {
        Py_INCREF(key);
        failed = PyList_SetItem(v->keys, slot, key) < 0
            || PyList_SetSlice(v->free_slots, free_slots - 1, free_slots, NULL) < 0;
    } else {
        failed = PyList_Append(v->keys, key) < 0;
    }
    Py_ssize_t loc = failed ? -1 : slab_take(v, cls, bucket), kloc = 0;
    if (loc >= 0 && v->mirror_p != NULL)
        kloc = slab_take(v, kcls, kbucket);
    if (loc < 0 || kloc < 0)
        return -2;  /* out of memory in a list, or a corrupt free list: the run fails */
    /* bytes first, then the slot's fields (gpu/mirror.py: the device's copy relies on it) */
    memcpy(v->region_p + loc * BLOCK, data, n);
    if (v->mirror_p != NULL) {
        memcpy(v->region_p + kloc * BLOCK, PyBytes_AS_STRING(key), klen);
        mark_region(v, loc * BLOCK, n);
        mark_region(v, kloc * BLOCK, klen);
        v->key_loc_p[slot] = (uint32_t)kloc;
        v->key_len_p[slot] = (uint32_t)klen;
        v->mirror_p[MIRROR_INSERTS]++;
        mark_slot(v, slot);
    }
    v->loc_p[slot] = (uint32_t)loc;
    v->size_p[slot] = (uint32_t)n;
    v->atime_p[slot] = (uint32_t)((unsigned long long)now_ms & CLOCK_MASK);
    v->live_p[slot] = 1;
    v->lfu_p[slot] = LFU_INIT_VAL;
    v->lfu_time_p[slot] = (uint16_t)((now_ms / 60000) & 0xFFFF);
    v->counts_p[0] += PyBytes_Type.tp_basicsize + klen;  /* sys.getsizeof(key), as set() counts */
    return slot;
}

#endif  /* PREDIS_FASTPATH_SLABS_H */
