"""Command line: ``twofold compile | inspect | simulate | run | eval | demo | bench``.

Every command turns a known failure (bad model, bad input, dead peer, ...) into
one readable line on stderr and a non-zero exit; no tracebacks for user errors.
"""

from __future__ import annotations

import sys

import click

from . import __version__


class UserError(click.ClickException):
    """An error caused by the user's input; printed as one line, exit status 1."""

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"twofold: error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="twofold")
def cli() -> None:
    """Compile ONNX models into two-party secure inference programs and run them."""


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="twofold", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("twofold: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
