/* The GPU store's sync (gpu/cuda.py) gathers the staged values from the host's packed
 * region, and the new keys from its list of keys, into one upload buffer: a memcpy each. NumPy has no vectorised form of that
 * (fancy indexing goes byte by byte, several times slower), and a Python loop costs about
 * a microsecond a value. Optional: gpu/cuda.py falls back to that loop without it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

PyDoc_STRVAR(gather_doc,
"gather(src, src_off, dst, dst_off, lens) -> None\n\n"
"dst[dst_off[i]: dst_off[i] + lens[i]] = src[src_off[i]: src_off[i] + lens[i]] for every i.\n"
"src and dst: byte buffers (dst writable); src_off, dst_off, lens: int64 buffers of one\n"
"length. Raises ValueError, copying nothing, if a segment lies outside its buffer.");

static PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *objs[5];
    if (!PyArg_ParseTuple(args, "OOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4]))
        return NULL;
    Py_buffer bufs[5];
    int flags[5] = {PyBUF_SIMPLE, PyBUF_FORMAT, PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_FORMAT};
    int held = 0;
    PyObject *result = NULL;
    for (; held < 5; held++)
        if (PyObject_GetBuffer(objs[held], &bufs[held], flags[held]) < 0)
            goto done;
    Py_ssize_t n = bufs[1].len / 8;
    int int_args[] = {1, 3, 4};
    for (int k = 0; k < 3; k++)
        if (bufs[int_args[k]].itemsize != 8 || bufs[int_args[k]].len != n * 8) {
            PyErr_SetString(PyExc_TypeError, "gather: offsets and lengths must be int64 arrays of one length");
            goto done;
        }
    const char *src = bufs[0].buf;
    char *dst = bufs[2].buf;
    const int64_t *src_off = bufs[1].buf, *dst_off = bufs[3].buf, *lens = bufs[4].buf;
    for (Py_ssize_t i = 0; i < n; i++)  /* check all first: an error copies nothing */
        if (lens[i] < 0 || src_off[i] < 0 || dst_off[i] < 0 || src_off[i] > bufs[0].len - lens[i]
            || dst_off[i] > bufs[2].len - lens[i]) {
            PyErr_Format(PyExc_ValueError, "gather: segment %zd lies outside its buffer", i);
            goto done;
        }
    for (Py_ssize_t i = 0; i < n; i++)
        memcpy(dst + dst_off[i], src + src_off[i], (size_t)lens[i]);
    result = Py_None;
    Py_INCREF(result);
done:
    while (held > 0)
        PyBuffer_Release(&bufs[--held]);
    return result;
}

/* Whether items[index[i]] is a bytes object for every i (0), or -1 with TypeError set. */
static int check_items(PyObject *items, Py_buffer *index) {
    const int64_t *idx = index->buf;
    Py_ssize_t n = index->len / 8, size = PyList_GET_SIZE(items);
    if (index->itemsize != 8) {
        PyErr_SetString(PyExc_TypeError, "the indices must be an int64 array");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= size || !PyBytes_CheckExact(PyList_GET_ITEM(items, idx[i]))) {
            PyErr_Format(PyExc_TypeError, "item %zd is not a bytes object of the list", i);
            return -1;
        }
    return 0;
}

PyDoc_STRVAR(lengths_doc,
"lengths(items, index, out) -> None\n\n"
"out[i] = len(items[index[i]]) for every i: items a list of bytes, index and out int64 arrays.");

static PyObject *lengths(PyObject *self, PyObject *args) {
    PyObject *items, *index_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "O!OO", &PyList_Type, &items, &index_obj, &out_obj))
        return NULL;
    Py_buffer index, out;
    if (PyObject_GetBuffer(index_obj, &index, PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&index);
        return NULL;
    }
    PyObject *result = NULL;
    if (check_items(items, &index) == 0) {
        if (out.itemsize != 8 || out.len != index.len) {
            PyErr_SetString(PyExc_TypeError, "lengths: out must be an int64 array as long as index");
        } else {
            const int64_t *idx = index.buf;
            int64_t *o = out.buf;
            for (Py_ssize_t i = 0; i < index.len / 8; i++)
                o[i] = PyBytes_GET_SIZE(PyList_GET_ITEM(items, idx[i]));
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&index);
    return result;
}

PyDoc_STRVAR(gather_items_doc,
"gather_items(items, index, dst, at) -> None\n\n"
"dst[at: at + total] = b''.join(items[i] for i in index), without the join: items a list of\n"
"bytes, index an int64 array, dst a writable byte buffer. ValueError if it does not fit.");

static PyObject *gather_items(PyObject *self, PyObject *args) {
    PyObject *items, *index_obj, *dst_obj;
    Py_ssize_t at;
    if (!PyArg_ParseTuple(args, "O!OOn", &PyList_Type, &items, &index_obj, &dst_obj, &at))
        return NULL;
    Py_buffer index, dst;
    if (PyObject_GetBuffer(index_obj, &index, PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(dst_obj, &dst, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&index);
        return NULL;
    }
    PyObject *result = NULL;
    if (check_items(items, &index) == 0) {
        const int64_t *idx = index.buf;
        Py_ssize_t n = index.len / 8, total = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            total += PyBytes_GET_SIZE(PyList_GET_ITEM(items, idx[i]));
        if (at < 0 || at > dst.len - total) {
            PyErr_SetString(PyExc_ValueError, "gather_items: the items do not fit in dst");
        } else {
            char *p = (char *)dst.buf + at;
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *item = PyList_GET_ITEM(items, idx[i]);
                memcpy(p, PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item));
                p += PyBytes_GET_SIZE(item);
            }
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&dst);
    PyBuffer_Release(&index);
    return result;
}

