"""`python -m loadtests run …` (`make loadtest`): the load suites' command line (loadtests/cli.py); the benchmarks have their own, `python -m loadtests.bench`."""
import sys

from loadtests.cli import main

sys.exit(main())
