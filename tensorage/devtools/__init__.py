"""Tools for tests and benchmarks only (never imported by engines): emulated hardware, mostly."""
