"""`tensorage s3`: a local S3 server so aws-cli, boto3 and rclone store on the subnet.

It runs beside the client's wallet and key file: requests are checked with AWS Signature V4
(:mod:`.auth`), bucket/key names map to client objects in a small local SQLite (:mod:`.mapping`),
bodies are spooled to disk and stored with the client's own pipeline (encrypted, erasure-coded,
uploaded through a validator gateway), and reads stream authenticated plaintext back. Keys and
plaintext never leave this machine.
"""
