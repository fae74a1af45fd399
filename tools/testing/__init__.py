"""Helpers the test tiers run on, kept apart from the dev-cluster runtime and the build inputs:
the program under Pulumi mocks (`pulumi_mocks`), the manifest scanner (`scan`, its waivers and its
own locked environment in `scanner/`) and the submit tests' standalone MinIO and fake-gcs-server
(`bucket_servers`). They live under tools/, not tests/, because tools use them and tools never
import tests."""
