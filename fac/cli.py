"""The `fac` command line: one-line errors with exit code 2 for bad input, never a traceback."""

from __future__ import annotations

import sys

import click
import typer

from fac.commands.features import features
from fac.commands.sae import sae_app
from fac.console import console
from fac.tools.errors import FacError

app = typer.Typer(
    name="fac",
    help="Measure and fill Feature Activation Coverage (FAC) of a dataset in an LLM's SAE feature space.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(sae_app, name="sae")
app.command()(features)


def main() -> None:
    """Entry point: FacError and usage errors become one line on stderr and exit code 2."""
    try:
        app(standalone_mode=False)
    except FacError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.UsageError as err:
        console.print(f"[red]error:[/red] {err.format_message()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
