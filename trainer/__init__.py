"""Fashion-MNIST ML lifecycle: ingest, analyze, features, train, evaluate, export, registry, Vertex AI adapters.

Kept import-light: `infra/` imports `trainer.config` and `trainer.feature_schema` without pulling in TensorFlow.
"""
