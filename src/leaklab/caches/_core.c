/* leaklab.caches._core: the compiled core of leaklab.caches.LRUCache (chapter 01).
 *
 * A hit in an exact LRU cache must look the key up, move the entry to the most-recent end and
 * count the hit. In Python that is a function frame around three C calls; here it is one C call.
 * This module holds only that read path, and the common cases of `set` in the two commonest
 * configurations (a count bound only; a default ttl without dispose): `CacheCore` is the base
 * class of LRUCache and keeps the attributes these need (members below). Every other write, and
 * every read that is not a plain hit or miss, stays in Python (lru.py, fast.py), which LRUCache
 * uses as a whole when this extension is not built.
 *
 * Thread safety (GIL builds only; compiled.py does not import this on a free-threaded build): the
 * read takes no lock, as the Python read does not. It holds strong references to the table and
 * the entry it read, so Python code that runs in between (a key's __eq__, a finalizer) may
 * change the cache but cannot free what this function is using. The writes hold the cache's
 * lock, as the Python ones do, and release what left the cache only after releasing the lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include "structmember.h"

#ifndef Py_T_OBJECT_EX /* the names became public in 3.12 */
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_T_BOOL T_BOOL
#endif

typedef struct {
    PyObject_HEAD
    PyObject *table;   /* (entries: OrderedDict, move_to_end, hit counter, timed: bool) */
    PyObject *misses;  /* itertools.count */
    PyObject *clock;   /* () -> seconds */
    PyObject *lock;    /* threading.Lock, held by every write */
    PyObject *max;     /* the most entries held: int, or None */
    PyObject *evictions; /* an int: a Python-level `self._evictions += 1` is faster on an object */
    /* For the write of a cache with a default ttl (expiry.py says what each one holds): */
    PyObject *ttl;            /* the default ttl, seconds */
    PyObject *next_expiry;    /* a lower bound on every live deadline */
    PyObject *deadline_keys;  /* deque of keys with the default ttl, in deadline order */
    PyObject *deadline_times; /* deque of their deadlines */
    PyObject *ttls;           /* dict: key -> its own ttl */
    PyObject *dispose;        /* callable or None */
    PyObject *sizes;          /* dict of entry sizes, or None without max_size */
    char update_age_on_get;
} CacheCore;

static PyObject *never;     /* the deadline of an entry that does not expire: +inf, by identity */
static PyObject *slow_name; /* "_get_slow", the Python read that handles everything else */
static PyObject *set_slow_name; /* "_set_slow", the Python write that handles everything else */
static PyObject *acquire_name, *release_name, *popitem_name, *ttl_name, *one;
static PyObject *popleft_name, *append_name, *pop_name, *compact_name;

static int
core_traverse(CacheCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->table);
    Py_VISIT(self->misses);
    Py_VISIT(self->clock);
    Py_VISIT(self->lock);
    Py_VISIT(self->max);
    Py_VISIT(self->evictions);
    Py_VISIT(self->ttl);
    Py_VISIT(self->next_expiry);
    Py_VISIT(self->deadline_keys);
    Py_VISIT(self->deadline_times);
    Py_VISIT(self->ttls);
    Py_VISIT(self->dispose);
    Py_VISIT(self->sizes);
    return 0;
}

static int
core_clear(CacheCore *self)
{
    Py_CLEAR(self->table);
    Py_CLEAR(self->misses);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->lock);
    Py_CLEAR(self->max);
    Py_CLEAR(self->evictions);
    Py_CLEAR(self->ttl);
    Py_CLEAR(self->next_expiry);
    Py_CLEAR(self->deadline_keys);
    Py_CLEAR(self->deadline_times);
    Py_CLEAR(self->ttls);
    Py_CLEAR(self->dispose);
    Py_CLEAR(self->sizes);
    return 0;
}

