/* The per-read and per-write work of a connection, in C: at redis-benchmark -P 1 every request
 * is one read and one write, and the Python around them cost more than hiredis's parsing.
 *
 * receive(): a read for a connection whose parser is between requests goes to hiredis's
 * Reader and its requests are drained into the batch's list, in one call.
 * write_outputs(): the replies the lone batch (predis_server/lone_batch.py) appended to each
 * connection's output list go to its transport, one write a connection.
 *
 * Optional like _fastpath.c (setup.py): predis_server/fastpath.py exposes it as ``net``, None
 * without a compiler or with PREDIS_NATIVE=no, and the Python code does the same work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *str_feed, *str_gets, *str_write, *str_is_closing;
static PyObject *empty;  /* b"": the separator that joins a connection's replies */

/* The Python parser takes a chunk that declares an array of a million elements or more
 * (protocol/parser.py's _BIG_ARRAY_HEADER, "\*[0-9]{7}"): hiredis would allocate it at once. */
static int declares_big_array(const char *p, Py_ssize_t n) {
    const char *end = p + n;
    while ((p = memchr(p, '*', end - p)) != NULL) {
        if (end - p < 8)
            return 0;
        int digits = 0;
        while (digits < 7 && p[1 + digits] >= '0' && p[1 + digits] <= '9')
            digits++;
        if (digits == 7)
            return 1;
        p++;
    }
    return 0;
}

static Py_ssize_t digits_of(Py_ssize_t n) {
    Py_ssize_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

PyDoc_STRVAR(receive_doc,
"receive(reader, data, out) -> canonical bytes of the requests taken, or -1\n\n"
"For a parser between requests. -1, with nothing fed, where the Python parser must take the\n"
"chunk: it does not start with '*', or it declares an array of 10**6 elements or more.\n"
"Else feed data to the hiredis Reader and append every complete request (a list of bytes) to\n"
"out; empty arrays are skipped but counted in the size. The size is the requests' canonical\n"
"encoding (hiredis accepts no other lengths): equal to len(data), the reader stopped between\n"
"requests. ValueError on a request that is not bulk strings; hiredis's errors pass through.");

static PyObject *net_receive(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_CheckExact(args[1]) || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "receive(reader, data: bytes, out: list)");
        return NULL;
    }
    PyObject *reader = args[0], *data = args[1], *out = args[2];
    const char *p = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n == 0 || p[0] != '*' || declares_big_array(p, n))
        return PyLong_FromLong(-1);
    PyObject *fed = PyObject_CallMethodOneArg(reader, str_feed, data);
    if (fed == NULL)
        return NULL;
    Py_DECREF(fed);
    Py_ssize_t size = 0;
    for (;;) {
        PyObject *cmd = PyObject_CallMethodNoArgs(reader, str_gets);
        if (cmd == NULL)
            return NULL;
        if (cmd == Py_False) {
            Py_DECREF(cmd);
            break;
        }
        int valid = PyList_CheckExact(cmd);
        Py_ssize_t count = valid ? PyList_GET_SIZE(cmd) : 0;
        size += 3 + digits_of(count);  /* "*" count CRLF */
        for (Py_ssize_t i = 0; valid && i < count; i++) {
            PyObject *arg = PyList_GET_ITEM(cmd, i);
            valid = PyBytes_CheckExact(arg);
            if (valid)  /* "$" len CRLF bytes CRLF */
                size += 5 + digits_of(PyBytes_GET_SIZE(arg)) + PyBytes_GET_SIZE(arg);
        }
        if (!valid) {
            Py_DECREF(cmd);
            PyErr_SetString(PyExc_ValueError, "not a request");
            return NULL;
        }
        int failed = count ? PyList_Append(out, cmd) : 0;  /* "*0": skipped, as Redis does */
        Py_DECREF(cmd);
        if (failed)
            return NULL;
    }
    return PyLong_FromSsize_t(size);
}

PyDoc_STRVAR(write_outputs_doc,
"write_outputs(outputs, transports) -> (bytes written, writes)\n\n"
"For each connection: its output list's replies joined (or the one reply as it is) and\n"
"written with transports[i].write, then the list cleared; as Connection.flush, nothing is\n"
"written to a closing transport. Empty lists are skipped.");

static PyObject *net_write_outputs(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1])
        || PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_TypeError, "write_outputs(outputs: list, transports: list of the same length)");
        return NULL;
    }
    PyObject *outputs = args[0], *transports = args[1];
    Py_ssize_t total = 0, writes = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(outputs); i++) {
        PyObject *output = PyList_GET_ITEM(outputs, i);
        if (!PyList_CheckExact(output)) {
            PyErr_SetString(PyExc_TypeError, "write_outputs: an output is not a list");
            return NULL;
        }
        Py_ssize_t parts = PyList_GET_SIZE(output);
        if (parts == 0)
            continue;
        PyObject *data;
        if (parts == 1) {
            data = PyList_GET_ITEM(output, 0);
            Py_INCREF(data);
        } else if ((data = _PyBytes_Join(empty, output)) == NULL) {
            return NULL;
        }
        if (PyList_SetSlice(output, 0, parts, NULL) < 0) {
            Py_DECREF(data);
            return NULL;
        }
        PyObject *transport = PyList_GET_ITEM(transports, i);
        PyObject *closing = PyObject_CallMethodNoArgs(transport, str_is_closing);
        int skip = closing == NULL ? -1 : PyObject_IsTrue(closing);
        Py_XDECREF(closing);
        if (skip) {  /* a closing transport: the replies are dropped, as Connection.flush does */
            Py_DECREF(data);
            if (skip < 0)
                return NULL;
            continue;
        }
        PyObject *done = PyObject_CallMethodOneArg(transport, str_write, data);
        Py_ssize_t length = PyBytes_Check(data) ? PyBytes_GET_SIZE(data) : PyObject_Size(data);
        Py_DECREF(data);
        if (done == NULL)
            return NULL;
        Py_DECREF(done);
        total += length;
        writes++;
    }
    return Py_BuildValue("(nn)", total, writes);
}

static PyMethodDef methods[] = {
    {"receive", (PyCFunction)(void (*)(void))net_receive, METH_FASTCALL, receive_doc},
    {"write_outputs", (PyCFunction)(void (*)(void))net_write_outputs, METH_FASTCALL, write_outputs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_netpath",
    "A connection's reads into hiredis and the lone batch's writes, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__netpath(void) {
    if ((str_feed = PyUnicode_InternFromString("feed")) == NULL
        || (str_gets = PyUnicode_InternFromString("gets")) == NULL
        || (str_write = PyUnicode_InternFromString("write")) == NULL
        || (str_is_closing = PyUnicode_InternFromString("is_closing")) == NULL
        || (empty = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
