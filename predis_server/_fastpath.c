/* The commonest pipelined commands in C: runs of plain GET / SET key value / INCR, MGET's
 * reply.
 *
 * predis_server/fastpath.py says when these are used; the store hands over its layout with
 * native_view() (gpu/cpu.py: the dict of slots, the metadata arrays, the packed-value region;
 * gpu/cuda.py adds its keys' locations and the dirty maps of its device mirror). Whatever cannot be done exactly as the Python path does (a key
 * that expired, an INCR on a non-integer, a miss the origin must load, the first read of a
 * prefetched entry) they stop before, and the caller runs that command the Python way. The
 * only Python they call is the store's own set() and native_view(), for writes that need a
 * larger block, a TTL cleared or a new key that insert_new cannot place (arrays or region
 * full, a long value); after it the view is opened again and keys are looked up again. A new
 * key insert_new places is the only other change to the index while they run.
 *
 * One translation unit on purpose: the helpers the command loop calls per key (slot lookup,
 * packed reads, reply writes, event writes) are static in it, so the compiler inlines them
 * without link-time optimisation. They are headers in fastpath_c/, included below: the store
 * view (view.h), integers as text (int_text.h), the reply buffer (reply_buffer.h), the device
 * mirror's marks (mirror_marks.h), values written over (writes.h), new keys in the slabs
 * (slabs.h), key codes (keycodes.h), the collector's ring (ring.h) and a run's event sink
 * (event_sink.h). This file holds MGET, the run and the module.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "fastpath_c/view.h"
#include "fastpath_c/int_text.h"
#include "fastpath_c/reply_buffer.h"
#include "fastpath_c/mirror_marks.h"
#include "fastpath_c/writes.h"
#include "fastpath_c/slabs.h"
#include "fastpath_c/keycodes.h"
#include "fastpath_c/ring.h"
#include "fastpath_c/event_sink.h"

enum { K_GET = 1, K_SET = 2, K_INCR = 3, K_MGET = 4 };  /* predis_server/pipeline.py kinds */
enum { OPT_WRITES = 1, OPT_STOP_AT_MISS = 2, OPT_TOUCH = 4 };

/* Whether argv may write its key as a run writes (SET key value, INCR key): the look-ahead's
 * guess, before the command's kind is looked up, of whether a write's arrays will be read. */
static inline int is_write_like(PyObject *argv) {
    if (PyList_GET_SIZE(argv) > 2)
        return 1;
    PyObject *name = PyList_GET_ITEM(argv, 0);
    return PyBytes_CheckExact(name) && PyBytes_GET_SIZE(name) > 0 && (PyBytes_AS_STRING(name)[0] | 0x20) == 'i';
}

/* MGET argv[1:] appended to o as one array reply (nil for a missing key or another type),
 * touching the keys and, with a sink, recording OP_MGET events as the access hook's on_mget
 * does (another type: a MISS of size 0). Nothing is written or touched unless all of it is:
 * 0 (the Python path takes the MGET) when a key has expired, when a key is missing and
 * stop_at_miss (the origin loads it), or when a key is a prefetched entry's first read;
 * 1 done; -1 error. */
