"""Fixtures shared by every test layer."""

from __future__ import annotations

import os

# No test may reach a real AWS endpoint: fake credentials and a region before anything imports boto3.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_REGION": "eu-central-1",
    }
)
os.environ.pop("AWS_PROFILE", None)
