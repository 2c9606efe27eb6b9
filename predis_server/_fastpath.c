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
 * One file on purpose (about 1,000 lines): the helpers the command loop calls per key (slot
 * lookup, packed reads, reply writes, event writes) are static in one translation unit, so
 * the compiler inlines them without link-time optimisation. Sections: the store view, the
 * reply buffer, integer parsing, access events, MGET, the run, the module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

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

enum { K_GET = 1, K_SET = 2, K_INCR = 3, K_MGET = 4 };  /* predis_server/pipeline.py kinds */
enum { OPT_WRITES = 1, OPT_STOP_AT_MISS = 2, OPT_TOUCH = 4 };

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

/* A first guess at a reply's size (per_item bytes an item), capped: a huge MGET or a long
 * list of commands grows the buffer as it fills instead of reserving for the worst case. */
static Py_ssize_t initial_capacity(Py_ssize_t per_item, Py_ssize_t items) {
    Py_ssize_t cap = 64 + per_item * (items > 0 ? items : 1);
    return cap < (1 << 16) ? cap : (1 << 16);
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

/* The GPU store (no-ops for the CPU store): a change the device mirror has not seen notes
 * its time once (MIRROR_SINCE, time.monotonic_ns's clock: the end of a tick reads it). */
static inline void mirror_changed(View *v) {
    if (!v->mirror_p[MIRROR_SINCE]) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v->mirror_p[MIRROR_SINCE] = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    }
}

/* Region bytes [off, off + n) changed: their pages go with the next sync. */
static inline void mark_region(View *v, Py_ssize_t off, Py_ssize_t n) {
    if (v->mirror_p == NULL)
        return;
    Py_ssize_t last = (off + (n ? n : 1) - 1) >> PAGE_SHIFT;
    for (Py_ssize_t page = off >> PAGE_SHIFT; page <= last && page < v->region_pages; page++)
        v->region_dirty_p[page] = 1;
    mirror_changed(v);
}

/* Slot's entries in the mirrored slot arrays changed. */
static inline void mark_slot(View *v, Py_ssize_t slot) {
    if (v->mirror_p == NULL || (slot >> SLOT_PAGE_SHIFT) >= v->slot_pages)
        return;
    v->slot_dirty_p[slot >> SLOT_PAGE_SHIFT] = 1;
    mirror_changed(v);
}

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

/* Whether argv may write its key as a run writes (SET key value, INCR key): the look-ahead's
 * guess, before the command's kind is looked up, of whether a write's arrays will be read. */
static inline int is_write_like(PyObject *argv) {
    if (PyList_GET_SIZE(argv) > 2)
        return 1;
    PyObject *name = PyList_GET_ITEM(argv, 0);
    return PyBytes_CheckExact(name) && PyBytes_GET_SIZE(name) > 0 && (PyBytes_AS_STRING(name)[0] | 0x20) == 'i';
}

static int same_class(Py_ssize_t a, Py_ssize_t b) {
    return ((a + IN_CLASS) | IN_CLASS) == ((b + IN_CLASS) | IN_CLASS);
}

/* -- access events: the collector's ring (models/collector.py), written by the C path --
 * Key codes as models/keycodes.py computes them: the key zero-padded to 8-byte little-endian
 * words, each word xor its position's salt and mixed (splitmix64's finaliser), the sum
 * mixed again with the length; the prefix is the key without its trailing digits, the
 * suffix those digits' last 18 as an integer (-1: none). tests/test_fastpath.py checks the
 * events against the Python path's. */
#define GOLDEN 0x9E3779B97F4A7C15ULL

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBULL;
    return h ^ (h >> 31);
}

#define SALTS 8  /* words of the keys most often seen (up to 64 bytes); longer ones compute theirs */
static uint64_t salts[SALTS];

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORD_LOADS 1  /* 8 key bytes are one little-endian word: whole-word loads */
#else
#define WORD_LOADS 0
#endif
#define ONES 0x0101010101010101ULL

/* The little-endian word of key[j:j+8] zero-padded past n (j < n). A short last word of a key
 * of 8 bytes or more is the key's last 8 bytes shifted down: no byte loop. */
static inline uint64_t word_at(const unsigned char *key, Py_ssize_t n, Py_ssize_t j) {
    uint64_t word = 0;
#if WORD_LOADS
    if (n - j >= 8) {
        memcpy(&word, key + j, 8);
        return word;
    }
    if (n >= 8) {
        memcpy(&word, key + n - 8, 8);
        return word >> (8 * (8 - (n - j)));
    }
#endif
    for (Py_ssize_t b = 0; b < 8 && j + b < n; b++)
        word |= (uint64_t)key[j + b] << (8 * b);
    return word;
}

/* The hashes of key[:n] and of its prefix key[:cut] (cut <= n) in one pass over the words:
 * the prefix's whole words are the key's (same bytes, same position salts), only a word the
 * cut splits is mixed again, masked. */