static void
core_dealloc(CacheCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Hand a call, as it came, to the Python method `name` (`_get_slow` or `_set_slow`), which
 * handles every case, and raises the errors for bad arguments. */
static PyObject *
forward(CacheCore *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames)
{
    PyObject *stack[8];
    Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    if (total > 7) {
        PyErr_Format(PyExc_TypeError, "%U() takes at most 3 arguments (%zd given)", name, total);
        return NULL;
    }
    stack[0] = (PyObject *)self;
    for (Py_ssize_t i = 0; i < total; i++) {
        stack[i + 1] = args[i];
    }
    return PyObject_VectorcallMethod(name, stack, (size_t)(nargs + 1), kwnames);
}

/* Advance an itertools.count; 0 on success, -1 with an exception set. */
static int
count_one(PyObject *counter)
{
    PyObject *n = PyIter_Next(counter);
    if (n == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "LRUCache: a statistics counter is exhausted");
        }
        return -1;
    }
    Py_DECREF(n);
    return 0;
}

PyDoc_STRVAR(core_get_doc,
"get($self, key, default=None)\n--\n\n"
"Return the live value for ``key`` and mark it most recently used, else ``default``.\n\n"
"Counts a hit or a miss. An expired entry is removed (reason ``\"expire\"``) and is a miss.\n"
"With ``update_age_on_get``, a hit restarts the entry's ttl.");

static PyObject *
core_get(CacheCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames != NULL || nargs < 1 || nargs > 2 || self->table == NULL ||
        self->misses == NULL || self->clock == NULL || !PyTuple_CheckExact(self->table) ||
        PyTuple_GET_SIZE(self->table) != 4) {
        return forward(self, slow_name, args, nargs, kwnames);
    }
    PyObject *key = args[0];
    PyObject *dflt = nargs == 2 ? args[1] : Py_None;
    PyObject *table = Py_NewRef(self->table); /* a writer may replace it while we run */
    PyObject *entries = PyTuple_GET_ITEM(table, 0);
    PyObject *move = PyTuple_GET_ITEM(table, 1);
    PyObject *hits = PyTuple_GET_ITEM(table, 2);
    int timed = PyTuple_GET_ITEM(table, 3) == Py_True;
    PyObject *entry = NULL, *value = NULL, *result = NULL;

    if (!PyDict_Check(entries)) {
        Py_DECREF(table);
        return forward(self, slow_name, args, nargs, kwnames);
    }
    entry = PyDict_GetItemWithError(entries, key); /* borrowed */
    if (entry == NULL) {
        if (PyErr_Occurred() || count_one(self->misses) < 0) {
            goto done;
        }
        result = Py_NewRef(dflt);
        goto done;
    }
    Py_INCREF(entry);
    if (timed) {
        if (self->update_age_on_get || !PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) {
            goto slow; /* refreshing a deadline is a write: Python takes the lock */
        }
        PyObject *expires = PyTuple_GET_ITEM(entry, 1);
        if (expires != never) {
            PyObject *now = PyObject_CallNoArgs(self->clock);
            if (now == NULL) {
                goto done;
            }
            int expired;
            if (PyFloat_CheckExact(expires) && PyFloat_CheckExact(now)) {
                expired = PyFloat_AS_DOUBLE(expires) <= PyFloat_AS_DOUBLE(now);
            }
            else {
                expired = PyObject_RichCompareBool(expires, now, Py_LE);
            }
            Py_DECREF(now);
            if (expired < 0) {
                goto done;
            }
            if (expired) {
                goto slow; /* a miss that removes the entry, under the lock */
            }
        }
        value = Py_NewRef(PyTuple_GET_ITEM(entry, 0));
    }
    else {
        value = Py_NewRef(entry);
    }
    PyObject *moved = PyObject_CallOneArg(move, key);
    if (moved == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            goto done;
        }
        PyErr_Clear(); /* evicted by another thread since we read it: still a hit */
    }
    else {
        Py_DECREF(moved);
    }
    if (count_one(hits) < 0) {
        goto done;
    }
    result = Py_NewRef(value);
    goto done;

slow:
    Py_DECREF(entry);
    Py_DECREF(table);
    return forward(self, slow_name, args, nargs, kwnames);

