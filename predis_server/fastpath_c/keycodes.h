/* The key codes of the collector's access events (models/collector.py), in C.
 * Part of _fastpath.c's one translation unit: included there, after Python.h.
 *
 * Key codes as models/keycodes.py computes them: the key zero-padded to 8-byte little-endian
 * words, each word xor its position's salt and mixed (splitmix64's finaliser), the sum
 * mixed again with the length; the prefix is the key without its trailing digits, the
 * suffix those digits' last 18 as an integer (-1: none). tests/test_fastpath_events.py
 * checks the events against the Python path's. */
#ifndef PREDIS_FASTPATH_KEYCODES_H
#define PREDIS_FASTPATH_KEYCODES_H

#include <stdint.h>
#include <string.h>

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

#endif  /* PREDIS_FASTPATH_KEYCODES_H */
