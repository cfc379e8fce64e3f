"""rtdetr_zoo tests (a package so that tests can share tests/utils.py)."""
