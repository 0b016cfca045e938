"""``python -m neuradiff``: the command line, as the ``neuradiff`` script."""

from neuradiff.cli import main

if __name__ == "__main__":
    main()
