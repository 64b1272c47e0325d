"""``python -m preservation.cli``: the same command as the ``preservation`` script."""

from preservation.cli import main

main()