done:
    Py_XDECREF(value);
    Py_XDECREF(entry);
    Py_DECREF(table);
    return result;
}

/* Call lock.acquire() or lock.release(); 0 on success, -1 with an exception set. */
static int
call_lock(PyObject *lock, PyObject *name)
{
    PyObject *r = PyObject_VectorcallMethod(name, &lock, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}


/* Advance an int attribute by one (the eviction count). */
static int
increment(PyObject **counter)
{
    PyObject *count = *counter == NULL ? PyLong_FromLong(1) : PyNumber_Add(*counter, one);
    if (count == NULL) {
        return -1;
    }
    Py_XSETREF(*counter, count);
    return 0;
}

/* Call obj.name(arg), or obj.name() if arg is NULL, and drop the result; 0 on success, -1 with
 * an exception set. */
static int
call_one(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *r = arg == NULL ? PyObject_CallMethodNoArgs(obj, name)
                              : PyObject_CallMethodOneArg(obj, name, arg);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Is `item` the first element of `deque`, by identity? -1 on error. */
static int
first_is(PyObject *deque, PyObject *item)
{
    Py_ssize_t n = PyObject_Length(deque);
    if (n <= 0) {
        return n < 0 ? -1 : 0;
    }
    PyObject *first = PySequence_GetItem(deque, 0);
    if (first == NULL) {
        return -1;
    }
    int same = first == item;
    Py_DECREF(first);
    return same;
}

/* Whether a `set` call can take a compiled write: `set(key, value)` or `set(key, value,
 * ttl=None)` on a cache with a lock and an int `max`, which goes to `*max`. 1 if so, 0 if the
 * Python write must handle it, -1 with an exception set. */
static int
fast_write(CacheCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           Py_ssize_t *max)
{
    if (nargs != 2 || self->lock == NULL || self->max == NULL || !PyLong_CheckExact(self->max)) {
        return 0;
    }
    if (kwnames != NULL) { /* only ttl=None stays here */
        if (PyTuple_GET_SIZE(kwnames) != 1 || args[2] != Py_None) {
            return 0;
        }
        int is_ttl = PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), ttl_name);
        if (is_ttl != 0) {
            return PyErr_Occurred() ? -1 : 0;
        }
    }
    *max = PyLong_AsSsize_t(self->max);
    return *max == -1 && PyErr_Occurred() ? -1 : 1;
}

/* Release the lock taken by a write, then what left the cache (`keep`, may be NULL), so that its
 * finalizers run without the lock. Steals both references; 0 on success, -1 with an exception. */
static int
unlock_and_release(PyObject *lock, PyObject *keep)
{
    int status = call_lock(lock, release_name);
    Py_DECREF(lock);
    Py_XDECREF(keep);
    return status;
}

/* The same after a failed step, keeping that step's exception: finalizers must not run while
 * it is set, and a failure to unlock is reported as unraisable. */
static void
unlock_after_error(PyObject *lock, PyObject *keep)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (unlock_and_release(lock, keep) < 0) {
        PyErr_WriteUnraisable(NULL);
    }
    PyErr_Restore(type, value, tb);
}

PyDoc_STRVAR(core_counted_set_doc,
"_counted_set($self, key, value, *, ttl=None)\n--\n\n"
"``LRUCache.set`` of a cache with a count bound only (no ttl, size or dispose): store ``value``\n"
"under ``key`` as the most recently used entry, evicting the least recently used one if the\n"
"cache is full. A per-entry ``ttl`` or a table already holding ttl entries goes to Python.");

/* The write of a count-bounded cache: one lock, at most one eviction, nothing to dispose.
 * The values that leave are released after the lock, so their finalizers may use the cache. */
