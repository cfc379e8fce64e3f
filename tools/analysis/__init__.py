"""Benchmark, FLOPs and model-zoo command lines of the checkout, and the
modules behind them that do not belong in the installed package: the
timed unit of work and its worker process (``timed_step``), the
comparison with another git revision (``revision_compare``) and the
model-zoo table (``model_zoo_table``).

They are imported as ``tools.analysis.<module>`` with the repository root
on ``sys.path``: ``tests/conftest.py`` puts it there for the tests, and
a script that imports them puts it there itself (``benchmark.py``), since
Python starts a script with only the script's own folder on the path.
"""
