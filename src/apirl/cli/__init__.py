"""The `apirl` command line: thin wrappers that load a config, call one stage, and print the result.

`options` holds the apps and what every command shares, `stages` the stage commands, `tools` the commands that
work on the Gorilla data and on responses files outside a run. Importing the package registers them all."""

from apirl.cli import stages, tools
from apirl.cli.options import app

__all__ = ["app", "stages", "tools"]