static inline void key_hashes(const unsigned char *key, Py_ssize_t n, Py_ssize_t cut,
                              uint64_t *full, uint64_t *prefix) {
    uint64_t total = 0, ptotal = 0;
    const Py_ssize_t split = cut >> 3, rest = cut & 7;
    for (Py_ssize_t j = 0, w = 0; j < n; j += 8, w++) {
        uint64_t word = word_at(key, n, j);
        uint64_t salt = w < SALTS ? salts[w] : mix64((uint64_t)(w + 1) * GOLDEN);
        if (w == split) {
            ptotal = total;
            if (rest)
                ptotal += mix64((word & ((1ULL << (8 * rest)) - 1)) ^ salt);
        }
        total += mix64(word ^ salt);
    }
    if (split >= (n + 7) >> 3)  /* cut == n, a whole number of words */
        ptotal = total;
    *full = mix64(total + (uint64_t)n * GOLDEN);
    *prefix = mix64(ptotal + (uint64_t)cut * GOLDEN);
}

/* Nonzero in each byte of x that is not an ASCII digit, zero in each that is (no carries
 * between bytes: a low nibble plus 6 stays below 0x20). */
static inline uint64_t non_digits(uint64_t x) {
    return ((x & (0xF0 * ONES)) ^ (0x30 * ONES)) | (((x & (0x0F * ONES)) + 0x06 * ONES) & (0xF0 * ONES));
}

/* Where key[:n]'s trailing digits begin (n: it ends in none), 8 bytes at a time. */
static inline Py_ssize_t digits_start(const unsigned char *key, Py_ssize_t n) {
    Py_ssize_t cut = n;
#if WORD_LOADS && defined(__GNUC__)
    while (cut >= 8) {
        uint64_t word;
        memcpy(&word, key + cut - 8, 8);
        uint64_t bad = non_digits(word);
        if (bad)  /* the word's last byte is its top byte: digits are the zero bytes above bad's top */
            return cut - (__builtin_clzll(bad) >> 3);
        cut -= 8;
    }
#endif
    while (cut > 0 && key[cut - 1] >= '0' && key[cut - 1] <= '9')
        cut--;
    return cut;
}

/* The number the digits key[s:e] spell (0 < e - s <= 8): the 8 bytes that end at e, those
 * before s replaced by '0', converted in three multiplications (pairs, then fours, then all). */
static inline int64_t digits_value(const unsigned char *key, Py_ssize_t s, Py_ssize_t e) {
#if WORD_LOADS
    if (e >= 8) {
        uint64_t v;
        memcpy(&v, key + e - 8, 8);
        const Py_ssize_t pad = 8 - (e - s);
        if (pad) {
            const uint64_t low = (1ULL << (8 * pad)) - 1;
            v = (v & ~low) | ((0x30 * ONES) & low);
        }
        v -= 0x30 * ONES;
        v = v * 10 + (v >> 8);
        return (int64_t)((((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32)))
                          + (((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32);
    }
#endif
    int64_t value = 0;
    for (; s < e; s++)
        value = value * 10 + (key[s] - '0');
    return value;
}

/* The suffix code: the last 18 of the digits key[cut:n] as an integer (cut < n). */
static inline int64_t suffix_value(const unsigned char *key, Py_ssize_t n, Py_ssize_t cut) {
    const Py_ssize_t s = n - 18 > cut ? n - 18 : cut;
    if (n - 8 <= s)
        return digits_value(key, s, n);
    int64_t value = digits_value(key, n - 8, n);
    const Py_ssize_t e = n - 8;
    value += digits_value(key, e - 8 > s ? e - 8 : s, e) * 100000000LL;
    if (e - 8 > s)
        value += digits_value(key, s, e - 8) * 10000000000000000LL;
    return value;
}

/* key[:n]'s three codes (models/keycodes.py): its hash, its prefix's hash (the key's own when
 * it ends in no digit) and its numeric suffix (-1: none). */
static inline void key_codes(const unsigned char *key, Py_ssize_t n, uint64_t *hash, uint64_t *prefix,
                             int64_t *suffix) {
    const Py_ssize_t cut = digits_start(key, n);
    uint64_t h, p;
    key_hashes(key, n, cut, &h, &p);
    *hash = h;
    *prefix = cut == n ? h : p;
    *suffix = cut == n ? -1 : suffix_value(key, n, cut);
}

enum { EV_HIT = 0, EV_MISS = 1 };  /* models/collector.py outcome codes */
enum { OP_GET = 0, OP_MGET = 1 };  /* and its op codes */

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
 * key; the GPU store's limit is its device mirror's capacity, which set() grows), -2 on
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

PyDoc_STRVAR(forget_view_doc,
"forget_view(view) -> None\n\n"
"Let go of the store view kept open between calls if it is ``view``: the store calls this\n"
"when it stops using that view (its arrays replaced, its region about to close).");

static PyObject *fast_forget_view(PyObject *self, PyObject *view_tuple) {
    if (parked.source == view_tuple)
        view_release(&parked);
    Py_RETURN_NONE;
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
