"""What the deployable units agree on, defined once: every unit imports it, it imports no unit.

- `contracts.dataset`: the data set itself (class names, image shape, the four IDX files).
- `contracts.layout`: the bucket layout (datasets, registry, model directory files, model references).
- `contracts.registry_index`: the registry's index.json as typed, frozen shapes; its one parser and one resolution.
- `contracts.cloud`: every Google Cloud resource name, one function per name (infra/ declares, the trainer finds).
- `contracts.serving`: the serving contract (routes, port, every variable the service reads, the builder of its
  environment on Cloud Run and Vertex AI, deployed-model names).
- `contracts.images`: the content tag of the trainer and service images.
- `contracts.feature_schema`: the per-image feature table's columns (Parquet, BigQuery, drift baselines).
- `contracts.features`: the per-image feature function, the baseline binning and PSI.

Pure Python plus numpy, so the service image (no pyyaml, pydantic, TensorFlow or Keras) can hold it.
"""
