"""The checkout's command lines (not part of the installed ``rtdetr_zoo``).
A package only so that ``tools.analysis`` can be imported; see
``tools/analysis/__init__.py``."""
