"""``python -m ablate``: the command line, as local study workers are started."""

from ablate.cli import app

app(prog_name="ablate")
