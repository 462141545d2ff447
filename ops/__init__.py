"""The operator's CLI (``junction``): status, dead-letter queues, redrive, replay and trace.

The same code talks to the local stack (``make up``) or to a deployed stage on AWS; see
docs/operations.md. ``ops.app`` is the root command and what every command group shares;
``ops.cli`` is a thin layer over plain functions (``ops.commands``, ``ops.dlq``) that take boto3
clients as parameters.
"""