static PyObject *
core_counted_set(CacheCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t max;
    int fast = fast_write(self, args, nargs, kwnames, &max);
    if (fast <= 0) {
        if (fast < 0) {
            return NULL;
        }
        goto slow;
    }
    PyObject *key = args[0], *value = args[1];
    PyObject *lock = Py_NewRef(self->lock);
    PyObject *keep = NULL; /* what left the cache, released after the lock */
    if (call_lock(lock, acquire_name) < 0) {
        Py_DECREF(lock);
        return NULL;
    }
    PyObject *table = self->table;
    if (table == NULL || !PyTuple_CheckExact(table) || PyTuple_GET_SIZE(table) != 4 ||
        PyTuple_GET_ITEM(table, 3) != Py_False || !PyDict_Check(PyTuple_GET_ITEM(table, 0))) {
        /* entries are (value, expires) since a per-entry ttl was set: the general path */
        if (unlock_and_release(lock, NULL) < 0) {
            return NULL;
        }
        goto slow;
    }
    Py_INCREF(table);
    PyObject *data = PyTuple_GET_ITEM(table, 0);
    PyObject *old = PyDict_GetItemWithError(data, key);
    if (old != NULL) { /* replacing: the new value, most recently used */
        keep = Py_NewRef(old);
        if (PyObject_SetItem(data, key, value) < 0) {
            goto error;
        }
        PyObject *moved = PyObject_CallOneArg(PyTuple_GET_ITEM(table, 1), key);
        if (moved == NULL) {
            goto error;
        }
        Py_DECREF(moved);
    }
    else if (PyErr_Occurred()) {
        goto error;
    }
    else {
        Py_ssize_t held = PyObject_Length(data);
        if (held < 0) {
            goto error;
        }
        if (held >= max) { /* full: the least recently used entry goes */
            keep = PyObject_CallMethodOneArg(data, popitem_name, Py_False);
            if (keep == NULL) {
                goto error;
            }
            if (increment(&self->evictions) < 0) {
                goto error;
            }
        }
        if (PyObject_SetItem(data, key, value) < 0) {
            goto error;
        }
    }
    Py_DECREF(table);
    if (unlock_and_release(lock, keep) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;

error:
    Py_DECREF(table);
    unlock_after_error(lock, keep);
    return NULL;

slow:
    return forward(self, set_slow_name, args, nargs, kwnames);
}

PyDoc_STRVAR(core_timed_set_doc,
"_timed_set($self, key, value, *, ttl=None)\n--\n\n"
"``LRUCache.set`` of a cache with a default ttl and a count bound (no size, no dispose): store\n"
"a new key with the default ttl, evicting the least recently used entry if the cache is full.\n"
"Replacing a key, a per-entry ``ttl``, or a cache with something expired goes to Python.");

/* The write of a cache with a default ttl, for a new key while nothing has expired. */
static PyObject *
core_timed_set(CacheCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (self->clock == NULL || self->ttl == NULL ||
        self->next_expiry == NULL || self->deadline_keys == NULL ||
        self->deadline_times == NULL || self->ttls == NULL || !PyDict_Check(self->ttls) ||
        self->dispose != Py_None || self->sizes != Py_None) {
        goto slow;
    }
    Py_ssize_t max;
    int fast = fast_write(self, args, nargs, kwnames, &max);
    if (fast <= 0) {
        if (fast < 0) {
            return NULL;
        }
        goto slow;
    }
    PyObject *key = args[0], *value = args[1];
    PyObject *lock = Py_NewRef(self->lock);
    PyObject *keep = NULL; /* the evicted (key, entry), released after the lock */
    PyObject *table = NULL, *now = NULL, *expires = NULL;
    if (call_lock(lock, acquire_name) < 0) {
        Py_DECREF(lock);
        return NULL;
    }
    table = self->table;
    if (table == NULL || !PyTuple_CheckExact(table) || PyTuple_GET_SIZE(table) != 4 ||
        PyTuple_GET_ITEM(table, 3) != Py_True || !PyDict_Check(PyTuple_GET_ITEM(table, 0))) {
        table = NULL;
        goto unlock_slow;
    }
    Py_INCREF(table);
    PyObject *data = PyTuple_GET_ITEM(table, 0);
    now = PyObject_CallNoArgs(self->clock);
    if (now == NULL) {
        goto error;
    }
    int stale = PyObject_RichCompareBool(self->next_expiry, now, Py_LE);
    if (stale < 0) {
        goto error;
    }
    if (stale) {
        goto unlock_slow; /* something may have expired: Python purges first */
    }
    PyObject *old = PyDict_GetItemWithError(data, key);
    if (old != NULL) {
        goto unlock_slow; /* replacing: Python handles the old entry's deadline */
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_ssize_t held = PyObject_Length(data);
    if (held < 0) {
        goto error;
    }
    if (held >= max) { /* full: the least recently used entry goes */
        keep = PyObject_CallMethodOneArg(data, popitem_name, Py_False);
        if (keep == NULL) {
            goto error;
        }
        if (!PyTuple_CheckExact(keep) || PyTuple_GET_SIZE(keep) != 2 ||
            !PyTuple_CheckExact(PyTuple_GET_ITEM(keep, 1)) ||
            PyTuple_GET_SIZE(PyTuple_GET_ITEM(keep, 1)) != 2) {
            PyErr_SetString(PyExc_RuntimeError, "LRUCache: an entry is not (value, expires)");
            goto error;
        }
        PyObject *lru_key = PyTuple_GET_ITEM(keep, 0);
        PyObject *lru_expires = PyTuple_GET_ITEM(PyTuple_GET_ITEM(keep, 1), 1);
        /* Its deadline was the oldest: drop it now rather than leave a stale item. */
        int first = first_is(self->deadline_times, lru_expires);
        if (first > 0) {
            first = first_is(self->deadline_keys, lru_key);
        }
        if (first < 0) {
            goto error;
        }
        if (first && (call_one(self->deadline_times, popleft_name, NULL) < 0 ||
                      call_one(self->deadline_keys, popleft_name, NULL) < 0)) {
            goto error;
        }
        if (PyDict_GET_SIZE(self->ttls) > 0) {
            int has = PyDict_Contains(self->ttls, lru_key);
            if (has < 0 || (has && PyDict_DelItem(self->ttls, lru_key) < 0)) {
                goto error;
            }
        }
        if (increment(&self->evictions) < 0) {
            goto error;
        }
    }
    expires = PyNumber_Add(now, self->ttl);
    if (expires == NULL) {
        goto error;
    }
    PyObject *entry = PyTuple_Pack(2, value, expires);
    if (entry == NULL) {
        goto error;
    }
    int failed = PyObject_SetItem(data, key, entry);
    Py_DECREF(entry);
    if (failed < 0 || call_one(self->deadline_keys, append_name, key) < 0 ||
        call_one(self->deadline_times, append_name, expires) < 0) {
        goto error;
    }
    Py_ssize_t queued = PyObject_Length(self->deadline_keys);
    held = PyObject_Length(data);
    if (queued < 0 || held < 0) {
        goto error;
    }
    if (queued > 2 * held + 64) {
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, compact_name);
        if (r == NULL) {
            goto error;
        }
        Py_DECREF(r);
    }
    int earlier = PyObject_RichCompareBool(expires, self->next_expiry, Py_LT);
    if (earlier < 0) {
        goto error;
    }
    if (earlier) {
        Py_SETREF(self->next_expiry, Py_NewRef(expires));
    }
    Py_DECREF(expires);
    Py_DECREF(now);
    Py_DECREF(table);
    if (unlock_and_release(lock, keep) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;

error:
    Py_XDECREF(expires);
    Py_XDECREF(now);
    Py_XDECREF(table);
    unlock_after_error(lock, keep);
    return NULL;

unlock_slow:
    Py_XDECREF(now);
    Py_XDECREF(table);
    if (unlock_and_release(lock, NULL) < 0) {
        return NULL;
    }
slow:
    return forward(self, set_slow_name, args, nargs, kwnames);
}

static PyMethodDef core_methods[] = {
    {"get", (PyCFunction)(void (*)(void))core_get, METH_FASTCALL | METH_KEYWORDS, core_get_doc},
    {"_counted_set", (PyCFunction)(void (*)(void))core_counted_set, METH_FASTCALL | METH_KEYWORDS,
     core_counted_set_doc},
    {"_timed_set", (PyCFunction)(void (*)(void))core_timed_set, METH_FASTCALL | METH_KEYWORDS,
     core_timed_set_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"_table", Py_T_OBJECT_EX, offsetof(CacheCore, table), 0, NULL},
    {"_misses", Py_T_OBJECT_EX, offsetof(CacheCore, misses), 0, NULL},
    {"_clock", Py_T_OBJECT_EX, offsetof(CacheCore, clock), 0, NULL},
    {"_lock", Py_T_OBJECT_EX, offsetof(CacheCore, lock), 0, NULL},
    {"_max", Py_T_OBJECT_EX, offsetof(CacheCore, max), 0, NULL},
    {"_evictions", Py_T_OBJECT_EX, offsetof(CacheCore, evictions), 0, NULL},
    {"_ttl", Py_T_OBJECT_EX, offsetof(CacheCore, ttl), 0, NULL},
    {"_next_expiry", Py_T_OBJECT_EX, offsetof(CacheCore, next_expiry), 0, NULL},
    {"_deadline_keys", Py_T_OBJECT_EX, offsetof(CacheCore, deadline_keys), 0, NULL},
    {"_deadline_times", Py_T_OBJECT_EX, offsetof(CacheCore, deadline_times), 0, NULL},
    {"_ttls", Py_T_OBJECT_EX, offsetof(CacheCore, ttls), 0, NULL},
    {"_dispose", Py_T_OBJECT_EX, offsetof(CacheCore, dispose), 0, NULL},
    {"_sizes", Py_T_OBJECT_EX, offsetof(CacheCore, sizes), 0, NULL},
    {"_update_age_on_get", Py_T_BOOL, offsetof(CacheCore, update_age_on_get), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(core_doc,
"The compiled read path of leaklab.caches.LRUCache: its base class, holding what ``get`` reads.");

static PyTypeObject CacheCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "leaklab.caches._core.CacheCore",
    .tp_basicsize = sizeof(CacheCore),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = core_doc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_members = core_members,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "leaklab.caches._core",
    .m_doc = "The compiled read path of leaklab.caches.LRUCache (optional; see compiled.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    if (PyType_Ready(&CacheCoreType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&core_module);
    if (module == NULL) {
        return NULL;
    }
    if (never == NULL && (never = PyFloat_FromDouble(INFINITY)) == NULL) {
        goto error;
    }
    if ((slow_name == NULL && (slow_name = PyUnicode_InternFromString("_get_slow")) == NULL) ||
        (set_slow_name == NULL &&
         (set_slow_name = PyUnicode_InternFromString("_set_slow")) == NULL) ||
        (acquire_name == NULL && (acquire_name = PyUnicode_InternFromString("acquire")) == NULL) ||
        (release_name == NULL && (release_name = PyUnicode_InternFromString("release")) == NULL) ||
        (popitem_name == NULL && (popitem_name = PyUnicode_InternFromString("popitem")) == NULL) ||
        (ttl_name == NULL && (ttl_name = PyUnicode_InternFromString("ttl")) == NULL) ||
        (one == NULL && (one = PyLong_FromLong(1)) == NULL) ||
        (popleft_name == NULL && (popleft_name = PyUnicode_InternFromString("popleft")) == NULL) ||
        (append_name == NULL && (append_name = PyUnicode_InternFromString("append")) == NULL) ||
        (pop_name == NULL && (pop_name = PyUnicode_InternFromString("pop")) == NULL) ||
        (compact_name == NULL &&
         (compact_name = PyUnicode_InternFromString("_compact_deadlines")) == NULL)) {
        goto error;
    }
    if (PyModule_AddObjectRef(module, "CacheCore", (PyObject *)&CacheCoreType) < 0 ||
        PyModule_AddObjectRef(module, "NEVER", never) < 0) {
        goto error;
    }
    return module;

error:
    Py_DECREF(module);
    return NULL;
}
