/* Integers as decimal text, both ways: format_ll writes one (reply lengths, INCR's result),
 * parse_ll reads one as Redis does (INCR's stored value).
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 */
#ifndef PREDIS_FASTPATH_INT_TEXT_H
#define PREDIS_FASTPATH_INT_TEXT_H

#include <limits.h>

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

#endif  /* PREDIS_FASTPATH_INT_TEXT_H */
