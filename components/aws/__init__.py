"""AWS components (type tokens `ray-platform:aws:*`): EFS, the S3 bucket, IRSA roles, the app
image's ECR repository, and the IAM policy documents they share."""
