/* The commonest pipelined commands in C: runs of plain GET / SET key value / INCR, and MGET.
 *
 * predis_server/fastpath.py explains when these are used and holds the store view they read
 * (the CPU store's dict of slots, its metadata arrays and the packed-value region,
 * gpu/cpu.py). Whatever these functions cannot do exactly as the Python path does (a key
 * that expired, a SET that needs a new slot or a larger block, an INCR on a non-integer,
 * a miss the origin must load), they stop before, and the caller runs that command the
 * Python way. They never call Python code, so nothing can change the store under them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 4                 /* gpu/slabs.py BLOCK */
#define IN_CLASS (BLOCK - 1)    /* (n + IN_CLASS) | IN_CLASS is equal within one size class */
#define CLOCK_MASK 0xFFFFFFFFu  /* gpu/cpu.py CLOCK_MASK */

enum { K_GET = 1, K_SET = 2, K_INCR = 3 };           /* predis_server/pipeline.py kinds */
enum { OPT_WRITES = 1, OPT_STOP_AT_MISS = 2, OPT_TOUCH = 4 };

/* The store, as fastpath.store_view() hands it over. */
typedef struct {
    PyObject *index;   /* dict key -> slot */
    PyObject *values;  /* dict slot -> value object (values not packed) */
    PyObject *staged;  /* the GPU store's dict slot -> value awaiting upload, or NULL */
    Py_buffer exp, atime, loc, size, flags, region, dev_off, dev_len;
    int held;          /* buffers acquired so far (released in reverse) */
    Py_ssize_t nslots;
    int64_t *exp_p;
    uint32_t *atime_p, *loc_p, *size_p;
    uint8_t *flags_p;
    char *region_p;
    Py_ssize_t region_len;
    int64_t *dev_off_p, *dev_len_p;  /* the GPU store's device block per slot */
} View;

static void view_release(View *v) {
    Py_buffer *bufs[] = {&v->exp, &v->atime, &v->loc, &v->size, &v->flags, &v->region,
                         &v->dev_off, &v->dev_len};
    for (int i = v->held - 1; i >= 0; i--)
        PyBuffer_Release(bufs[i]);
    v->held = 0;
}

static int view_open(View *v, PyObject *tuple) {
    memset(v, 0, sizeof(*v));
    if (!PyTuple_CheckExact(tuple) || (PyTuple_GET_SIZE(tuple) != 8 && PyTuple_GET_SIZE(tuple) != 11)) {
        PyErr_SetString(PyExc_TypeError, "store view must be an 8-tuple (or 11 with a stage)");
        return -1;
    }
    v->index = PyTuple_GET_ITEM(tuple, 0);
    v->values = PyTuple_GET_ITEM(tuple, 1);
    if (!PyDict_CheckExact(v->index) || !PyDict_CheckExact(v->values)) {
        PyErr_SetString(PyExc_TypeError, "store view: index and values must be dicts");
        return -1;
    }
    Py_buffer *bufs[] = {&v->exp, &v->atime, &v->loc, &v->size, &v->flags};
    Py_ssize_t widths[] = {8, 4, 4, 4, 1};
    v->nslots = PY_SSIZE_T_MAX;
    for (int i = 0; i < 5; i++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(tuple, 2 + i), bufs[i], PyBUF_WRITABLE) < 0) {
            view_release(v);
            return -1;
        }
        v->held++;
        if (bufs[i]->itemsize != widths[i]) {
            view_release(v);
            PyErr_SetString(PyExc_TypeError, "store view: metadata array of the wrong width");
            return -1;
        }
        Py_ssize_t n = bufs[i]->len / widths[i];
        if (n < v->nslots)
            v->nslots = n;
    }
    v->exp_p = v->exp.buf;
    v->atime_p = v->atime.buf;
    v->loc_p = v->loc.buf;
    v->size_p = v->size.buf;
    v->flags_p = v->flags.buf;
    PyObject *region = PyTuple_GET_ITEM(tuple, 7);
    if (region != Py_None) {
        if (PyObject_GetBuffer(region, &v->region, PyBUF_WRITABLE) < 0) {
            view_release(v);
            return -1;
        }
        v->region_p = v->region.buf;
        v->region_len = v->region.len;
    }
    v->held++;  /* an unset Py_buffer (obj NULL) is released as a no-op */
    if (PyTuple_GET_SIZE(tuple) == 11) {
        /* the GPU store: written values are staged for the device, blocks kept */
        v->staged = PyTuple_GET_ITEM(tuple, 8);
        if (!PyDict_CheckExact(v->staged)) {
            view_release(v);
            PyErr_SetString(PyExc_TypeError, "store view: the stage must be a dict");
            return -1;
        }
        Py_buffer *dev[] = {&v->dev_off, &v->dev_len};
        for (int i = 0; i < 2; i++) {
            if (PyObject_GetBuffer(PyTuple_GET_ITEM(tuple, 9 + i), dev[i], PyBUF_WRITABLE) < 0) {
                view_release(v);
                return -1;
            }
            v->held++;
            if (dev[i]->itemsize != 8 || dev[i]->len / 8 < v->nslots) {
                view_release(v);
                PyErr_SetString(PyExc_TypeError, "store view: device block arrays too short");
                return -1;
            }
        }
        v->dev_off_p = v->dev_off.buf;
        v->dev_len_p = v->dev_len.buf;
    }
    return 0;
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

