"""The kernel: what every module stands on.

Configuration, errors and i18n, logging, tracing, metrics, health, the
request context and the database layer. The kernel imports no module package;
modules import the kernel.
"""
