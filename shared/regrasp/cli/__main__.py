"""`python -m regrasp.cli`."""

from regrasp.cli import main

main()