static int mget_into(Out *o, View *v, PyObject *argv, long long now_ms, int touch, int stop_at_miss,
                     const char *null_p, Py_ssize_t null_n, Sink *events, Py_ssize_t *hits,
                     Py_ssize_t *misses) {
    const uint32_t now32 = (uint32_t)((unsigned long long)now_ms & CLOCK_MASK);
    Py_ssize_t nkeys = PyList_GET_SIZE(argv) - 1, found = 0, result = 1;
    Py_ssize_t stack_slots[128];
    PyObject *stack_objs[128];
    Py_ssize_t *slots = stack_slots;
    PyObject **slot_objs = stack_objs;
    if (nkeys < 1)
        return 0;
    if (nkeys > 128) {
        slots = PyMem_Malloc(nkeys * sizeof(Py_ssize_t));
        slot_objs = PyMem_Malloc(nkeys * sizeof(PyObject *));
        if (slots == NULL || slot_objs == NULL) {
            PyErr_NoMemory();
            result = -1;
            goto done;
        }
    }
    /* Every key's slot first (metadata prefetched, so the misses of different keys overlap),
     * then the checks, all before anything is touched. */
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *key = PyList_GET_ITEM(argv, k + 1);
        if (!PyBytes_CheckExact(key)) {
            result = 0;
            goto done;
        }
        Py_ssize_t slot = slot_of(v, key, &slot_objs[k]);
        if (slot == -2) {
            result = PyErr_Occurred() ? -1 : 0;
            goto done;
        }
        slots[k] = slot;
        if (slot >= 0) {
            __builtin_prefetch(&v->exp_p[slot]);
            __builtin_prefetch(&v->loc_p[slot]);
            __builtin_prefetch(&v->size_p[slot]);
            __builtin_prefetch(&v->atime_p[slot], 1);
        } else if (stop_at_miss) {
            result = 0;
            goto done;
        }
    }
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        Py_ssize_t slot = slots[k];
        if (slot < 0)
            continue;
        int64_t expires = v->exp_p[slot];
        if (expires && expires <= now_ms) {
            result = 0;
            goto done;
        }
        if (v->loc_p[slot]) {
            Py_ssize_t n;
            const char *data = packed_at(v, slot, &n);
            if (data == NULL) {
                result = 0;
                goto done;
            }
            __builtin_prefetch(data);
        }
        int defer = sink_defers(events, PyList_GET_ITEM(argv, k + 1));
        if (defer) {
            result = defer < 0 ? -1 : 0;
            goto done;
        }
    }
    if (out_reserve(o, 24) < 0) {
        result = -1;
        goto done;
    }
    o->p[o->len++] = '*';
    o->len += format_ll(o->p + o->len, nkeys);
    o->p[o->len++] = '\r';
    o->p[o->len++] = '\n';
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        Py_ssize_t slot = slots[k];
        PyObject *key = PyList_GET_ITEM(argv, k + 1);
        const char *data = NULL;
        Py_ssize_t n = 0;
        if (slot >= 0) {
            found++;
            if (touch)
                v->atime_p[slot] = now32;
            /* another type (0), or no value object (-2): nil, as on the Python path */
            if (value_of(v, slot, slot_objs[k], &data, &n) == -1) {
                result = -1;
                goto done;
            }
        }
        if (data != NULL ? put_bulk(o, data, n) < 0 : put_raw(o, null_p, null_n) < 0) {
            result = -1;
            goto done;
        }
        if (events && sink_event(events, key, OP_MGET, data != NULL ? EV_HIT : EV_MISS, n) < 0) {
            result = -1;
            goto done;
        }
    }
    *hits += found;
    *misses += nkeys - found;
done:
    if (slots != stack_slots) {
        PyMem_Free(slots);
        PyMem_Free(slot_objs);
    }
    return (int)result;
}

#define PREPASS 64  /* commands whose slots are looked up ahead (pipeline.py RUN_CHUNK) */

/* The slot of command i's key: from the look-ahead when it covered i. */
#define SLOT_OF(i, key, obj_out) \
    ((i) - start < looked ? (*(obj_out) = ahead_obj[(i) - start], ahead_slot[(i) - start]) \
                          : slot_of(&v, (key), (obj_out)))

/* After command `at` inserted key: later commands looked up ahead as missing that name it
 * find the new slot (the rest of the look-ahead stays valid: nothing else changed). */
static void ahead_inserted(PyObject *commands, Py_ssize_t start, Py_ssize_t at, Py_ssize_t looked,
                           Py_ssize_t *ahead_slot, PyObject **ahead_obj, PyObject *key,
                           Py_ssize_t slot, PyObject *slot_obj) {
    Py_ssize_t n = PyBytes_GET_SIZE(key);
    for (Py_ssize_t k = at - start + 1; k < looked; k++) {
        if (ahead_slot[k] != -1)
            continue;
        PyObject *other = PyList_GET_ITEM(PyList_GET_ITEM(commands, start + k), 1);
        if (other == key || (PyBytes_GET_SIZE(other) == n
                             && memcmp(PyBytes_AS_STRING(other), PyBytes_AS_STRING(key), n) == 0)) {
            ahead_slot[k] = slot;
            ahead_obj[k] = slot_obj;
        }
    }
}

