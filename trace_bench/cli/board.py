"""``trace-bench board RUN... --out SITE/``: one static leaderboard page across runs (see :mod:`reports.board`)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("board")
def board_cmd(
    runs: list[str] = typer.Argument(..., help="Output folders of finished runs (RUN or LABEL=RUN); each needs "
                                     "its results.json."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder of the site; the page is SITE/index.html."),
) -> None:
    """Write one sortable leaderboard page across runs. Rows with different protocol ids, reference sets
    or (FPS / memory) devices never share a column: such a metric gets one column per kind, and the page
    says why. Each run links to its report.html."""
    from reports.board import BoardError, write_board

    from ..errors import ConfigError

    try:
        page = write_board(runs, out)
    except BoardError as e:
        raise ConfigError(str(e)) from None
    print(page)
