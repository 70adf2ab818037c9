/* The state tree's batch rebuild in C: the same nodes, in the same order, as
 * `_Rebuild` in state_tree.py (which stays the reference and the fallback).
 *
 * keccak256(data) -> bytes
 *     Keccak-256 with the original padding (0x01), as Ethereum and pysha3's
 *     keccak_256 (not SHA3-256's 0x06).
 *
 * rebuild(changes, root, quick, get, MissingNode, CorruptNode)
 *     -> (new_root, staged, replaced) | None
 *     `changes`: a mapping key -> value or None (delete). None is returned,
 *     before any store call, when a key or value is not exactly `bytes` or is
 *     too long: the caller then runs the Python code, which raises the same
 *     InvalidChange it always did (or handles a bytes subclass).
 *     `quick`: a dict (looked up directly) or a callable, the store's in-memory
 *     lookup, tried first for every node read; `get`: the store's `get`.
 *     `staged`: dict node hash -> record of the new nodes, `replaced`: list of
 *     the hashes of old nodes the new tree no longer holds, both in the order
 *     the Python code produces them.
 *
 * Records read from the store are untrusted: every length and tag is checked
 * before a byte of the record is read, and a path deeper than 256 bits raises
 * CorruptNode (recursion depth is bounded by the path length: 257 frames).
 * No static mutable state: every call has its own context.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- keccak-256 ---------------------------------------------------------------------- */

#define KECCAK_RATE 136 /* bytes: 1600 bits - 2 * 256 bits of capacity */
#define HASH_LEN 32
#define PATH_BITS 256
#define MAX_KEY_BYTES 1024
#define MAX_VALUE_BYTES (4 * 1024 * 1024)
#define LEAF_TAG 0x00
#define INTERNAL_TAG 0x01
#define INTERNAL_LEN (1 + 2 * HASH_LEN)
#define LEAF_HEADER (1 + HASH_LEN + 2) /* tag, key hash, key length u16 BE */

static const uint64_t keccak_rc[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

#define ROL64(x, n) (((x) << (n)) | ((x) >> (64 - (n))))

/* keccak-f[1600] on lanes a[x + 5y]. Rho offsets and the pi permutation are
 * written out (state index: x + 5y; pi moves lane (x, y) to (y, 2x + 3y)). */
static void keccak_f1600(uint64_t a[25])
{
    for (int round = 0; round < 24; round++) {
        uint64_t c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20];
        uint64_t c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21];
        uint64_t c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22];
        uint64_t c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23];
        uint64_t c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24];
        uint64_t d0 = c4 ^ ROL64(c1, 1);
        uint64_t d1 = c0 ^ ROL64(c2, 1);
        uint64_t d2 = c1 ^ ROL64(c3, 1);
        uint64_t d3 = c2 ^ ROL64(c4, 1);
        uint64_t d4 = c3 ^ ROL64(c0, 1);

        /* theta, then rho and pi into b: b[y + 5((2x + 3y) % 5)] = rol(a[x + 5y] ^ d[x], r[x][y]) */
        uint64_t b[25];
        b[0] = a[0] ^ d0;
        b[10] = ROL64(a[1] ^ d1, 1);
        b[20] = ROL64(a[2] ^ d2, 62);
        b[5] = ROL64(a[3] ^ d3, 28);
        b[15] = ROL64(a[4] ^ d4, 27);
        b[16] = ROL64(a[5] ^ d0, 36);
        b[1] = ROL64(a[6] ^ d1, 44);
        b[11] = ROL64(a[7] ^ d2, 6);
        b[21] = ROL64(a[8] ^ d3, 55);
        b[6] = ROL64(a[9] ^ d4, 20);
        b[7] = ROL64(a[10] ^ d0, 3);
        b[17] = ROL64(a[11] ^ d1, 10);
        b[2] = ROL64(a[12] ^ d2, 43);
        b[12] = ROL64(a[13] ^ d3, 25);
        b[22] = ROL64(a[14] ^ d4, 39);
        b[23] = ROL64(a[15] ^ d0, 41);
        b[8] = ROL64(a[16] ^ d1, 45);
        b[18] = ROL64(a[17] ^ d2, 15);
        b[3] = ROL64(a[18] ^ d3, 21);
        b[13] = ROL64(a[19] ^ d4, 8);
        b[14] = ROL64(a[20] ^ d0, 18);
        b[24] = ROL64(a[21] ^ d1, 2);
        b[9] = ROL64(a[22] ^ d2, 61);
        b[19] = ROL64(a[23] ^ d3, 56);
        b[4] = ROL64(a[24] ^ d4, 14);

        /* chi */
        for (int y = 0; y < 25; y += 5) {
            uint64_t b0 = b[y], b1 = b[y + 1], b2 = b[y + 2], b3 = b[y + 3], b4 = b[y + 4];
            a[y] = b0 ^ (~b1 & b2);
            a[y + 1] = b1 ^ (~b2 & b3);
            a[y + 2] = b2 ^ (~b3 & b4);
            a[y + 3] = b3 ^ (~b4 & b0);
            a[y + 4] = b4 ^ (~b0 & b1);
        }
        /* iota */
        a[0] ^= keccak_rc[round];
    }
}

static uint64_t load64_le(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

static void store64_le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* Keccak-256 of the concatenation of `count` parts (so records need not be
 * copied into one buffer before hashing). */
static void keccak256_parts(const unsigned char *const *parts, const size_t *lens, int count,
                            unsigned char out[HASH_LEN])
{
    uint64_t a[25];
    unsigned char block[KECCAK_RATE];
    size_t fill = 0;
    memset(a, 0, sizeof(a));
    for (int part = 0; part < count; part++) {
        const unsigned char *p = parts[part];
        size_t len = lens[part];
        if (fill == 0) {
            while (len >= KECCAK_RATE) {
                for (int i = 0; i < KECCAK_RATE / 8; i++) {
                    a[i] ^= load64_le(p + 8 * i);
                }
                keccak_f1600(a);
                p += KECCAK_RATE;
                len -= KECCAK_RATE;
            }
        }
        while (len > 0) {
            size_t take = KECCAK_RATE - fill;
            if (take > len) {
                take = len;
            }
            memcpy(block + fill, p, take);
            fill += take;
            p += take;
            len -= take;
            if (fill == KECCAK_RATE) {
                for (int i = 0; i < KECCAK_RATE / 8; i++) {
                    a[i] ^= load64_le(block + 8 * i);
                }
                keccak_f1600(a);
                fill = 0;
            }
        }
    }
    /* Original Keccak padding: 0x01 after the message, 0x80 in the block's last byte. */
    memset(block + fill, 0, KECCAK_RATE - fill);
    block[fill] ^= 0x01;
    block[KECCAK_RATE - 1] ^= 0x80;
    for (int i = 0; i < KECCAK_RATE / 8; i++) {
        a[i] ^= load64_le(block + 8 * i);
    }
    keccak_f1600(a);
    for (int i = 0; i < HASH_LEN / 8; i++) {
        store64_le(out + 8 * i, a[i]);
    }
}

static void keccak256_bytes(const unsigned char *data, size_t len, unsigned char out[HASH_LEN])
{
    keccak256_parts(&data, &len, 1, out);
}

static PyObject *py_keccak256(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    unsigned char digest[HASH_LEN];
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    keccak256_bytes((const unsigned char *)view.buf, (size_t)view.len, digest);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)digest, HASH_LEN);
}

/* ---- the rebuild ----------------------------------------------------------------------- */

/* Node kinds, as in state_tree.py. UNKNOWN: an untouched child whose record was not read. */
enum { K_EMPTY = 0, K_LEAF = 1, K_INTERNAL = 2, K_UNKNOWN = 3 };

static const unsigned char EMPTY_HASH[HASH_LEN] = {0};

typedef struct {
    unsigned char path[HASH_LEN]; /* keccak256(key) */
    PyObject *key;                /* strong reference, exact bytes */
    PyObject *value;              /* strong reference, exact bytes; NULL: delete */
    PyObject *known;              /* an existing leaf's hash (bytes) or NULL */
} Item;

typedef struct {
    unsigned char hash[HASH_LEN];
    int kind;
} Node;

