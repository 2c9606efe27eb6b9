/* A value written over: in place over a slot's packed string (write_packed), or, where the C
 * path cannot, through the store's own set() (store_set), after which the view is opened again.
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 */
#ifndef PREDIS_FASTPATH_WRITES_H
#define PREDIS_FASTPATH_WRITES_H

#include <string.h>
#include "mirror_marks.h"
#include "view.h"

/* A SET or INCR over slot's packed string in place (dst: its block, of n's size class): the
 * bytes, the pages they are on, the length (its slot page when it changed), the write's time,
 * no flags (a prefetched entry written is an entry like any other). */
static inline void write_packed(View *v, Py_ssize_t slot, char *dst, const char *data, Py_ssize_t n,
                                uint32_t now32) {
    memcpy(dst, data, n);
    mark_region(v, dst - v->region_p, n);
    if (v->size_p[slot] != (uint32_t)n) {
        v->size_p[slot] = (uint32_t)n;
        mark_slot(v, slot);
    }
    v->atime_p[slot] = now32;
    v->flags_p[slot] = 0;
}

/* A write the C path cannot do in place (a new key, a larger block, a TTL to clear) goes to
 * the store's own ``set(key, value, now_ms, 0, keep_ttl)``; the store may grow its arrays or
 * open its region, so the view is opened again from ``store.native_view()``, and keys looked
 * up ahead may have been added, so later commands look theirs up again. 1: done; 0: not
 * done, the Python path takes the command (no store given, or set raised: StoreFull is
 * answered there); -1: error. */
static int store_set(PyObject *store, View *v, PyObject *key, PyObject *value,
                     long long now_ms, PyObject **now_obj, int keep_ttl, Py_ssize_t *looked) {
    static PyObject *set_name, *view_name, *zero;
    if (store == Py_None)
        return 0;
    if (set_name == NULL && ((set_name = PyUnicode_InternFromString("set")) == NULL
                             || (view_name = PyUnicode_InternFromString("native_view")) == NULL
                             || (zero = PyLong_FromLong(0)) == NULL))
        return -1;
    if (*now_obj == NULL && (*now_obj = PyLong_FromLongLong(now_ms)) == NULL)
        return -1;
    /* The view's buffers stay held through the call: the store's set never resizes an array
     * or closes the region in place (growth makes new arrays, and a new view). */
    *looked = 0;  /* a key the look-ahead found missing may exist now */
    PyObject *args[] = {store, key, value, *now_obj, zero, keep_ttl ? Py_True : Py_False};
    PyObject *result = PyObject_VectorcallMethod(set_name, args, 6, NULL);
    int done = 1;
    if (result == NULL) {
        PyErr_Clear();
        done = 0;
    }
    Py_XDECREF(result);
    PyObject *args_view[] = {store};
    PyObject *fresh = PyObject_VectorcallMethod(view_name, args_view, 1, NULL);
    if (fresh == NULL)
        return -1;
    if (fresh == v->source) {  /* the same layout (the store caches its view): nothing to redo */
        Py_DECREF(fresh);
        return done;
    }
    view_release(v);
    if (fresh == Py_None) {
        Py_DECREF(fresh);
        PyErr_SetString(PyExc_RuntimeError, "the store's native view went away during a run");
        return -1;
    }
    int failed = view_open(v, fresh);
    Py_DECREF(fresh);  /* the view holds its own reference now */
    return failed ? -1 : done;
}

#endif  /* PREDIS_FASTPATH_WRITES_H */
