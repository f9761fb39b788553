"""msi-tui: move instrument data files through Apache Kafka, byte for byte."""

__version__ = "0.1.0"
