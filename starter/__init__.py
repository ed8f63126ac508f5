"""The pipeline starter: the one place that starts lifecycle pipeline runs on Google Cloud (a Cloud Run function).

Why a function and not the Cloud Workflows workflow it replaces: its logic (filter the event, defer while a run is
active, name the run, start it without waiting) runs in tests against the real event payloads and the Vertex AI
REST fake, and `lifecycle/alert_starter.py` runs the same logic locally. Modules: `events` turns a request into a
trigger (or says why it is ignored), `logic` decides, `vertex` and `deferrals` are its two adapters, `main` is the
functions-framework entry point. It imports the contracts only (an import-linter rule).
"""
