/* leaklab._cachecore: the compiled read path of leaklab.caches.LRUCache (chapter 01).
 *
 * A hit in an exact LRU cache must look the key up, move the entry to the most-recent end and
 * count the hit. In Python that is a function frame around three C calls; here it is one C call.
 * This module holds only that read path, and the write of the commonest configuration (a count
 * bound and nothing else): `CacheCore` is the base class of LRUCache and keeps the attributes
 * these two need (`_table`, `_misses`, `_clock`, `_lock`, `_max`, `_evictions`,
 * `_update_age_on_get`). Every other write, and every read that is not a plain hit or miss,
 * stays in Python (caches.py), which LRUCache uses as a whole when this extension is not built.
 *
 * Thread safety (GIL builds only; caches.py does not import this on a free-threaded build): the
 * read takes no lock, as the Python read does not. It holds strong references to the table and
 * the entry it read, so Python code that runs in between (a key's __eq__, a finalizer) may
 * change the cache but cannot free what this function is using.
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
    char update_age_on_get;
} CacheCore;

static PyObject *never;     /* the deadline of an entry that does not expire: +inf, by identity */
static PyObject *slow_name; /* "_get_slow", the Python read that handles everything else */
static PyObject *set_slow_name; /* "_set_slow", the Python write that handles everything else */
static PyObject *acquire_name, *release_name, *popitem_name, *ttl_name, *one;

static int
core_traverse(CacheCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->table);
    Py_VISIT(self->misses);
    Py_VISIT(self->clock);
    Py_VISIT(self->lock);
    Py_VISIT(self->max);
    Py_VISIT(self->evictions);
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
    return 0;
}

static void
core_dealloc(CacheCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Hand the call, as it came, to the Python method `_get_slow(self, key, default=None)`. */
static PyObject *
get_slow(CacheCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *stack[8];
    Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    if (total > 7) {
        PyErr_Format(PyExc_TypeError, "get() takes at most 2 arguments (%zd given)", total);
        return NULL;
    }
    stack[0] = (PyObject *)self;
    for (Py_ssize_t i = 0; i < total; i++) {
        stack[i + 1] = args[i];
    }
    return PyObject_VectorcallMethod(slow_name, stack, (size_t)(nargs + 1), kwnames);
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
        return get_slow(self, args, nargs, kwnames);
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
        return get_slow(self, args, nargs, kwnames);
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
    return get_slow(self, args, nargs, kwnames);

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

/* Release the lock after a failed step, keeping that step's exception. */
static void
release_after_error(PyObject *lock)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (call_lock(lock, release_name) < 0) {
        PyErr_WriteUnraisable(lock);
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
    if (nargs != 2 || self->table == NULL || self->lock == NULL || self->max == NULL ||
        !PyLong_CheckExact(self->max)) {
        goto slow;
    }
    if (kwnames != NULL) { /* only ttl=None stays here */
        if (PyTuple_GET_SIZE(kwnames) != 1 || args[2] != Py_None ||
            PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), ttl_name) != 0) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            goto slow;
        }
    }
    Py_ssize_t max = PyLong_AsSsize_t(self->max);
    if (max == -1 && PyErr_Occurred()) {
        return NULL;
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
        if (call_lock(lock, release_name) < 0) {
            Py_DECREF(lock);
            return NULL;
        }
        Py_DECREF(lock);
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
            PyObject *count = self->evictions == NULL
                                  ? PyLong_FromLong(1)
                                  : PyNumber_Add(self->evictions, one);
            if (count == NULL) {
                goto error;
            }
            Py_XSETREF(self->evictions, count);
        }
        if (PyObject_SetItem(data, key, value) < 0) {
            goto error;
        }
    }
    Py_DECREF(table);
    if (call_lock(lock, release_name) < 0) {
        Py_DECREF(lock);
        Py_XDECREF(keep);
        return NULL;
    }
    Py_DECREF(lock);
    Py_XDECREF(keep);
    Py_RETURN_NONE;

error:
    Py_DECREF(table);
    release_after_error(lock);
    Py_DECREF(lock);
    Py_XDECREF(keep);
    return NULL;

slow:;
    PyObject *stack[8];
    Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    if (total > 7) {
        PyErr_Format(PyExc_TypeError, "set() takes 2 positional arguments (%zd given)", total);
        return NULL;
    }
    stack[0] = (PyObject *)self;
    for (Py_ssize_t i = 0; i < total; i++) {
        stack[i + 1] = args[i];
    }
    return PyObject_VectorcallMethod(set_slow_name, stack, (size_t)(nargs + 1), kwnames);
}

static PyMethodDef core_methods[] = {
    {"get", (PyCFunction)(void (*)(void))core_get, METH_FASTCALL | METH_KEYWORDS, core_get_doc},
    {"_counted_set", (PyCFunction)(void (*)(void))core_counted_set, METH_FASTCALL | METH_KEYWORDS,
     core_counted_set_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"_table", Py_T_OBJECT_EX, offsetof(CacheCore, table), 0, NULL},
    {"_misses", Py_T_OBJECT_EX, offsetof(CacheCore, misses), 0, NULL},
    {"_clock", Py_T_OBJECT_EX, offsetof(CacheCore, clock), 0, NULL},
    {"_lock", Py_T_OBJECT_EX, offsetof(CacheCore, lock), 0, NULL},
    {"_max", Py_T_OBJECT_EX, offsetof(CacheCore, max), 0, NULL},
    {"_evictions", Py_T_OBJECT_EX, offsetof(CacheCore, evictions), 0, NULL},
    {"_update_age_on_get", Py_T_BOOL, offsetof(CacheCore, update_age_on_get), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(core_doc,
"The compiled read path of leaklab.caches.LRUCache: its base class, holding what ``get`` reads.");

static PyTypeObject CacheCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "leaklab._cachecore.CacheCore",
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

static struct PyModuleDef cachecore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "leaklab._cachecore",
    .m_doc = "The compiled read path of leaklab.caches.LRUCache (optional; see caches.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__cachecore(void)
{
    if (PyType_Ready(&CacheCoreType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&cachecore_module);
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
        (one == NULL && (one = PyLong_FromLong(1)) == NULL)) {
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
