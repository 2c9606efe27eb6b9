/* The GPU store's device mirror (gpu/mirror.py PageMirror): the marks a write leaves on the
 * region and slot pages it changed, which the next sync copies. No-ops for the CPU store.
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 */
#ifndef PREDIS_FASTPATH_MIRROR_MARKS_H
#define PREDIS_FASTPATH_MIRROR_MARKS_H

#include <time.h>
#include "view.h"

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

#endif  /* PREDIS_FASTPATH_MIRROR_MARKS_H */
