"""The local twin of the Google Cloud APIs the project calls: the real client libraries, over the wire, to local fakes.

Why a unit and not test helpers: `make twin-gcp` (python -m twin) is a user command that runs the whole gcp
lifecycle offline, and the tests use the same fakes. Nothing in the deployable units imports it (import-linter):
only tests/ and this package's own entry point. twin/README.md says what each client honours and what each fake
answers.
"""
