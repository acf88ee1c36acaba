"""Tooling for the tests, benchmarks and docs of a mammo-keras checkout; not in the wheel.

- `local_ports.free_ports`: free loopback ports for servers the tests and benchmarks start.
- `crop_testset`: phantoms with their true breast masks, to score the breast crop.

setup.cfg leaves this package out of the distribution (`packages.find.exclude`); it is
importable from a checkout (an editable install), where the tests and benchmarks run.
"""
