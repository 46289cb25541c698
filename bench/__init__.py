"""The benchmark: ``python -m bench`` measures size and speed of dg-agent against deltaglider 6.2.0,
raw ``xdelta3 -e -9`` and plain uploads, on a real or synthetic corpus, and prints one table.

Benchmarks are not tests: nothing here asserts a timing; the table says which targets are met.
"""