static Py_ssize_t format_ll(char *buf, long long value) {
    char tmp[24];
    int n = 0;
    unsigned long long u = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    Py_ssize_t len = 0;
    if (value < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    return len;
}

/* Redis's string2ll, as commands/args.py parse_int: optional '-', digits, no leading zeros,
 * no '+' or spaces, within int64. */
static int parse_ll(const char *s, Py_ssize_t n, long long *out) {
    if (n <= 0 || n > 20)
        return 0;
    Py_ssize_t i = 0;
    int negative = 0;
    if (s[0] == '-') {
        negative = 1;
        i = 1;
        if (n == 1)
            return 0;
    }
    if (s[i] == '0') {
        if (n == 1) {
            *out = 0;
            return 1;
        }
        return 0;  /* "01", "-0" */
    }
    unsigned long long v = 0;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < '0' || c > '9')
            return 0;
        unsigned d = c - '0';
        if (v > ULLONG_MAX / 10 || (v == ULLONG_MAX / 10 && d > ULLONG_MAX % 10))
            return 0;
        v = v * 10 + d;
    }
    if (negative) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return 0;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return 0;
        *out = (long long)v;
    }
    return 1;
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

/* The GPU store: the new value of slot waits for the next upload (gpu/cuda.py sync). Its
 * device block is kept: a slab size class lies within one arena size class. */
static int stage(View *v, PyObject *slot_obj, Py_ssize_t slot, PyObject *value, Py_ssize_t *staged_bytes) {
    if (v->staged == NULL)
        return 0;
    if (PyDict_SetItem(v->staged, slot_obj, value) < 0)
        return -1;
    v->dev_len_p[slot] = PyBytes_GET_SIZE(value);
    *staged_bytes += PyBytes_GET_SIZE(value);
    return 0;
}

static int same_class(Py_ssize_t a, Py_ssize_t b) {
    return ((a + IN_CLASS) | IN_CLASS) == ((b + IN_CLASS) | IN_CLASS);
}

#define PREPASS 64  /* commands whose slots are looked up ahead (pipeline.py RUN_CHUNK) */
/* The slot of command i's key: from the look-ahead when it covered i. */
#define SLOT_OF(i, key, obj_out) \
    ((i) - start < looked ? (*(obj_out) = ahead_obj[(i) - start], ahead_slot[(i) - start]) \
                          : slot_of(&v, (key), (obj_out)))

PyDoc_STRVAR(run_doc,
"run(commands, start, end, kinds, view, now_ms, options, null, wrongtype)\n"
"-> (ran, reply, gets, sets, incrs, hits, misses, wrongtype_replies, staged_bytes)\n\n"
"Execute commands[start:end] while each is a plain GET, SET key value or INCR that can be\n"
"done in place; stop before the first that cannot. reply holds the encoded replies.");

