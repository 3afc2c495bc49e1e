"""Load measurements: `make bench` benchmarks (bench/) and, later, the Locust suites."""
