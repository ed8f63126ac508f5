"""The main job: the whole lifecycle, from raw data to a monitored prediction service, in one command.

It joins the deployable units only through their command lines, buckets and HTTP, as a user or a pipeline
would: `python -m trainer ...`, `python -m infra.scan`, `python -m service`.
"""