/* A write the C path does not do in place: a new key's in C (insert_new) when it can, else
 * (or for an existing key) through the store's set() (store_set). value may be NULL (made
 * from data when set() needs it). 1 done, 0 the Python path takes the command, -1 error. */
static int insert_or_set(View *v, PyObject *store, int is_new, PyObject *commands, Py_ssize_t start,
                         Py_ssize_t i, Py_ssize_t *looked, Py_ssize_t *ahead_slot, PyObject **ahead_obj,
                         PyObject *key, PyObject *value, const char *data, Py_ssize_t n, int keep_ttl,
                         long long now_ms, PyObject **now_obj) {
    if (is_new) {
        PyObject *slot_obj = NULL;
        Py_ssize_t slot = insert_new(v, key, data, n, now_ms, &slot_obj);
        if (slot == -2)
            return -1;
        if (slot >= 0) {
            ahead_inserted(commands, start, i, *looked, ahead_slot, ahead_obj, key, slot, slot_obj);
            return 1;
        }
    }
    if (value != NULL)
        return store_set(store, v, key, value, now_ms, now_obj, keep_ttl, looked);
    PyObject *made = PyBytes_FromStringAndSize(data, n);
    if (made == NULL)
        return -1;
    int done = store_set(store, v, key, made, now_ms, now_obj, keep_ttl, looked);
    Py_DECREF(made);
    return done;
}

PyDoc_STRVAR(run_doc,
"run(commands, start, end, kinds, view, now_ms, options, null, wrongtype[, sink[, store[, outs]]])\n"
"-> (ran, reply, gets, sets, incrs, hits, misses, wrongtype_replies, events, mgets)\n\n"
"Execute commands[start:end] while each is a plain GET, SET key value, INCR or MGET that can be\n"
"done in place; stop before the first that cannot. reply holds the encoded replies; with a\n"
"sink (the collector's ring) each GET's access event is written there; with the store, writes\n"
"that cannot be done in place go through its set(). With outs (a list of lists, one per\n"
"command: the lone commands of many connections, and their output lists), each command's\n"
"reply is appended to its own list instead, and reply is empty.");

/* outs mode: the reply of command i (all of o) goes to its connection's output list */
static int emit_reply(Out *o, PyObject *outs, Py_ssize_t i) {
    PyObject *target = PyList_GET_ITEM(outs, i);
    if (!PyList_CheckExact(target)) {
        PyErr_SetString(PyExc_TypeError, "outs: one output list per command");
        return -1;
    }
    PyObject *reply = PyBytes_FromStringAndSize(o->p, o->len);
    if (reply == NULL)
        return -1;
    int failed = PyList_Append(target, reply);
    Py_DECREF(reply);
    o->len = 0;
    return failed;
}

