"""Batch scoring: a dataset's images through the serving artifact, locally or as a Vertex AI batch prediction."""
