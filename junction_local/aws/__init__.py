"""A fast in-memory stand-in for the two AWS services on Junction's hot path: SQS and DynamoDB.

Both speak the AWS JSON protocol (``X-Amz-Target``), so boto3 and shared.aws talk to them
unchanged. Why not moto for these two: see docs/decisions.md ("The local hot path").
"""
