"""The offline path: the Sensorium 2023 dataset reader/writer, fit, reconstruct."""
