"""AWS: EKS lookups (`lookup`) and checks (`checks`), one module per concern (EFS `shared_fs`, S3
`bucket`, IRSA `identity`) composed by `adapter`, the `ray-platform:aws` block (`settings`)."""
