"""AWS components (type tokens `ray-platform:aws:*`): EFS, the S3 bucket, IRSA roles, and the IAM
policy documents they share."""
