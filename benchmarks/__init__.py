"""apprun's benchmarks: ``make bench`` runs `benchmarks.harness.run`."""
