"""How much does GlobalsWatch.snapshot() cost? (leaklab.state, chapter 03)

Run: .venv/bin/python bench/bench_state.py
Prints the median over many runs (one snapshot per run) for:
- one module holding 5 container globals of N elements each (+ 50 functions), N = 10, 100k, 1M;
- one module holding about 2,000 container globals (cost per global);
- the default scope (every user module in sys.modules) in a process that has imported pandas,
  matplotlib, IPython, objgraph, pympler, hypothesis and leaklab, with the 100k module planted.
"""
import collections, importlib, os, statistics, sys, tempfile, textwrap, timeit, tracemalloc

import IPython, hypothesis, matplotlib.pyplot, objgraph, pandas, pympler.asizeof  # noqa: F401
import leaklab.measure, leaklab.plot  # noqa: F401
from leaklab.state import GlobalsWatch

tmp = tempfile.mkdtemp(prefix="bench-state-")
sys.path.insert(0, tmp)

def planted(n, tag=""):
    name = f"bench_globals{tag}_{n}"
    with open(os.path.join(tmp, name + ".py"), "w") as fh:
        fh.write(textwrap.dedent(f"""
            import collections
            N = {n}
            A_LIST = list(range(N))
            A_DICT = dict.fromkeys(range(N))
            A_SET = set(range(N))
            A_DEQUE = collections.deque(range(N))
            A_BYTEARRAY = bytearray(N)
        """) + "".join(f"def f{i}(): pass\n" for i in range(50)))
    importlib.invalidate_caches()
    return importlib.import_module(name)

def median_ms(fn, repeat):
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeat)) * 1e3

rows = []
for n in (10, 100_000, 1_000_000):
    mod = planted(n)
    watch = GlobalsWatch([mod])
    snap = watch.snapshot()
    rows.append((f"1 module, 5 globals x {n:,}", len(snap.modules), len(snap), median_ms(watch.snapshot, 2000)))
many = planted(10, "_many")
for i in range(2000):
    setattr(many, f"G{i}", [i])
watch = GlobalsWatch([many])
snap = watch.snapshot()
rows.append(("1 module, 2,005 small list globals", len(snap.modules), len(snap), median_ms(watch.snapshot, 500)))
del sys.modules[many.__name__]
watch = GlobalsWatch()
snap = watch.snapshot()
rows.append((f"default scope ({len(sys.modules)} in sys.modules)", len(snap.modules), len(snap), median_ms(watch.snapshot, 500)))
rows.append(("default scope, new watch each time", len(snap.modules), len(snap), median_ms(lambda: GlobalsWatch().snapshot(), 200)))
before = watch.snapshot(); after = watch.snapshot()
rows.append(("grown() on two default snapshots", len(snap.modules), len(snap), median_ms(lambda: watch.grown(before, after), 200)))
tracemalloc.start()
s = watch.snapshot()
held = tracemalloc.get_traced_memory()[0]
names = s.modules
del s
size = held - tracemalloc.get_traced_memory()[0]  # what freeing the snapshot gives back
tracemalloc.stop()

print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
print(f"{'case':45} {'modules':>8} {'globals':>8} {'median ms':>10}")
for case, m, g, ms in rows:
    print(f"{case:45} {m:8d} {g:8d} {ms:10.3f}")
print(f"memory held by one default-scope snapshot: {size/1024:.1f} KiB")
print("scanned:", ", ".join(names))
