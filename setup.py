"""Build the optional compiled core of leaklab.caches.LRUCache (chapter 01).

Everything else about the package is in pyproject.toml. The extension is optional: without a C
compiler the install still succeeds and LRUCache runs in pure Python (``leaklab.caches.COMPILED``
tells which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("leaklab.caches._core", ["src/leaklab/caches/_core.c"], optional=True),
    ]
)