typedef struct {
    unsigned char parent[HASH_LEN];
    unsigned char sibling[HASH_LEN];
    int right;
} TrailStep;

typedef struct {
    Item *items;
    Py_ssize_t count;
    PyObject *quick_dict; /* borrowed: the memory lookup when it is a dict, else NULL */
    PyObject *quick_call; /* borrowed: the memory lookup when it is a callable, else NULL */
    PyObject *get;        /* borrowed */
    PyObject *missing;    /* borrowed: MissingNode */
    PyObject *corrupt;    /* borrowed: CorruptNode */
    PyObject *staged;     /* new dict */
    PyObject *replaced;   /* new list */
    unsigned long hashes; /* node hashes computed, for yield_now */
    TrailStep trail[PATH_BITS + 1];
} Ctx;

static int is_empty(const unsigned char hash[HASH_LEN])
{
    return memcmp(hash, EMPTY_HASH, HASH_LEN) == 0;
}

static int path_bit(const unsigned char path[HASH_LEN], int depth)
{
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1;
}

static void hex32(const unsigned char hash[HASH_LEN], char out[2 * HASH_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < HASH_LEN; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[2 * HASH_LEN] = '\0';
}

static PyObject *hash_object(const unsigned char hash[HASH_LEN])
{
    return PyBytes_FromStringAndSize((const char *)hash, HASH_LEN);
}

static void raise_too_deep(Ctx *ctx)
{
    PyErr_SetString(ctx->corrupt, "path is longer than 256 bits");
}

/* `_check`: 0 if `record` (a bytes object or NULL for a missing node) is a
 * well-formed record, else -1 with MissingNode / CorruptNode set. Reads a byte
 * only after its offset is known to be inside the record. */
static int check_record(Ctx *ctx, const unsigned char hash[HASH_LEN], PyObject *record)
{
    char hex[2 * HASH_LEN + 1];
    if (record == NULL) {
        hex32(hash, hex);
        PyErr_Format(ctx->missing, "node %s is not in the store", hex);
        return -1;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(record);
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(record);
    int tag = len > 0 ? data[0] : -1;
    if (tag == INTERNAL_TAG) {
        if (len != INTERNAL_LEN) {
            hex32(hash, hex);
            PyErr_Format(ctx->corrupt, "internal node %s is %zd bytes", hex, len);
            return -1;
        }
    } else if (tag == LEAF_TAG) {
        if (len < LEAF_HEADER || len < LEAF_HEADER + ((Py_ssize_t)data[33] << 8 | data[34])) {
            hex32(hash, hex);
            PyErr_Format(ctx->corrupt, "leaf node %s is truncated", hex);
            return -1;
        }
    } else {
        hex32(hash, hex);
        PyErr_Format(ctx->corrupt, "node %s has unknown tag", hex);
        return -1;
    }
    return 0;
}

/* The result of a store lookup: a new reference to a bytes record, or NULL with
 * *missing = 1 when the store does not hold it, or NULL with an exception set. */
static PyObject *as_record(PyObject *found, int *missing)
{
    if (found == Py_None) {
        Py_DECREF(found);
        *missing = 1;
        return NULL;
    }
    if (!PyBytes_Check(found)) {
        PyErr_Format(PyExc_TypeError, "a node record is bytes, not %.100s",
                     Py_TYPE(found)->tp_name);
        Py_DECREF(found);
        return NULL;
    }
    return found;
}

/* `quick(node) or get(node)`. Returns a new reference to the record, or NULL:
 * with *missing = 1 (get returned None) or with an exception set. */
static PyObject *fetch(Ctx *ctx, PyObject *hash_obj, int *missing)
{
    PyObject *found;
    *missing = 0;
    if (ctx->quick_dict != NULL) {
        found = PyDict_GetItemWithError(ctx->quick_dict, hash_obj);
        if (found != NULL) {
            Py_INCREF(found);
        } else if (PyErr_Occurred()) {
            return NULL;
        }
    } else {
        found = PyObject_CallOneArg(ctx->quick_call, hash_obj);
        if (found == NULL) {
            return NULL;
        }
    }
    if (found != NULL) {
        int truth = PyObject_IsTrue(found);
        if (truth < 0) {
            Py_DECREF(found);
            return NULL;
        }
        if (truth) {
            if (!PyBytes_Check(found)) {
                PyErr_Format(PyExc_TypeError, "a node record is bytes, not %.100s",
                             Py_TYPE(found)->tp_name);
                Py_DECREF(found);
                return NULL;
            }
            return found;
        }
        Py_DECREF(found);
    }
    found = PyObject_CallOneArg(ctx->get, hash_obj);
    if (found == NULL) {
        return NULL;
    }
    return as_record(found, missing);
}

/* `_load(store, hash)`: store.get, then `_check`. A new reference or NULL with an exception. */
static PyObject *load(Ctx *ctx, const unsigned char hash[HASH_LEN])
{
    int missing = 0;
    PyObject *hash_obj = hash_object(hash);
    if (hash_obj == NULL) {
        return NULL;
    }
    PyObject *found = PyObject_CallOneArg(ctx->get, hash_obj);
    Py_DECREF(hash_obj);
    if (found == NULL) {
        return NULL;
    }
    PyObject *record = as_record(found, &missing);
    if (record == NULL && !missing) {
        return NULL;
    }
    if (check_record(ctx, hash, record) < 0) {
        Py_XDECREF(record);
        return NULL;
    }
    return record;
}

/* Node hashes between two releases of the GIL: about 3 ms of hashing here, close to
 * CPython's 5 ms switch interval, so a big update (a genesis, a huge block) lets other
 * threads (a node's event loop) run about as often as the Python rebuild would. No
 * borrowed reference is held across a call to stage(). */
#define HASHES_PER_YIELD 8192

static void yield_now(Ctx *ctx)
{
    if (++ctx->hashes % HASHES_PER_YIELD == 0) {
        Py_BEGIN_ALLOW_THREADS
        Py_END_ALLOW_THREADS
    }
}

static int stage(Ctx *ctx, const unsigned char hash[HASH_LEN], PyObject *record)
{
    yield_now(ctx);
    PyObject *key = hash_object(hash);
    if (key == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(ctx->staged, key, record);
    Py_DECREF(key);
    return rc;
}

static int mark_replaced(Ctx *ctx, const unsigned char hash[HASH_LEN])
{
    PyObject *obj = hash_object(hash);
    if (obj == NULL) {
        return -1;
    }
    int rc = PyList_Append(ctx->replaced, obj);
    Py_DECREF(obj);
    return rc;
}

/* `internal`: stage 0x01 || left || right and write its hash to `out`. */
static int internal(Ctx *ctx, const unsigned char left[HASH_LEN],
                    const unsigned char right[HASH_LEN], unsigned char out[HASH_LEN])
{
    PyObject *record = PyBytes_FromStringAndSize(NULL, INTERNAL_LEN);
    if (record == NULL) {
        return -1;
    }
    unsigned char *data = (unsigned char *)PyBytes_AS_STRING(record);
    data[0] = INTERNAL_TAG;
    memcpy(data + 1, left, HASH_LEN);
    memcpy(data + 1 + HASH_LEN, right, HASH_LEN);
    keccak256_bytes(data, INTERNAL_LEN, out);
    int rc = stage(ctx, out, record);
    Py_DECREF(record);
    return rc;
}

/* `leaf`: an existing leaf's hash, or stage a new leaf record. */
static int leaf(Ctx *ctx, const Item *item, unsigned char out[HASH_LEN])
{
    if (item->known != NULL) {
        memcpy(out, PyBytes_AS_STRING(item->known), HASH_LEN);
        return 0;
    }
    const unsigned char *value = (const unsigned char *)PyBytes_AS_STRING(item->value);
    Py_ssize_t value_len = PyBytes_GET_SIZE(item->value);
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(item->key);
    Py_ssize_t key_len = PyBytes_GET_SIZE(item->key); /* <= MAX_KEY_BYTES, checked on entry */
    unsigned char value_hash[HASH_LEN];
    keccak256_bytes(value, (size_t)value_len, value_hash);
    unsigned char head[1 + 2 * HASH_LEN];
    head[0] = LEAF_TAG;
    memcpy(head + 1, item->path, HASH_LEN);
    memcpy(head + 1 + HASH_LEN, value_hash, HASH_LEN);
    keccak256_bytes(head, sizeof(head), out);

    PyObject *record = PyBytes_FromStringAndSize(NULL, LEAF_HEADER + key_len + value_len);
    if (record == NULL) {
        return -1;
    }
    unsigned char *data = (unsigned char *)PyBytes_AS_STRING(record);
    data[0] = LEAF_TAG;
    memcpy(data + 1, item->path, HASH_LEN);
    data[33] = (unsigned char)(key_len >> 8);
    data[34] = (unsigned char)(key_len & 0xff);
    memcpy(data + LEAF_HEADER, key, (size_t)key_len);
    memcpy(data + LEAF_HEADER + key_len, value, (size_t)value_len);
    int rc = stage(ctx, out, record);
    Py_DECREF(record);
    return rc;
}

/* The bound of `bisect_left(paths, (paths[lo] >> shift | 1) << shift, lo, hi)` with
 * shift = 255 - depth: `path`'s first `depth` bits, then a one, then zeros. */
static void split_bound(const unsigned char path[HASH_LEN], int depth, unsigned char bound[HASH_LEN])
{
    int byte = depth >> 3;
    unsigned char bit = (unsigned char)(0x80 >> (depth & 7));
    memcpy(bound, path, (size_t)byte);
    bound[byte] = (unsigned char)((path[byte] & (unsigned char)~(2 * bit - 1)) | bit);
    memset(bound + byte + 1, 0, (size_t)(HASH_LEN - byte - 1));
}

/* That bisect over list[lo:hi] (sorted by path): the first whose path is >= the bound. */
static Py_ssize_t split(Item *const *list, Py_ssize_t lo, Py_ssize_t hi, int depth)
{
    unsigned char bound[HASH_LEN];
    split_bound(list[lo]->path, depth, bound);
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (memcmp(list[mid]->path, bound, HASH_LEN) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* The same over ctx->items[lo:hi]. */
static Py_ssize_t split_items(const Item *items, Py_ssize_t lo, Py_ssize_t hi, int depth)
{
    unsigned char bound[HASH_LEN];
    split_bound(items[lo].path, depth, bound);
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (memcmp(items[mid].path, bound, HASH_LEN) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* `_build`: the canonical subtree at `depth` over list[lo:hi] (hi - lo >= 1). */
static int build_range(Ctx *ctx, int depth, Item *const *list, Py_ssize_t lo, Py_ssize_t hi,
                       unsigned char out[HASH_LEN])
{
    if (hi - lo == 1) {
        return leaf(ctx, list[lo], out);
    }
    if (depth >= PATH_BITS) {
        raise_too_deep(ctx);
        return -1;
    }
    Py_ssize_t mid = split(list, lo, hi, depth);
    unsigned char left[HASH_LEN], right[HASH_LEN];
    if (mid == lo) {
        memset(left, 0, HASH_LEN);
    } else if (build_range(ctx, depth + 1, list, lo, mid, left) < 0) {
        return -1;
    }
    if (mid == hi) {
        memset(right, 0, HASH_LEN);
    } else if (build_range(ctx, depth + 1, list, mid, hi, right) < 0) {
        return -1;
    }
    return internal(ctx, left, right, out);
}

/* `build`: the canonical subtree at `depth` holding exactly list[0:count]. */
static int build(Ctx *ctx, int depth, Item *const *list, Py_ssize_t count, Node *out)
{
    if (count == 0) {
        memset(out->hash, 0, HASH_LEN);
        out->kind = K_EMPTY;
        return 0;
    }
    if (count == 1) {
        out->kind = K_LEAF;
        return leaf(ctx, list[0], out->hash);
    }
    out->kind = K_INTERNAL;
    return build_range(ctx, depth, list, 0, count, out->hash);
}

/* `build(depth, [item for item in items[lo:hi] if item[3] is not None])`, with `extra`
 * (when not NULL) placed before items[at] (at in [lo, hi]). */
static int build_writes(Ctx *ctx, int depth, Py_ssize_t lo, Py_ssize_t hi, Item *extra,
                        Py_ssize_t at, Node *out)
{
    Item *small[8];
    Item **list = small;
    Py_ssize_t room = hi - lo + 1;
    if (room > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
        list = PyMem_New(Item *, (size_t)room);
        if (list == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_ssize_t count = 0;
    for (Py_ssize_t i = lo; i < hi; i++) {
        if (extra != NULL && i == at) {
            list[count++] = extra;
        }
        if (ctx->items[i].value != NULL) {
            list[count++] = &ctx->items[i];
        }
    }
    if (extra != NULL && at == hi) {
        list[count++] = extra;
    }
    int rc = build(ctx, depth, list, count, out);
    if (list != small) {
        PyMem_Free(list);
    }
    return rc;
}

/* `merge_leaf`: the subtree at `depth` is the leaf `record` (checked); merge its entry
 * with items[lo:hi]. */
static int merge_leaf(Ctx *ctx, const unsigned char hash[HASH_LEN], PyObject *record, int depth,
                      Py_ssize_t lo, Py_ssize_t hi, Node *out)
{
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(record);
    Py_ssize_t len = PyBytes_GET_SIZE(record);
    Py_ssize_t key_len = (Py_ssize_t)data[33] << 8 | data[34]; /* LEAF_HEADER + key_len <= len */
    const unsigned char *leaf_path = data + 1;
    const unsigned char *value = data + LEAF_HEADER + key_len;
    Py_ssize_t value_len = len - LEAF_HEADER - key_len;

    /* at = bisect_left(paths, leaf path, lo, hi) */
    Py_ssize_t a = lo, b = hi;
    while (a < b) {
        Py_ssize_t mid = a + (b - a) / 2;
        if (memcmp(ctx->items[mid].path, leaf_path, HASH_LEN) < 0) {
            a = mid + 1;
        } else {
            b = mid;
        }
    }
    Py_ssize_t at = a;
    if (at < hi && memcmp(ctx->items[at].path, leaf_path, HASH_LEN) == 0) {
        PyObject *new_value = ctx->items[at].value;
        if (new_value != NULL && PyBytes_GET_SIZE(new_value) == value_len &&
            memcmp(PyBytes_AS_STRING(new_value), value, (size_t)value_len) == 0) {
            if (hi - lo == 1) {
                memcpy(out->hash, hash, HASH_LEN);
                out->kind = K_LEAF;
                return 0;
            }
        } else if (mark_replaced(ctx, hash) < 0) { /* its entry changes or goes */
            return -1;
        }
        return build_writes(ctx, depth, lo, hi, NULL, 0, out);
    }
    Item kept;
    memcpy(kept.path, leaf_path, HASH_LEN);
    kept.key = NULL; /* never read: `known` is set, so `leaf` returns it */
    kept.value = NULL;
    kept.known = hash_object(hash);
    if (kept.known == NULL) {
        return -1;
    }
    /* `kept` has a value (the leaf's), so it is always in the merged list. */
    int rc = build_writes(ctx, depth, lo, hi, &kept, at, out);
    Py_DECREF(kept.known);
    return rc;
}

/* `is_leaf`: an UNKNOWN node is read (store.get) to tell. 1, 0, or -1 with an exception. */
static int is_leaf(Ctx *ctx, const Node *node)
{
    if (node->kind == K_UNKNOWN) {
        PyObject *record = load(ctx, node->hash);
        if (record == NULL) {
            return -1;
        }
        int result = PyBytes_AS_STRING(record)[0] == LEAF_TAG;
        Py_DECREF(record);
        return result;
    }
    return node->kind == K_LEAF;
}

/* `join`: parent of two canonical halves, at least one of them empty here. */
static int join(Ctx *ctx, const Node *left, const Node *right, Node *out)
{
    int leafy;
    if (is_empty(right->hash)) {
        if (is_empty(left->hash)) {
            memset(out->hash, 0, HASH_LEN);
            out->kind = K_EMPTY;
            return 0;
        }
        leafy = is_leaf(ctx, left);
        if (leafy < 0) {
            return -1;
        }
        if (leafy) {
            *out = *left;
            out->kind = K_LEAF;
            return 0;
        }
    } else if (is_empty(left->hash)) {
        leafy = is_leaf(ctx, right);
        if (leafy < 0) {
            return -1;
        }
        if (leafy) {
            *out = *right;
            out->kind = K_LEAF;
            return 0;
        }
    }
    out->kind = K_INTERNAL;
    return internal(ctx, left->hash, right->hash, out->hash);
}

/* Reads the node `hash` for the walk (`quick(node) or get(node)`, then `_check` unless
 * it is an internal record): a new reference to a checked record, or NULL with an exception. */
static PyObject *read_node(Ctx *ctx, const unsigned char hash[HASH_LEN])
{
    int missing = 0;
    PyObject *hash_obj = hash_object(hash);
    if (hash_obj == NULL) {
        return NULL;
    }
    PyObject *record = fetch(ctx, hash_obj, &missing);
    Py_DECREF(hash_obj);
    if (record == NULL && !missing) {
        return NULL;
    }
    if (record == NULL || PyBytes_GET_SIZE(record) != INTERNAL_LEN ||
        PyBytes_AS_STRING(record)[0] != INTERNAL_TAG) {
        if (check_record(ctx, hash, record) < 0) {
            Py_XDECREF(record);
            return NULL;
        }
    }
    return record;
}

/* `single`: items[i] (a write) applied to the subtree `hash` at `depth`. */
static int single(Ctx *ctx, const unsigned char hash[HASH_LEN], int depth, Py_ssize_t i,
                  Node *out)
{
    const unsigned char *path = ctx->items[i].path;
    TrailStep *trail = ctx->trail;
    int steps = 0;
    unsigned char node[HASH_LEN];
    Node fresh;
    memcpy(node, hash, HASH_LEN);
    for (;;) {
        if (is_empty(node)) {
            Item *one = &ctx->items[i];
            if (build(ctx, depth, &one, 1, &fresh) < 0) {
                return -1;
            }
            break;
        }
        PyObject *record = read_node(ctx, node);
        if (record == NULL) {
            return -1;
        }
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(record);
        if (data[0] == LEAF_TAG) {
            int rc = merge_leaf(ctx, node, record, depth, i, i + 1, &fresh);
            Py_DECREF(record);
            if (rc < 0) {
                return -1;
            }
            break;
        }
        if (depth >= PATH_BITS) {
            Py_DECREF(record);
            raise_too_deep(ctx);
            return -1;
        }
        TrailStep *step = &trail[steps++];
        memcpy(step->parent, node, HASH_LEN);
        if (path_bit(path, depth)) {
            memcpy(step->sibling, data + 1, HASH_LEN);
            memcpy(node, data + 1 + HASH_LEN, HASH_LEN);
            step->right = 1;
        } else {
            memcpy(step->sibling, data + 1 + HASH_LEN, HASH_LEN);
            memcpy(node, data + 1, HASH_LEN);
            step->right = 0;
        }
        Py_DECREF(record);
        depth++;
    }
    if (steps == 0) {
        *out = fresh;
        return 0;
    }
    if (memcmp(fresh.hash, node, HASH_LEN) == 0) {
        memcpy(out->hash, hash, HASH_LEN);
        out->kind = K_INTERNAL;
        return 0;
    }
    unsigned char child[HASH_LEN];
    int kind = fresh.kind;
    memcpy(child, fresh.hash, HASH_LEN);
    while (steps > 0) {
        TrailStep *step = &trail[--steps];
        if (mark_replaced(ctx, step->parent) < 0) {
            return -1;
        }
        if (kind == K_LEAF && is_empty(step->sibling)) {
            continue; /* join: a lone leaf moves up (its hash has no depth) */
        }
        unsigned char parent[HASH_LEN];
        if (step->right) {
            if (internal(ctx, step->sibling, child, parent) < 0) {
                return -1;
            }
        } else if (internal(ctx, child, step->sibling, parent) < 0) {
            return -1;
        }
        memcpy(child, parent, HASH_LEN);
        kind = K_INTERNAL;
    }
    memcpy(out->hash, child, HASH_LEN);
    out->kind = kind;
    return 0;
}

/* `update`: items[lo:hi] (lo < hi, all under this subtree's prefix) applied to `hash`. */
static int update(Ctx *ctx, const unsigned char hash[HASH_LEN], int depth, Py_ssize_t lo,
                  Py_ssize_t hi, Node *out)
{
    if (hi - lo == 1 && ctx->items[lo].value != NULL) {
        return single(ctx, hash, depth, lo, out);
    }
    if (is_empty(hash)) {
        return build_writes(ctx, depth, lo, hi, NULL, 0, out);
    }
    PyObject *record = read_node(ctx, hash);
    if (record == NULL) {
        return -1;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(record);
    if (data[0] == LEAF_TAG) {
        int rc = merge_leaf(ctx, hash, record, depth, lo, hi, out);
        Py_DECREF(record);
        return rc;
    }
    if (depth >= PATH_BITS) {
        Py_DECREF(record);
        raise_too_deep(ctx);
        return -1;
    }
    unsigned char left[HASH_LEN], right[HASH_LEN];
    memcpy(left, data + 1, HASH_LEN);
    memcpy(right, data + 1 + HASH_LEN, HASH_LEN);
    Py_DECREF(record);

    Py_ssize_t mid = split_items(ctx->items, lo, hi, depth);
    Node new_left, new_right;
    if (mid == lo) {
        if (update(ctx, right, depth + 1, lo, hi, &new_right) < 0) {
            return -1;
        }
        if (memcmp(new_right.hash, right, HASH_LEN) == 0) {
            memcpy(out->hash, hash, HASH_LEN);
            out->kind = K_INTERNAL;
            return 0;
        }
        memcpy(new_left.hash, left, HASH_LEN);
        new_left.kind = is_empty(left) ? K_EMPTY : K_UNKNOWN;
    } else if (mid == hi) {
        if (update(ctx, left, depth + 1, lo, hi, &new_left) < 0) {
            return -1;
        }
        if (memcmp(new_left.hash, left, HASH_LEN) == 0) {
            memcpy(out->hash, hash, HASH_LEN);
            out->kind = K_INTERNAL;
            return 0;
        }
        memcpy(new_right.hash, right, HASH_LEN);
        new_right.kind = is_empty(right) ? K_EMPTY : K_UNKNOWN;
    } else {
        if (update(ctx, left, depth + 1, lo, mid, &new_left) < 0) {
            return -1;
        }
        if (update(ctx, right, depth + 1, mid, hi, &new_right) < 0) {
            return -1;
        }
        if (memcmp(new_left.hash, left, HASH_LEN) == 0 &&
            memcmp(new_right.hash, right, HASH_LEN) == 0) {
            memcpy(out->hash, hash, HASH_LEN);
            out->kind = K_INTERNAL;
            return 0;
        }
    }
    if (mark_replaced(ctx, hash) < 0) {
        return -1;
    }
    if (!is_empty(new_left.hash) && !is_empty(new_right.hash)) {
        out->kind = K_INTERNAL;
        return internal(ctx, new_left.hash, new_right.hash, out->hash);
    }
    return join(ctx, &new_left, &new_right, out);
}

/* Items sort by path (big-endian, as the Python ints). Equal paths go to the Python code. */
static int compare_items(const void *x, const void *y)
{
    return memcmp(((const Item *)x)->path, ((const Item *)y)->path, HASH_LEN);
}

static void free_items(Item *items, Py_ssize_t count)
{
    if (items == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_XDECREF(items[i].key);
        Py_XDECREF(items[i].value);
    }
    PyMem_Free(items);
}

/* Fills *items_out from `changes`. 1: done; 0: a key or value the fast path does not
 * take (not exactly bytes, or too long); -1: an exception. */
static int collect_items(PyObject *changes, Item **items_out, Py_ssize_t *count_out)
{
    PyObject *pairs = NULL;
    Py_ssize_t size;
    if (PyDict_CheckExact(changes)) {
        size = PyDict_GET_SIZE(changes);
    } else {
        pairs = PyMapping_Items(changes);
        if (pairs == NULL) {
            return -1;
        }
        size = PyList_GET_SIZE(pairs);
    }
    Item *items = PyMem_New(Item, (size_t)(size > 0 ? size : 1));
    if (items == NULL) {
        Py_XDECREF(pairs);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t count = 0, pos = 0;
    int result = 1;
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *key, *value;
        if (pairs == NULL) {
            if (!PyDict_Next(changes, &pos, &key, &value)) {
                break;
            }
        } else {
            PyObject *pair = PyList_GET_ITEM(pairs, i);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                result = 0;
                break;
            }
            key = PyTuple_GET_ITEM(pair, 0);
            value = PyTuple_GET_ITEM(pair, 1);
        }
        if (!PyBytes_CheckExact(key) || PyBytes_GET_SIZE(key) > MAX_KEY_BYTES) {
            result = 0;
            break;
        }
        if (value == Py_None) {
            value = NULL;
        } else if (!PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) > MAX_VALUE_BYTES) {
            result = 0;
            break;
        }
        Item *item = &items[count++];
        item->key = Py_NewRef(key);
        item->value = Py_XNewRef(value);
        item->known = NULL;
        keccak256_bytes((const unsigned char *)PyBytes_AS_STRING(key),
                        (size_t)PyBytes_GET_SIZE(key), item->path);
    }
    Py_XDECREF(pairs);
    if (result == 1) {
        qsort(items, (size_t)count, sizeof(Item), compare_items);
        /* Two keys with one path: never in practice; the Python code decides. */
        for (Py_ssize_t i = 1; i < count; i++) {
            if (memcmp(items[i - 1].path, items[i].path, HASH_LEN) == 0) {
                result = 0;
                break;
            }
        }
    }
    if (result != 1) {
        free_items(items, count);
        return result;
    }
    *items_out = items;
    *count_out = count;
    return 1;
}

static PyObject *py_rebuild(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "rebuild(changes, root, quick, get, MissingNode, CorruptNode)");
        return NULL;
    }
    PyObject *changes = args[0], *root = args[1], *quick = args[2], *get = args[3];
    if (!PyBytes_Check(root) || PyBytes_GET_SIZE(root) != HASH_LEN) {
        PyErr_SetString(PyExc_ValueError, "a root is 32 bytes");
        return NULL;
    }
    if (!PyMapping_Check(changes) || !PyCallable_Check(get) ||
        (!PyDict_CheckExact(quick) && !PyCallable_Check(quick))) {
        PyErr_SetString(PyExc_TypeError, "rebuild: changes is a mapping, quick a dict or "
                                         "callable, get a callable");
        return NULL;
    }
    if (!PyExceptionClass_Check(args[4]) || !PyExceptionClass_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "rebuild: MissingNode and CorruptNode are exceptions");
        return NULL;
    }
    Item *items = NULL;
    Py_ssize_t count = 0;
    int collected = collect_items(changes, &items, &count);
    if (collected < 0) {
        return NULL;
    }
    if (collected == 0) {
        Py_RETURN_NONE;
    }
    Ctx *ctx = PyMem_Malloc(sizeof(Ctx));
    if (ctx == NULL) {
        free_items(items, count);
        return PyErr_NoMemory();
    }
    ctx->items = items;
    ctx->count = count;
    ctx->quick_dict = PyDict_CheckExact(quick) ? quick : NULL;
    ctx->quick_call = PyDict_CheckExact(quick) ? NULL : quick;
    ctx->get = get;
    ctx->missing = args[4];
    ctx->corrupt = args[5];
    ctx->hashes = 0;
    ctx->staged = PyDict_New();
    ctx->replaced = PyList_New(0);
    PyObject *result = NULL;
    if (ctx->staged != NULL && ctx->replaced != NULL) {
        PyObject *new_root = NULL;
        if (count == 0) {
            new_root = Py_NewRef(root);
        } else {
            Node top;
            if (update(ctx, (const unsigned char *)PyBytes_AS_STRING(root), 0, 0, count,
                       &top) == 0) {
                new_root = hash_object(top.hash);
            }
        }
        if (new_root != NULL) {
            result = PyTuple_Pack(3, new_root, ctx->staged, ctx->replaced);
            Py_DECREF(new_root);
        }
    }
    Py_XDECREF(ctx->staged);
    Py_XDECREF(ctx->replaced);
    free_items(items, count);
    PyMem_Free(ctx);
    return result;
}

/* ---- the namespace table (sequencer_net/payload/namespaces.py) ------------------------- */

/* RFC 6962 with keccak-256: a leaf is keccak256(0x00 || data), a node
 * keccak256(0x01 || left || right). A tree hashes many short messages that do
 * not depend on each other (every leaf; every node of one level), so they are
 * queued in a `Hasher` and hashed eight at a time with AVX-512 where the CPU
 * has it (`keccak_f1600_x8`: eight states, one in each 64-bit slot of 25
 * registers), one at a time otherwise: the same digests either way. */

#define SHORT_MAX (KECCAK_RATE - 1) /* a message of at most this many bytes is one block */
#define HASH_WAYS 8
#define MIN_X8_JOBS 3 /* fewer queued messages are hashed one by one */

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_X8 1
#include <immintrin.h>
#endif

static int use_x8; /* set once, when the module is initialized; read only after */

/* The padded block of a message of at most SHORT_MAX bytes, prefix || p1 || p2. */
static void short_block(unsigned char block[KECCAK_RATE], unsigned char prefix,
                        const unsigned char *p1, size_t len1, const unsigned char *p2, size_t len2)
{
    size_t len = 1 + len1 + len2;
    block[0] = prefix;
    memcpy(block + 1, p1, len1);
    if (len2) {
        memcpy(block + 1 + len1, p2, len2);
    }
    memset(block + len, 0, KECCAK_RATE - len);
    block[len] ^= 0x01;
    block[KECCAK_RATE - 1] ^= 0x80;
}

static void keccak256_block(const unsigned char block[KECCAK_RATE], unsigned char out[HASH_LEN])
{
    uint64_t a[25];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < KECCAK_RATE / 8; i++) {
        a[i] = load64_le(block + 8 * i);
    }
    keccak_f1600(a);
    for (int i = 0; i < HASH_LEN / 8; i++) {
        store64_le(out + 8 * i, a[i]);
    }
}

#ifdef HAVE_X8
#define ROL8(x, n) _mm512_rol_epi64((x), (n))
#define XOR3(x, y, z) _mm512_ternarylogic_epi64((x), (y), (z), 0x96)
#define CHI(x, y, z) _mm512_ternarylogic_epi64((x), (y), (z), 0xD2) /* x ^ (~y & z) */

/* keccak-f[1600] on eight states at once, as `keccak_f1600` on each. */
__attribute__((target("avx512f"))) static void keccak_f1600_x8(__m512i a[25])
{
    for (int round = 0; round < 24; round++) {
        __m512i c0 = XOR3(a[0], a[5], XOR3(a[10], a[15], a[20]));
        __m512i c1 = XOR3(a[1], a[6], XOR3(a[11], a[16], a[21]));
        __m512i c2 = XOR3(a[2], a[7], XOR3(a[12], a[17], a[22]));
        __m512i c3 = XOR3(a[3], a[8], XOR3(a[13], a[18], a[23]));
        __m512i c4 = XOR3(a[4], a[9], XOR3(a[14], a[19], a[24]));
        __m512i d0 = _mm512_xor_si512(c4, ROL8(c1, 1));
        __m512i d1 = _mm512_xor_si512(c0, ROL8(c2, 1));
        __m512i d2 = _mm512_xor_si512(c1, ROL8(c3, 1));
        __m512i d3 = _mm512_xor_si512(c2, ROL8(c4, 1));
        __m512i d4 = _mm512_xor_si512(c3, ROL8(c0, 1));
        __m512i b[25];
        b[0] = _mm512_xor_si512(a[0], d0);
        b[10] = ROL8(_mm512_xor_si512(a[1], d1), 1);
        b[20] = ROL8(_mm512_xor_si512(a[2], d2), 62);
        b[5] = ROL8(_mm512_xor_si512(a[3], d3), 28);
        b[15] = ROL8(_mm512_xor_si512(a[4], d4), 27);
        b[16] = ROL8(_mm512_xor_si512(a[5], d0), 36);
        b[1] = ROL8(_mm512_xor_si512(a[6], d1), 44);
        b[11] = ROL8(_mm512_xor_si512(a[7], d2), 6);
        b[21] = ROL8(_mm512_xor_si512(a[8], d3), 55);
        b[6] = ROL8(_mm512_xor_si512(a[9], d4), 20);
        b[7] = ROL8(_mm512_xor_si512(a[10], d0), 3);
        b[17] = ROL8(_mm512_xor_si512(a[11], d1), 10);
        b[2] = ROL8(_mm512_xor_si512(a[12], d2), 43);
        b[12] = ROL8(_mm512_xor_si512(a[13], d3), 25);
        b[22] = ROL8(_mm512_xor_si512(a[14], d4), 39);
        b[23] = ROL8(_mm512_xor_si512(a[15], d0), 41);
        b[8] = ROL8(_mm512_xor_si512(a[16], d1), 45);
        b[18] = ROL8(_mm512_xor_si512(a[17], d2), 15);
        b[3] = ROL8(_mm512_xor_si512(a[18], d3), 21);
        b[13] = ROL8(_mm512_xor_si512(a[19], d4), 8);
        b[14] = ROL8(_mm512_xor_si512(a[20], d0), 18);
        b[24] = ROL8(_mm512_xor_si512(a[21], d1), 2);
        b[9] = ROL8(_mm512_xor_si512(a[22], d2), 61);
        b[19] = ROL8(_mm512_xor_si512(a[23], d3), 56);
        b[4] = ROL8(_mm512_xor_si512(a[24], d4), 14);
        for (int y = 0; y < 25; y += 5) {
            a[y] = CHI(b[y], b[y + 1], b[y + 2]);
            a[y + 1] = CHI(b[y + 1], b[y + 2], b[y + 3]);
            a[y + 2] = CHI(b[y + 2], b[y + 3], b[y + 4]);
            a[y + 3] = CHI(b[y + 3], b[y + 4], b[y]);
            a[y + 4] = CHI(b[y + 4], b[y], b[y + 1]);
        }
        a[0] = _mm512_xor_si512(a[0], _mm512_set1_epi64((long long)keccak_rc[round]));
    }
}

/* Keccak-256 of eight padded one-block messages (x86-64: little-endian lanes). */
__attribute__((target("avx512f"))) static void keccak256_blocks_x8(
    const unsigned char blocks[HASH_WAYS][KECCAK_RATE], unsigned char *const outs[HASH_WAYS])
{
    __m512i a[25];
    const __m512i stride = _mm512_set_epi64(7 * KECCAK_RATE, 6 * KECCAK_RATE, 5 * KECCAK_RATE,
                                            4 * KECCAK_RATE, 3 * KECCAK_RATE, 2 * KECCAK_RATE,
                                            KECCAK_RATE, 0);
    for (int i = 0; i < KECCAK_RATE / 8; i++) {
        a[i] = _mm512_i64gather_epi64(stride, (const void *)(&blocks[0][0] + 8 * i), 1);
    }
    for (int i = KECCAK_RATE / 8; i < 25; i++) {
        a[i] = _mm512_setzero_si512();
    }
    keccak_f1600_x8(a);
    uint64_t lanes[HASH_LEN / 8][HASH_WAYS];
    for (int i = 0; i < HASH_LEN / 8; i++) {
        _mm512_storeu_si512((void *)lanes[i], a[i]);
    }
    for (int k = 0; k < HASH_WAYS; k++) {
        if (outs[k] != NULL) {
            for (int i = 0; i < HASH_LEN / 8; i++) {
                store64_le(outs[k] + 8 * i, lanes[i][k]);
            }
        }
    }
}

/* Keccak-256 of up to eight messages of any lengths at once: each absorbs its
 * own blocks; a message with fewer blocks than another keeps its state while
 * the others absorb theirs. Unused slots have a NULL `outs`. */
__attribute__((target("avx512f"))) static void keccak256_x8(
    const unsigned char *const data[HASH_WAYS], const size_t lens[HASH_WAYS],
    unsigned char *const outs[HASH_WAYS])
{
    unsigned char blocks[HASH_WAYS][KECCAK_RATE];
    size_t full[HASH_WAYS];
    size_t most = 0;
    for (int k = 0; k < HASH_WAYS; k++) {
        full[k] = outs[k] == NULL ? 0 : lens[k] / KECCAK_RATE;
        if (outs[k] != NULL && full[k] + 1 > most) {
            most = full[k] + 1;
        }
    }
    const __m512i stride = _mm512_set_epi64(7 * KECCAK_RATE, 6 * KECCAK_RATE, 5 * KECCAK_RATE,
                                            4 * KECCAK_RATE, 3 * KECCAK_RATE, 2 * KECCAK_RATE,
                                            KECCAK_RATE, 0);
    __m512i a[25];
    for (int i = 0; i < 25; i++) {
        a[i] = _mm512_setzero_si512();
    }
    for (size_t b = 0; b < most; b++) {
        __mmask8 active = 0;
        for (int k = 0; k < HASH_WAYS; k++) {
            if (outs[k] == NULL || b > full[k]) {
                memset(blocks[k], 0, KECCAK_RATE);
                continue;
            }
            active |= (__mmask8)(1u << k);
            if (b < full[k]) {
                memcpy(blocks[k], data[k] + KECCAK_RATE * b, KECCAK_RATE);
            } else { /* the last, padded block: original Keccak padding */
                size_t tail = lens[k] - KECCAK_RATE * b;
                memcpy(blocks[k], data[k] + KECCAK_RATE * b, tail);
                memset(blocks[k] + tail, 0, KECCAK_RATE - tail);
                blocks[k][tail] ^= 0x01;
                blocks[k][KECCAK_RATE - 1] ^= 0x80;
            }
        }
        __m512i before[25];
        for (int i = 0; i < 25; i++) {
            before[i] = a[i];
        }
        for (int i = 0; i < KECCAK_RATE / 8; i++) {
            __m512i lane =
                _mm512_i64gather_epi64(stride, (const void *)(&blocks[0][0] + 8 * i), 1);
            a[i] = _mm512_xor_si512(a[i], lane);
        }
        keccak_f1600_x8(a);
        for (int i = 0; i < 25; i++) {
            a[i] = _mm512_mask_mov_epi64(before[i], active, a[i]);
        }
    }
    uint64_t lanes[HASH_LEN / 8][HASH_WAYS];
    for (int i = 0; i < HASH_LEN / 8; i++) {
        _mm512_storeu_si512((void *)lanes[i], a[i]);
    }
    for (int k = 0; k < HASH_WAYS; k++) {
        if (outs[k] != NULL) {
            for (int i = 0; i < HASH_LEN / 8; i++) {
                store64_le(outs[k] + 8 * i, lanes[i][k]);
            }
        }
    }
}
#endif

/* keccak256(data[i]) into out + 32 i for each of `n` messages, eight at a
 * time where the CPU allows (messages of equal block counts together: `order`
 * is scratch for n indices). */
typedef struct {
    size_t blocks;
    size_t index;
} BlockCount;

#ifdef HAVE_X8
static int compare_block_counts(const void *a, const void *b)
{
    const BlockCount *x = a, *y = b;
    if (x->blocks != y->blocks) {
        return x->blocks < y->blocks ? -1 : 1;
    }
    return x->index < y->index ? -1 : (x->index > y->index);
}
#endif

static void keccak256_many(const unsigned char *const *data, const size_t *lens, size_t n,
                           BlockCount *order, unsigned char *out)
{
    size_t i = 0;
#ifdef HAVE_X8
    if (use_x8 && n >= MIN_X8_JOBS) {
        for (size_t j = 0; j < n; j++) {
            order[j].blocks = lens[j] / KECCAK_RATE;
            order[j].index = j;
        }
        qsort(order, n, sizeof(BlockCount), compare_block_counts);
        for (; i + MIN_X8_JOBS <= n; i += HASH_WAYS) {
            const unsigned char *batch[HASH_WAYS];
            size_t batch_lens[HASH_WAYS];
            unsigned char *outs[HASH_WAYS];
            for (int k = 0; k < HASH_WAYS; k++) {
                if (i + (size_t)k < n) {
                    size_t j = order[i + (size_t)k].index;
                    batch[k] = data[j];
                    batch_lens[k] = lens[j];
                    outs[k] = out + HASH_LEN * j;
                } else {
                    batch[k] = NULL;
                    batch_lens[k] = 0;
                    outs[k] = NULL;
                }
            }
            keccak256_x8(batch, batch_lens, outs);
        }
        for (; i < n; i++) {
            size_t j = order[i].index;
            keccak256_bytes(data[j], lens[j], out + HASH_LEN * j);
        }
        return;
    }
#endif
    (void)order;
    for (; i < n; i++) {
        keccak256_bytes(data[i], lens[i], out + HASH_LEN * i);
    }
}

/* The entry points taking many items (`keccak256_many`, `merkle_root`,
 * `namespace_root`) copy them into a tuple first: a list may change while the
 * GIL is released. `sequence_items(arg)`: that tuple, or None (a new
 * reference; the caller then runs the Python code) unless `arg` is exactly a
 * list or a tuple, or NULL with an error set. `bytes_items(arg)`: the same,
 * and None too unless every item is exactly bytes. */
static PyObject *sequence_items(PyObject *arg)
{
    if (!PyList_CheckExact(arg) && !PyTuple_CheckExact(arg)) {
        Py_RETURN_NONE;
    }
    return PySequence_Tuple(arg);
}

static PyObject *bytes_items(PyObject *arg)
{
    PyObject *items = sequence_items(arg);
    if (items == NULL || items == Py_None) {
        return items;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(items, i))) {
            Py_DECREF(items);
            Py_RETURN_NONE;
        }
    }
    return items;
}

/* keccak256_many(messages) -> list[bytes] | None: keccak256 of each; None
 * unless `messages` is exactly a list or tuple of exactly bytes. */
static PyObject *py_keccak256_many(PyObject *module, PyObject *arg)
{
    (void)module;
    PyObject *items = bytes_items(arg);
    if (items == NULL || items == Py_None) {
        return items;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    size_t count = (size_t)n;
    const unsigned char **data = PyMem_Malloc((count ? count : 1) * sizeof(*data));
    size_t *lens = PyMem_Malloc((count ? count : 1) * sizeof(size_t));
    BlockCount *order = PyMem_Malloc((count ? count : 1) * sizeof(BlockCount));
    unsigned char *digests = PyMem_Malloc((count ? count : 1) * HASH_LEN);
    PyObject *result = NULL;
    if (data == NULL || lens == NULL || order == NULL || digests == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, (Py_ssize_t)i);
        data[i] = (const unsigned char *)PyBytes_AS_STRING(item);
        lens[i] = (size_t)PyBytes_GET_SIZE(item);
    }
    Py_BEGIN_ALLOW_THREADS
    keccak256_many(data, lens, count, order, digests);
    Py_END_ALLOW_THREADS
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        PyObject *digest =
            PyBytes_FromStringAndSize((const char *)digests + HASH_LEN * i, HASH_LEN);
        if (digest == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, digest);
    }
done:
    PyMem_Free(data);
    PyMem_Free(lens);
    PyMem_Free(order);
    PyMem_Free(digests);
    Py_DECREF(items);
    return result;
}

/* Messages queued for hashing: each is copied into its block when queued, so
 * an output may overwrite the input of a message queued before it. */
typedef struct {
    unsigned char blocks[HASH_WAYS][KECCAK_RATE];
    unsigned char *outs[HASH_WAYS];
    int count;
} Hasher;

static void hasher_flush(Hasher *hasher)
{
#ifdef HAVE_X8
    if (use_x8 && hasher->count >= MIN_X8_JOBS) {
        for (int k = hasher->count; k < HASH_WAYS; k++) {
            hasher->outs[k] = NULL; /* its block is a stale one: hashed, dropped */
        }
        keccak256_blocks_x8((const unsigned char(*)[KECCAK_RATE])hasher->blocks, hasher->outs);
        hasher->count = 0;
        return;
    }
#endif
    for (int k = 0; k < hasher->count; k++) {
        keccak256_block(hasher->blocks[k], hasher->outs[k]);
    }
    hasher->count = 0;
}

/* Queue keccak256(prefix || p1 || p2) into `out`; 1 + len1 + len2 <= SHORT_MAX. */
static void hasher_add(Hasher *hasher, unsigned char prefix, const unsigned char *p1, size_t len1,
                       const unsigned char *p2, size_t len2, unsigned char *out)
{
    short_block(hasher->blocks[hasher->count], prefix, p1, len1, p2, len2);
    hasher->outs[hasher->count] = out;
    if (++hasher->count == HASH_WAYS) {
        hasher_flush(hasher);
    }
}

/* keccak256(0x00 || data) into `out`, queued if one block holds it. */
static void mth_leaf(Hasher *hasher, const unsigned char *data, size_t len,
                     unsigned char out[HASH_LEN])
{
    if (len < SHORT_MAX) {
        hasher_add(hasher, 0x00, data, len, NULL, 0, out);
        return;
    }
    static const unsigned char prefix = 0x00;
    const unsigned char *parts[2] = {&prefix, data};
    size_t lens[2] = {1, len};
    keccak256_parts(parts, lens, 2, out);
}

/* The root over `n` >= 1 leaf hashes at `level` (n * 32 bytes, overwritten),
 * bottom-up as `_root_of_level`: each level hashes adjacent pairs and carries
 * an odd last hash up unchanged; the root ends in level[0..32). A node's hash
 * goes where its left child was read from, or before it: the queue copied
 * both children first. `hasher` must be empty (flushed). */
static void mth_reduce(Hasher *hasher, unsigned char *level, size_t n)
{
    while (n > 1) {
        size_t half = n / 2;
        for (size_t i = 0; i < half; i++) {
            hasher_add(hasher, 0x01, level + 64 * i, 2 * HASH_LEN, NULL, 0, level + 32 * i);
        }
        hasher_flush(hasher);
        if (n & 1) {
            memmove(level + 32 * half, level + 32 * (n - 1), HASH_LEN);
        }
        n = half + (n & 1);
    }
}

static PyObject *empty_root(void)
{
    unsigned char digest[HASH_LEN];
    keccak256_bytes((const unsigned char *)"", 0, digest);
    return PyBytes_FromStringAndSize((const char *)digest, HASH_LEN);
}

/* merkle_root(leaves) -> bytes | None: MTH of `leaves` (raw leaf data). None
 * when `leaves` is not exactly a list or tuple of exactly `bytes` (the caller
 * then runs the Python code). */
static PyObject *py_merkle_root(PyObject *module, PyObject *arg)
{
    (void)module;
    PyObject *items = bytes_items(arg);
    if (items == NULL || items == Py_None) {
        return items;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    if (n == 0) {
        Py_DECREF(items);
        return empty_root();
    }
    if ((size_t)n > (size_t)PY_SSIZE_T_MAX / HASH_LEN) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    unsigned char *level = PyMem_Malloc((size_t)n * HASH_LEN);
    if (level == NULL) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    Hasher *hasher = PyMem_Malloc(sizeof(Hasher));
    if (hasher == NULL) {
        PyMem_Free(level);
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    hasher->count = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *leaf = PyTuple_GET_ITEM(items, i);
        mth_leaf(hasher, (const unsigned char *)PyBytes_AS_STRING(leaf),
                 (size_t)PyBytes_GET_SIZE(leaf), level + HASH_LEN * (size_t)i);
    }
    hasher_flush(hasher);
    mth_reduce(hasher, level, (size_t)n);
    Py_END_ALLOW_THREADS
    PyMem_Free(hasher);
    PyObject *result = PyBytes_FromStringAndSize((const char *)level, HASH_LEN);
    PyMem_Free(level);
    Py_DECREF(items);
    return result;
}

#define MAX_NAMESPACE 0xFFFFFFFFULL
#define ENTRY_LEN (3 * HASH_LEN)

typedef struct {
    uint32_t namespace;
    uint32_t position; /* in block order: ties keep it (a stable sort) */
} NsKey;

typedef struct {
    size_t start; /* its first leaf in the sorted order */
    size_t size;  /* hashes at its current level */
} Run;

static int compare_ns_keys(const void *a, const void *b)
{
    const NsKey *x = a, *y = b;
    if (x->namespace != y->namespace) {
        return x->namespace < y->namespace ? -1 : 1;
    }
    return x->position < y->position ? -1 : (x->position > y->position);
}

/* An ABI word: `value` as 32 big-endian bytes. */
static void put_word(unsigned char *out, uint64_t value)
{
    memset(out, 0, HASH_LEN);
    for (int i = 0; i < 8; i++) {
        out[HASH_LEN - 1 - i] = (unsigned char)(value >> (8 * i));
    }
}

/* namespace_root(pairs) -> bytes | None: the table root of (namespace, tx
 * hash) pairs in block order, as namespaces.namespace_root. Checked in order,
 * as group_by_namespace checks them: a namespace outside uint32 or a hash of
 * another length than 32 raises its ValueError; None (the caller runs the
 * Python code, which raises what it always did) at the first pair that is not
 * exactly a 2-tuple of an int and, the namespace being valid, bytes. */
static PyObject *py_namespace_root(PyObject *module, PyObject *arg)
{
    (void)module;
    PyObject *items = sequence_items(arg);
    if (items == NULL || items == Py_None) {
        return items;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    if (n == 0) {
        Py_DECREF(items);
        return empty_root();
    }
    if ((uint64_t)n > UINT32_MAX ||
        (size_t)n > (size_t)PY_SSIZE_T_MAX / (2 * HASH_LEN + ENTRY_LEN)) {
        Py_DECREF(items);
        Py_RETURN_NONE;
    }
    size_t count = (size_t)n;
    NsKey *keys = PyMem_Malloc(count * sizeof(NsKey));
    unsigned char *hashes = PyMem_Malloc(count * HASH_LEN);
    unsigned char *level = PyMem_Malloc(count * HASH_LEN);
    unsigned char *entries = PyMem_Malloc(count * ENTRY_LEN);
    Hasher *hasher = PyMem_Malloc(sizeof(Hasher));
    Run *runs = PyMem_Malloc(count * sizeof(Run));
    PyObject *result = NULL;
    if (keys == NULL || hashes == NULL || level == NULL || entries == NULL || hasher == NULL ||
        runs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        PyObject *pair = PyTuple_GET_ITEM(items, (Py_ssize_t)i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
        PyObject *ns = PyTuple_GET_ITEM(pair, 0);
        PyObject *hash = PyTuple_GET_ITEM(pair, 1);
        if (!PyLong_CheckExact(ns)) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
        int overflow = 0;
        long long value = PyLong_AsLongLongAndOverflow(ns, &overflow);
        if (value == -1 && PyErr_Occurred()) {
            goto done;
        }
        int bad = overflow != 0 || value < 0 || (unsigned long long)value > MAX_NAMESPACE;
        if (!bad && !PyBytes_CheckExact(hash)) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
        if (bad || PyBytes_GET_SIZE(hash) != HASH_LEN) {
            PyErr_SetString(PyExc_ValueError,
                            "a namespace is a uint32 and a transaction hash 32 bytes");
            goto done;
        }
        keys[i].namespace = (uint32_t)value;
        keys[i].position = (uint32_t)i;
        memcpy(hashes + HASH_LEN * i, PyBytes_AS_STRING(hash), HASH_LEN);
    }
    hasher->count = 0;
    unsigned char root[HASH_LEN];
    Py_BEGIN_ALLOW_THREADS
    qsort(keys, count, sizeof(NsKey), compare_ns_keys);
    /* Every leaf at once (in namespace order), then each namespace's tree. */
    for (size_t i = 0; i < count; i++) {
        mth_leaf(hasher, hashes + HASH_LEN * keys[i].position, HASH_LEN, level + HASH_LEN * i);
    }
    hasher_flush(hasher);
    /* The namespaces' runs in the sorted order, then their trees level by level
     * together, so small trees still fill the hasher's eight ways. */
    size_t groups = 0;
    for (size_t start = 0; start < count;) {
        size_t end = start + 1;
        while (end < count && keys[end].namespace == keys[start].namespace) {
            end++;
        }
        runs[groups].start = start;
        runs[groups].size = end - start;
        groups++;
        start = end;
    }
    for (int more = 1; more;) {
        more = 0;
        for (size_t g = 0; g < groups; g++) {
            unsigned char *run = level + HASH_LEN * runs[g].start;
            for (size_t i = 0; i < runs[g].size / 2; i++) {
                hasher_add(hasher, 0x01, run + 64 * i, 2 * HASH_LEN, NULL, 0, run + 32 * i);
            }
        }
        hasher_flush(hasher);
        for (size_t g = 0; g < groups; g++) {
            size_t n = runs[g].size;
            if (n > 1) {
                unsigned char *run = level + HASH_LEN * runs[g].start;
                if (n & 1) {
                    memmove(run + 32 * (n / 2), run + 32 * (n - 1), HASH_LEN);
                }
                runs[g].size = n / 2 + (n & 1);
                more |= runs[g].size > 1;
            }
        }
    }
    for (size_t g = 0; g < groups; g++) {
        size_t start = runs[g].start;
        size_t end = g + 1 < groups ? runs[g + 1].start : count;
        unsigned char *entry = entries + ENTRY_LEN * g;
        put_word(entry, keys[start].namespace);
        put_word(entry + HASH_LEN, (uint64_t)(end - start));
        memcpy(entry + 2 * HASH_LEN, level + HASH_LEN * start, HASH_LEN);
    }
    for (size_t g = 0; g < groups; g++) {
        mth_leaf(hasher, entries + ENTRY_LEN * g, ENTRY_LEN, level + HASH_LEN * g);
    }
    hasher_flush(hasher);
    mth_reduce(hasher, level, groups);
    memcpy(root, level, HASH_LEN);
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)root, HASH_LEN);
done:
    PyMem_Free(keys);
    PyMem_Free(hashes);
    PyMem_Free(level);
    PyMem_Free(entries);
    PyMem_Free(hasher);
    PyMem_Free(runs);
    Py_DECREF(items);
    return result;
}

static PyObject *py_hash_ways(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromLong(use_x8 ? HASH_WAYS : 1);
}

static PyMethodDef methods[] = {
    {"keccak256", (PyCFunction)py_keccak256, METH_O,
     "keccak256(data) -> bytes: Keccak-256 (original padding, as Ethereum)."},
    {"rebuild", (PyCFunction)(void (*)(void))py_rebuild, METH_FASTCALL,
     "rebuild(changes, root, quick, get, MissingNode, CorruptNode) -> "
     "(new_root, staged, replaced) | None: StateTree.apply's batch rebuild."},
    {"merkle_root", (PyCFunction)py_merkle_root, METH_O,
     "merkle_root(leaves) -> bytes | None: RFC 6962 MTH with keccak-256 (namespaces.py)."},
    {"keccak256_many", (PyCFunction)py_keccak256_many, METH_O,
     "keccak256_many(messages) -> list[bytes] | None: keccak256 of each message."},
    {"hash_ways", (PyCFunction)py_hash_ways, METH_NOARGS,
     "hash_ways() -> int: messages the table hashes at once (8 with AVX-512, else 1)."},
    {"namespace_root", (PyCFunction)py_namespace_root, METH_O,
     "namespace_root(pairs) -> bytes | None: the namespace table root (namespaces.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "_tree_native",
    "The state tree's batch rebuild, the namespace table root and keccak-256, in C.",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__tree_native(void)
{
#ifdef HAVE_X8
    /* SEQNET_SCALAR_KECCAK=1 hashes one message at a time (tests compare both). */
    const char *scalar = getenv("SEQNET_SCALAR_KECCAK");
    __builtin_cpu_init();
    use_x8 = __builtin_cpu_supports("avx512f") && (scalar == NULL || strcmp(scalar, "1") != 0);
#endif
    return PyModuleDef_Init(&module_def);
}