PyDoc_STRVAR(take_stage_doc,
"take_stage(listed, stage_flags, val_len, val_off, value_loc, keys, plan) -> (n_staged, n_inserted)\n\n"
"The sync's walk over the slots listed since the last one, in one pass (each slot's flag\n"
"and metadata are read together, not by one NumPy fancy index each): every listed slot's\n"
"stage flag is cleared; a slot flagged STAGE_VALUE (1) goes to plan[0] with its val_len,\n"
"val_off and value_loc in plan[1], plan[2], plan[3]; a slot flagged STAGE_INSERT (2) to\n"
"plan[4], its key's length (keys: the store's list of bytes) in plan[5]. listed, val_len,\n"
"val_off: int64; stage_flags: uint8; value_loc: uint32; plan: a C-contiguous int64 array\n"
"of 6 rows of len(listed). ValueError, changing nothing, if a slot is out of range or an\n"
"inserted slot's key is not bytes.");

static PyObject *take_stage(PyObject *self, PyObject *args) {
    PyObject *objs[6], *keys;
    if (!PyArg_ParseTuple(args, "OOOOOO!O", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &PyList_Type,
                          &keys, &objs[5]))
        return NULL;
    Py_buffer bufs[6];
    const Py_ssize_t widths[6] = {8, 1, 8, 8, 4, 8};
    const int writable[6] = {0, 1, 0, 0, 0, 1};
    int held = 0;
    PyObject *result = NULL;
    for (; held < 6; held++)
        if (PyObject_GetBuffer(objs[held], &bufs[held], (writable[held] ? PyBUF_WRITABLE : 0) | PyBUF_FORMAT
                               | PyBUF_C_CONTIGUOUS) < 0)
            goto done;
    for (int k = 0; k < 6; k++)
        if (bufs[k].itemsize != widths[k]) {
            PyErr_SetString(PyExc_TypeError, "take_stage: an array of the wrong width");
            goto done;
        }
    const Py_ssize_t n = bufs[0].len / 8;
    Py_ssize_t slots = bufs[1].len;
    for (int k = 2; k < 5; k++)
        if (bufs[k].len / widths[k] < slots)
            slots = bufs[k].len / widths[k];
    if (bufs[5].len != 6 * n * 8) {
        PyErr_SetString(PyExc_TypeError, "take_stage: plan must be int64 of 6 rows of len(listed)");
        goto done;
    }
    const int64_t *listed = bufs[0].buf, *val_len = bufs[2].buf, *val_off = bufs[3].buf;
    uint8_t *flags = bufs[1].buf;
    const uint32_t *loc = bufs[4].buf;
    int64_t *plan = bufs[5].buf;
    for (Py_ssize_t i = 0; i < n; i++) {  /* check all first: an error changes nothing */
        if (listed[i] < 0 || listed[i] >= slots) {
            PyErr_Format(PyExc_ValueError, "take_stage: slot %lld out of range", (long long)listed[i]);
            goto done;
        }
        if ((flags[listed[i]] & 2)
            && (listed[i] >= PyList_GET_SIZE(keys) || !PyBytes_Check(PyList_GET_ITEM(keys, listed[i])))) {
            PyErr_Format(PyExc_ValueError, "take_stage: slot %lld has no key", (long long)listed[i]);
            goto done;
        }
    }
    int64_t *staged = plan, *lens = plan + n, *offs = plan + 2 * n, *locs = plan + 3 * n, *inserted = plan + 4 * n,
            *key_lens = plan + 5 * n;
    Py_ssize_t n_staged = 0, n_ins = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + 8 < n) {  /* the misses of later slots overlap this one's */
            __builtin_prefetch(&flags[listed[i + 8]], 1);
            __builtin_prefetch(&val_len[listed[i + 8]]);
            __builtin_prefetch(&val_off[listed[i + 8]]);
            __builtin_prefetch(&loc[listed[i + 8]]);
        }
        const int64_t slot = listed[i];
        const uint8_t f = flags[slot];
        flags[slot] = 0;
        if (f & 1) {
            staged[n_staged] = slot;
            lens[n_staged] = val_len[slot];
            offs[n_staged] = val_off[slot];
            locs[n_staged++] = loc[slot];
        }
        if (f & 2) {
            key_lens[n_ins] = PyBytes_GET_SIZE(PyList_GET_ITEM(keys, slot));
            inserted[n_ins++] = slot;
        }
    }
    result = Py_BuildValue("nn", n_staged, n_ins);
done:
    while (held > 0)
        PyBuffer_Release(&bufs[--held]);
    return result;
}

static PyMethodDef methods[] = {
    {"gather", gather, METH_VARARGS, gather_doc},
    {"lengths", lengths, METH_VARARGS, lengths_doc},
    {"gather_items", gather_items, METH_VARARGS, gather_items_doc},
    {"take_stage", take_stage, METH_VARARGS, take_stage_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_gather", "Segment copies between host buffers for the GPU store's sync.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__gather(void) {
    return PyModule_Create(&module);
}
