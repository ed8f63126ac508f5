"""Fashion-MNIST ML lifecycle, one subpackage per concern (docs/ARCHITECTURE.md):

- `trainer.data`: IDX validation, ingest, dataset versions, analysis, features, AutoML image export;
- `trainer.training`: the Keras 3 model, augmentation, the resumable training run, multi-worker wiring;
- `trainer.models`: the model directory, evaluation, ONNX export, the registry and its quality gate;
- `trainer.cloud`: the Google Cloud adapters (custom jobs, deployment, Experiments, AutoML);
- `trainer.cli` (the command table), `trainer.errors`; storage is its own unit (`storage`, beside `contracts`).

Kept import-light: importing the package or `trainer.cli` pulls in neither TensorFlow nor the Vertex AI SDK.
"""
