/* The GPU store's sync (gpu/cuda.py) gathers the staged values from the host's packed
 * region into one upload buffer: a memcpy per value. NumPy has no vectorised form of that
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

static PyMethodDef methods[] = {
    {"gather", gather, METH_VARARGS, gather_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_gather", "Segment copies between host buffers for the GPU store's sync.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__gather(void) {
    return PyModule_Create(&module);
}