static PyObject *fast_run(PyObject *self, PyObject *args) {
    PyObject *commands, *kinds, *view_tuple;
    Py_ssize_t start, end;
    long long now_ms;
    int options;
    const char *null_p, *wrong_p;
    Py_ssize_t null_n, wrong_n;
    if (!PyArg_ParseTuple(args, "O!nnO!OLiy#y#", &PyList_Type, &commands, &start, &end,
                          &PyDict_Type, &kinds, &view_tuple, &now_ms, &options,
                          &null_p, &null_n, &wrong_p, &wrong_n))
        return NULL;
    if (end > PyList_GET_SIZE(commands))
        end = PyList_GET_SIZE(commands);
    View v;
    if (view_open(&v, view_tuple) < 0)
        return NULL;
    Out o;
    if (out_init(&o, 64 * (end > start ? end - start : 1) + 64) < 0) {
        view_release(&v);
        return NULL;
    }
    const uint32_t now32 = (uint32_t)((unsigned long long)now_ms & CLOCK_MASK);
    const int touch = options & OPT_TOUCH, writes = options & OPT_WRITES;
    Py_ssize_t gets = 0, sets = 0, incrs = 0, hits = 0, misses = 0, wrong = 0, staged_bytes = 0, i;
    /* Every key's slot first, with its metadata prefetched: on a large keyspace each lookup
     * and each array read is a cache miss, and done one command at a time they queue up.
     * Looked up ahead, the misses of different keys overlap. The index cannot change
     * during the run (this function never adds or removes a key), so the slots stay valid. */
    Py_ssize_t ahead = end - start < PREPASS ? end - start : PREPASS, looked = 0;
    Py_ssize_t ahead_slot[PREPASS];
    PyObject *ahead_obj[PREPASS];
    for (; looked < ahead; looked++) {
        PyObject *argv = PyList_GET_ITEM(commands, start + looked);
        if (!PyList_CheckExact(argv) || PyList_GET_SIZE(argv) < 2)
            break;
        PyObject *key = PyList_GET_ITEM(argv, 1);
        if (!PyBytes_CheckExact(key))
            break;
        Py_ssize_t slot = slot_of(&v, key, &ahead_obj[looked]);
        if (slot == -2) {
            if (PyErr_Occurred())
                goto error;
            break;
        }
        ahead_slot[looked] = slot;
        if (slot >= 0) {
            __builtin_prefetch(&v.exp_p[slot]);
            __builtin_prefetch(&v.loc_p[slot]);
            __builtin_prefetch(&v.size_p[slot]);
            __builtin_prefetch(&v.atime_p[slot], 1);
            __builtin_prefetch(&v.flags_p[slot], 1);
        }
    }
    for (Py_ssize_t k = 0; k < looked; k++) {
        Py_ssize_t slot = ahead_slot[k];
        if (slot >= 0 && v.loc_p[slot] && v.region_p != NULL)
            __builtin_prefetch(v.region_p + (Py_ssize_t)v.loc_p[slot] * BLOCK, 1);
    }
    for (i = start; i < end; i++) {
        PyObject *argv = PyList_GET_ITEM(commands, i);
        if (!PyList_CheckExact(argv))
            break;
        Py_ssize_t argc = PyList_GET_SIZE(argv);
        if (argc < 2 || argc > 3)
            break;
        PyObject *kind_obj = PyDict_GetItemWithError(kinds, PyList_GET_ITEM(argv, 0));
        if (kind_obj == NULL) {
            if (PyErr_Occurred())
                goto error;
            break;
        }
        long kind = PyLong_AsLong(kind_obj);
        PyObject *key = PyList_GET_ITEM(argv, 1);
        if (!PyBytes_CheckExact(key))
            break;
        PyObject *slot_obj;
        Py_ssize_t slot;
        if (kind == K_GET) {
            if (argc != 2)
                break;
            slot = SLOT_OF(i, key, &slot_obj);
            if (slot == -2) {
                if (PyErr_Occurred())
                    goto error;
                break;
            }
            if (slot < 0) {
                if (options & OPT_STOP_AT_MISS)
                    break;  /* the origin loads it: the Python path */
                if (put_raw(&o, null_p, null_n) < 0)
                    goto error;
                misses++;
                gets++;
                continue;
            }
            int64_t expires = v.exp_p[slot];
            if (expires && expires <= now_ms)
                break;  /* expired: the Python path deletes it and counts it */
            if (v.loc_p[slot]) {
                Py_ssize_t n;
                const char *data = packed_at(&v, slot, &n);
                if (data == NULL || put_bulk(&o, data, n) < 0) {
                    if (data == NULL)
                        break;
                    goto error;
                }
            } else {
                PyObject *value = PyDict_GetItemWithError(v.values, slot_obj);
                if (value == NULL) {
                    if (PyErr_Occurred())
                        goto error;
                    break;
                }
                if (PyBytes_CheckExact(value)) {
                    if (put_bulk(&o, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)) < 0)
                        goto error;
                } else {
                    if (put_raw(&o, wrong_p, wrong_n) < 0)
                        goto error;
                    wrong++;
                }
            }
            if (touch)
                v.atime_p[slot] = now32;
            hits++;
            gets++;
        } else if (kind == K_SET) {
            if (argc != 3 || !writes)
                break;
            PyObject *value = PyList_GET_ITEM(argv, 2);
            if (!PyBytes_CheckExact(value))
                break;
            slot = SLOT_OF(i, key, &slot_obj);
            if (slot < 0) {
                if (PyErr_Occurred())
                    goto error;
                break;  /* a new key takes a slot: the Python path */
            }
            Py_ssize_t n = PyBytes_GET_SIZE(value), old_n;
            /* in place only over a packed string of the same size class with no TTL (SET
             * clears a TTL, which the store counts) */
            if (!v.loc_p[slot] || v.exp_p[slot] || !same_class(n, v.size_p[slot])
                || (v.staged != NULL && v.dev_off_p[slot] < 0))
                break;
            char *dst = (char *)packed_at(&v, slot, &old_n);
            if (dst == NULL || dst - v.region_p + n > v.region_len)
                break;
            if (stage(&v, slot_obj, slot, value, &staged_bytes) < 0)
                goto error;
            memcpy(dst, PyBytes_AS_STRING(value), n);
            v.size_p[slot] = (uint32_t)n;
            v.atime_p[slot] = now32;
            v.flags_p[slot] = 0;
            if (put_raw(&o, "+OK\r\n", 5) < 0)
                goto error;
            sets++;
        } else if (kind == K_INCR) {
            if (argc != 2 || !writes)
                break;
            slot = SLOT_OF(i, key, &slot_obj);
            if (slot < 0) {
                if (PyErr_Occurred())
                    goto error;
                break;  /* a new counter takes a slot: the Python path */
            }
            int64_t expires = v.exp_p[slot];
            if (!v.loc_p[slot] || (expires && expires <= now_ms)
                || (v.staged != NULL && v.dev_off_p[slot] < 0))
                break;
            Py_ssize_t n;
            char *data = (char *)packed_at(&v, slot, &n);
            long long value;
            if (data == NULL || !parse_ll(data, n, &value) || value == LLONG_MAX)
                break;  /* not an integer, or overflow: the Python path gives the error */
            char digits[24];
            Py_ssize_t new_n = format_ll(digits, value + 1);
            if (!same_class(new_n, n))
                break;
            if (v.staged != NULL) {
                PyObject *staged_value = PyBytes_FromStringAndSize(digits, new_n);
                if (staged_value == NULL)
                    goto error;
                int failed = stage(&v, slot_obj, slot, staged_value, &staged_bytes);
                Py_DECREF(staged_value);
                if (failed)
                    goto error;
            }
            memcpy(data, digits, new_n);
            v.size_p[slot] = (uint32_t)new_n;
            v.atime_p[slot] = now32;  /* the write's time (INCR's read touched it too) */
            v.flags_p[slot] = 0;
            if (out_reserve(&o, new_n + 3) < 0)
                goto error;
            o.p[o.len++] = ':';
            memcpy(o.p + o.len, digits, new_n);
            o.len += new_n;
            o.p[o.len++] = '\r';
            o.p[o.len++] = '\n';
            incrs++;
        } else {
            break;
        }
    }
    view_release(&v);
    PyObject *reply = out_finish(&o);
    if (reply == NULL)
        return NULL;
    return Py_BuildValue("(nNnnnnnnn)", i - start, reply, gets, sets, incrs, hits, misses, wrong,
                         staged_bytes);
