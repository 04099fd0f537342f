"""`python -m grader` works like `grader`."""
import sys

from grader.cli import main

sys.exit(main())
