"""`python -m apirl.cli`: the `apirl` command."""

from apirl.cli import app

app()