static PyObject *fast_run(PyObject *self, PyObject *args) {
    PyObject *commands, *kinds, *view_tuple;
    Py_ssize_t start, end;
    long long now_ms;
    int options;
    const char *null_p, *wrong_p;
    Py_ssize_t null_n, wrong_n;
    PyObject *sink_arg = Py_None, *store = Py_None, *outs = Py_None;
    if (!PyArg_ParseTuple(args, "O!nnO!OLiy#y#|OOO", &PyList_Type, &commands, &start, &end,
                          &PyDict_Type, &kinds, &view_tuple, &now_ms, &options,
                          &null_p, &null_n, &wrong_p, &wrong_n, &sink_arg, &store, &outs))
        return NULL;
    PyObject *now_obj = NULL;  /* now_ms as an int, made on the first store.set call */
    if (end > PyList_GET_SIZE(commands))
        end = PyList_GET_SIZE(commands);
    if (outs == Py_None)
        outs = NULL;
    else if (!PyList_CheckExact(outs) || PyList_GET_SIZE(outs) < end) {
        PyErr_SetString(PyExc_TypeError, "outs: one output list per command");
        return NULL;
    }
    Sink sink, *events = NULL;
    if (sink_arg != Py_None) {
        if (sink_open(&sink, sink_arg, now_ms) < 0)
            return NULL;
        events = &sink;
    }
    View v;
    if (view_take(&v, view_tuple) < 0) {
        if (events)
            sink_release(events);
        return NULL;
    }
    Out o;
    if (out_init(&o, initial_capacity(64, end - start)) < 0) {
        view_release(&v);
        if (events)
            sink_release(events);
        return NULL;
    }
    const uint32_t now32 = (uint32_t)((unsigned long long)now_ms & CLOCK_MASK);
    const int touch = options & OPT_TOUCH, writes = options & OPT_WRITES;
    Py_ssize_t gets = 0, sets = 0, incrs = 0, mgets = 0, hits = 0, misses = 0, wrong = 0, i;
    /* Every key's slot first, with its metadata prefetched: on a large keyspace each lookup
     * and each array read is a cache miss, and done one command at a time they queue up.
     * Looked up ahead, the misses of different keys overlap. The slots stay valid: no key
     * goes during the run, a key insert_new adds is noted (ahead_inserted), and after the
     * store's set() the keys are looked up again. */
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
            if (v.mirror_p != NULL && is_write_like(argv))  /* the GPU store: the slot page's mark */
                __builtin_prefetch(&v.slot_dirty_p[slot >> SLOT_PAGE_SHIFT], 1);
        }
    }
    for (Py_ssize_t k = 0; k < looked; k++) {
        Py_ssize_t slot = ahead_slot[k];
        if (slot >= 0 && v.loc_p[slot] && v.region_p != NULL)
            __builtin_prefetch(v.region_p + (Py_ssize_t)v.loc_p[slot] * BLOCK, 1);
    }
    for (i = start; i < end; i++) {
        if (outs != NULL && i > start && emit_reply(&o, outs, i - 1) < 0)
            goto error;
        PyObject *argv = PyList_GET_ITEM(commands, i);
        if (!PyList_CheckExact(argv))
            break;
        Py_ssize_t argc = PyList_GET_SIZE(argv);
        if (argc < 2)
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
        PyObject *slot_obj = NULL;
        Py_ssize_t slot = -1;
        if (kind != K_MGET) {  /* GET, SET, INCR: one key; MGET looks its keys up itself */
            slot = SLOT_OF(i, key, &slot_obj);
            if (slot == -2) {
                if (PyErr_Occurred())
                    goto error;
                break;
            }
        }
        if (kind == K_GET) {
            if (argc != 2)
                break;
            if (slot < 0) {
                if (options & OPT_STOP_AT_MISS)
                    break;  /* the origin loads it: the Python path */
                if (put_raw(&o, null_p, null_n) < 0)
                    goto error;
                if (events && sink_event(events, key, OP_GET, EV_MISS, 0) < 0)
                    goto error;
                misses++;
                gets++;
                continue;
            }
            int64_t expires = v.exp_p[slot];
            if (expires && expires <= now_ms)
                break;  /* expired: the Python path deletes it and counts it */
            int defer = sink_defers(events, key);
            if (defer < 0)
                goto error;
            if (defer)
                break;  /* a prefetched entry's first read: the Python path reports it */
            const char *data = NULL;
            Py_ssize_t n = 0;
            int string = value_of(&v, slot, slot_obj, &data, &n);
            if (string == -1)
                goto error;
            if (string == -2)
                break;
            if (string) {
                if (put_bulk(&o, data, n) < 0
                    || (events && sink_event(events, key, OP_GET, EV_HIT, n) < 0))
                    goto error;
            } else {  /* WRONGTYPE: no access event, as on the Python path */
                if (put_raw(&o, wrong_p, wrong_n) < 0)
                    goto error;
                wrong++;
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
            Py_ssize_t n = PyBytes_GET_SIZE(value), old_n;
            /* in place only over a packed string of the same size class with no TTL (SET
             * clears a TTL, which the store counts); otherwise the store's own set */
            if (slot < 0 || !v.loc_p[slot] || v.exp_p[slot] || !same_class(n, v.size_p[slot])) {
                int done = insert_or_set(&v, store, slot < 0, commands, start, i, &looked, ahead_slot,
                                         ahead_obj, key, value, PyBytes_AS_STRING(value), n, 0, now_ms,
                                         &now_obj);
                if (done < 0)
                    goto error;
                if (!done)
                    break;
            } else {
                char *dst = (char *)packed_at(&v, slot, &old_n);
                if (dst == NULL || dst - v.region_p + n > v.region_len)
                    break;
                write_packed(&v, slot, dst, PyBytes_AS_STRING(value), n, now32);
            }
            if (put_raw(&o, "+OK\r\n", 5) < 0)
                goto error;
            sets++;
        } else if (kind == K_INCR) {
            if (argc != 2 || !writes)
                break;
            char digits[24];
            Py_ssize_t n = 0, new_n;
            char *data = NULL;
            if (slot < 0) {  /* a new counter */
                digits[0] = '1';
                new_n = 1;
            } else {
                int64_t expires = v.exp_p[slot];
                if (!v.loc_p[slot] || (expires && expires <= now_ms))
                    break;
                data = (char *)packed_at(&v, slot, &n);
                long long value;
                if (data == NULL || !parse_ll(data, n, &value) || value == LLONG_MAX)
                    break;  /* not an integer, or overflow: the Python path gives the error */
                new_n = format_ll(digits, value + 1);
            }
            if (slot < 0 || !same_class(new_n, n)) {  /* a new key or a larger block: the store's set */
                int done = insert_or_set(&v, store, slot < 0, commands, start, i, &looked, ahead_slot,
                                         ahead_obj, key, NULL, digits, new_n, 1, now_ms, &now_obj);
                if (done < 0)
                    goto error;
                if (!done)
                    break;
            } else {
                write_packed(&v, slot, data, digits, new_n, now32);  /* INCR's read touched it too */
            }
            if (out_reserve(&o, new_n + 3) < 0)
                goto error;
            o.p[o.len++] = ':';
            memcpy(o.p + o.len, digits, new_n);
            o.len += new_n;
            o.p[o.len++] = '\r';
            o.p[o.len++] = '\n';
            incrs++;
        } else if (kind == K_MGET) {
            int done = mget_into(&o, &v, argv, now_ms, touch, options & OPT_STOP_AT_MISS, null_p, null_n,
                                 events, &hits, &misses);
            if (done < 0)
                goto error;
            if (!done)
                break;
            mgets++;
        } else {
            break;
        }
    }
    /* a refused command leaves nothing in o: what is there is the last command's reply */
    if (outs != NULL && o.len > 0 && emit_reply(&o, outs, i - 1) < 0)
        goto error;
    view_park(&v);
    Py_XDECREF(now_obj);
    Py_ssize_t recorded = 0;
    if (events) {
        recorded = events->written;
        sink_release(events);
    }
    PyObject *reply = out_finish(&o);
    if (reply == NULL)
        return NULL;
    return Py_BuildValue("(nNnnnnnnnn)", i - start, reply, gets, sets, incrs, hits, misses, wrong,
                         recorded, mgets);
error:
    view_release(&v);
    Py_XDECREF(now_obj);
    if (events)
        sink_release(events);
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
    if (view_take(&v, view_tuple) < 0)
        return NULL;
    Out o;
    if (out_init(&o, initial_capacity(128, PyList_GET_SIZE(argv))) < 0) {
        view_release(&v);
        return NULL;
    }
    Py_ssize_t hits = 0, misses = 0;
    int done = mget_into(&o, &v, argv, now_ms, touch, 0, null_p, null_n, NULL, &hits, &misses);
    if (done < 0)
        view_release(&v);
    else
        view_park(&v);
    if (done <= 0) {
        Py_DECREF(o.bytes);
        if (done < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *reply = out_finish(&o);
    if (reply == NULL)
        return NULL;
    return Py_BuildValue("(Nnn)", reply, hits, misses);
}

static PyMethodDef methods[] = {
    {"forget_view", fast_forget_view, METH_O, forget_view_doc},
    {"run", fast_run, METH_VARARGS, run_doc},
    {"mget", fast_mget, METH_VARARGS, mget_doc},
    {"ring", fast_ring, METH_VARARGS, ring_doc},
    {"ring_codes", fast_ring_codes, METH_VARARGS, ring_codes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath",
    "Runs of plain GET/SET/INCR and MGET against the CPU store's layout, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    for (uint64_t w = 1; w <= SALTS; w++)
        salts[w - 1] = mix64(w * GOLDEN);
    if (PyType_Ready(&RingType) < 0)
        return NULL;
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
