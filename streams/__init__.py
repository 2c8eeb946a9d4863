"""The application: Kafka I/O, the worker loop, the CLI; composes ``state`` and ``encoders``."""
