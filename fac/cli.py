"""The `fac` command line: one-line errors with exit code 2 for bad input, never a traceback."""

from __future__ import annotations

import sys

import click
import typer
from rich.markup import escape

from fac.commands.catalog import catalog_app
from fac.commands.coverage import coverage
from fac.commands.export import export_command
from fac.commands.features import features
from fac.commands.report import report_command
from fac.commands.run import EXIT_INTERRUPTED, run_command
from fac.commands.sae import sae_app
from fac.commands.select import select_command
from fac.commands.status import status_command
from fac.commands.trace import trace_command
from fac.console import console
from fac.tools.errors import FacError, TransientError
from fac.tools.redaction import redact

app = typer.Typer(
    name="fac",
    help="Measure and fill Feature Activation Coverage (FAC) of a dataset in an LLM's SAE feature space.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(sae_app, name="sae")
app.add_typer(catalog_app, name="catalog")
app.command()(features)
app.command()(coverage)
app.command("run")(run_command)
app.command("export")(export_command)
app.command("trace")(trace_command)
app.command("report")(report_command)
app.command("status")(status_command)
app.command("select")(select_command)


def _version(value: bool) -> None:
    if value:
        from fac import __version__

        sys.stdout.write(f"fac {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print fac's version and exit.")) -> None:
    """Measure and fill Feature Activation Coverage (FAC) of a dataset in an LLM's SAE feature space."""


def main() -> None:
    """Entry point: FacError and usage errors become one line on stderr and exit code 2; an endpoint still
    failing after the client's retries (TransientError) one line and exit code 3 (rerunning resumes)."""
    from fac.commands.options import RAY_LOCAL, bare_flag_value

    sys.argv = bare_flag_value(sys.argv, "--ray", RAY_LOCAL)
    try:
        code = app(standalone_mode=False)  # without standalone mode, click returns typer.Exit's code
    except FacError as err:
        console.print(f"[red]error:[/red] {escape(redact(str(err)))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except TransientError as err:  # an endpoint down after the client's retries: nothing is lost, rerun resumes
        console.print(f"[yellow]stopped:[/yellow] {escape(redact(str(err)))}", highlight=False, markup=True,
                      soft_wrap=True)
        sys.exit(EXIT_INTERRUPTED)
    except (click.exceptions.UsageError, typer.TyperException) as err:  # typer >= 0.20 vendors its own click
        message = err.format_message().strip()  # empty or the help text when no arguments are given
        if message and "\n" not in message:
            console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        elif message:
            console.print(message, highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except (click.exceptions.Abort, typer.Abort):
        console.print("aborted")
        sys.exit(130)
    except (click.exceptions.Exit, typer.Exit) as err:
        sys.exit(err.exit_code)
    if isinstance(code, int) and code != 0:
        sys.exit(code)
