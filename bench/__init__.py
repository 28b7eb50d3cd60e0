"""The benchmarks, a package: each runs from the project root as a module, e.g.

    PYTHONPATH=operator .venv/bin/python -m bench.scale --sizes 100,300

(`PYTHONPATH=operator` only where the package is not installed in the venv). `bench.common` holds what the
cluster benchmarks share; the Makefile's bench-* targets run them.
"""
