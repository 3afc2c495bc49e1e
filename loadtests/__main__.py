"""`python -m loadtests run …` (loadtests/cli.py); `python -m loadtests.bench` runs the benchmarks."""
import sys

from loadtests.cli import main

sys.exit(main())
