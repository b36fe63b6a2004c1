"""aewatch: autoencoder anomaly detection for industrial sensor streams."""

__version__ = "0.1.0"
