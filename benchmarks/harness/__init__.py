"""The benchmark harness behind ``make bench``: systems, load generators, workloads, reports."""
