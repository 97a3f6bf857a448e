"""`python -m defectops.cli`: what the `defectops` script runs."""

from defectops.cli import app

app(prog_name="defectops")
