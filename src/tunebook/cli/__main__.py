"""`python -m tunebook.cli`: the same as the `tunebook` command."""

from tunebook.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