error:
    view_release(&v);
    Py_XDECREF(o.bytes);
    return NULL;
}

PyDoc_STRVAR(mget_doc,
"mget(argv, view, now_ms, touch, null) -> (reply, hits, misses) or None\n\n"
"MGET's whole reply (an array of bulk strings; nil for a missing key or another type) for\n"
"the keys argv[1:]; None when a key has expired (the Python path expires it).");

static PyObject *fast_mget(PyObject *self, PyObject *args) {
    PyObject *argv, *view_tuple;
    long long now_ms;
    int touch;
    const char *null_p;
    Py_ssize_t null_n;
    if (!PyArg_ParseTuple(args, "O!OLpy#", &PyList_Type, &argv, &view_tuple, &now_ms, &touch,
                          &null_p, &null_n))
        return NULL;
    View v;
    if (view_open(&v, view_tuple) < 0)
        return NULL;
    Py_ssize_t nkeys = PyList_GET_SIZE(argv) - 1;
    if (nkeys < 0)
        nkeys = 0;
    Out o;
    if (out_init(&o, 128 * nkeys + 32) < 0) {
        view_release(&v);
        return NULL;
    }
    const uint32_t now32 = (uint32_t)((unsigned long long)now_ms & CLOCK_MASK);
    Py_ssize_t hits = 0, misses = 0;
    Py_ssize_t stack_slots[128];
    PyObject *stack_objs[128];
    Py_ssize_t *slots = stack_slots;
    PyObject **slot_objs = stack_objs;
    if (nkeys > 128) {
        slots = PyMem_Malloc(nkeys * sizeof(Py_ssize_t));
        slot_objs = PyMem_Malloc(nkeys * sizeof(PyObject *));
        if (slots == NULL || slot_objs == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }
    o.p[o.len++] = '*';
    o.len += format_ll(o.p + o.len, nkeys);
    o.p[o.len++] = '\r';
    o.p[o.len++] = '\n';
    /* First every key's slot (metadata prefetched, so the misses of different keys overlap),
     * then a fallback on an expired key before any key is touched: the Python path then
     * sees the store exactly as it was. */
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *key = PyList_GET_ITEM(argv, k + 1);
        if (!PyBytes_CheckExact(key))
            goto fallback;
        Py_ssize_t slot = slot_of(&v, key, &slot_objs[k]);
        if (slot == -2)
            goto fallback;
        slots[k] = slot;
        if (slot >= 0) {
            __builtin_prefetch(&v.exp_p[slot]);
            __builtin_prefetch(&v.loc_p[slot]);
            __builtin_prefetch(&v.size_p[slot]);
            __builtin_prefetch(&v.atime_p[slot], 1);
        }
    }
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        Py_ssize_t slot = slots[k];
        if (slot >= 0) {
            int64_t expires = v.exp_p[slot];
            if (expires && expires <= now_ms)
                goto fallback;
            if (v.loc_p[slot]) {
                if (packed_at(&v, slot, &(Py_ssize_t){0}) == NULL)
                    goto fallback;
                __builtin_prefetch(v.region_p + (Py_ssize_t)v.loc_p[slot] * BLOCK);
            }
        }
    }
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        Py_ssize_t slot = slots[k];
        if (slot < 0) {
            if (put_raw(&o, null_p, null_n) < 0)
                goto error;
            misses++;
            continue;
        }
        hits++;
        if (touch)
            v.atime_p[slot] = now32;
        if (v.loc_p[slot]) {
            Py_ssize_t n = 0;
            const char *data = packed_at(&v, slot, &n);  /* in the region: checked above */
            if (put_bulk(&o, data, n) < 0)
                goto error;
            continue;
        }
        PyObject *value = PyDict_GetItemWithError(v.values, slot_objs[k]);
        if (value == NULL && PyErr_Occurred())
            goto error;
        if (value != NULL && PyBytes_CheckExact(value)) {
            if (put_bulk(&o, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)) < 0)
                goto error;
        } else if (put_raw(&o, null_p, null_n) < 0) {
            goto error;
        }
    }
    if (slots != stack_slots) {
        PyMem_Free(slots);
        PyMem_Free(slot_objs);
    }
    view_release(&v);
    PyObject *reply = out_finish(&o);
    if (reply == NULL)
        return NULL;
    return Py_BuildValue("(Nnn)", reply, hits, misses);
fallback:
    PyErr_Clear();
    if (slots != stack_slots) {
        PyMem_Free(slots);
        PyMem_Free(slot_objs);
    }
    view_release(&v);
    Py_DECREF(o.bytes);
    Py_RETURN_NONE;
error:
    if (slots != stack_slots) {
        PyMem_Free(slots);
        PyMem_Free(slot_objs);
    }
    view_release(&v);
    Py_XDECREF(o.bytes);
    return NULL;
}

static PyMethodDef methods[] = {
    {"run", fast_run, METH_VARARGS, run_doc},
    {"mget", fast_mget, METH_VARARGS, mget_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath",
    "Runs of plain GET/SET/INCR and MGET against the CPU store's layout, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "OPT_WRITES", OPT_WRITES) < 0
        || PyModule_AddIntConstant(m, "OPT_STOP_AT_MISS", OPT_STOP_AT_MISS) < 0
        || PyModule_AddIntConstant(m, "OPT_TOUCH", OPT_TOUCH) < 0
        || PyModule_AddIntConstant(m, "BLOCK", BLOCK) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
