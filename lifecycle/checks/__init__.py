"""Checks of the served model: start `python -m service`, score over HTTP, shadow a candidate, write the report."""
