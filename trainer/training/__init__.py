"""Training: the Keras 3 model, augmentation, the resumable training run, checkpoints and multi-worker wiring."""
