"""Benchmarks of computethis against direct Dask on the same cluster: ``python -m benchmarks``.

Each benchmark runs the same work through the gateway (the SDK) and through a
``distributed.Client`` connected to the same scheduler (``computethis scheduler`` and
``computethis worker`` processes), prints the medians, their
ratio and PASS/FAIL against the target, and writes JSON and PNG plots.
"""
