"""Helpers the test tiers run on, kept apart from the dev-cluster runtime and the build inputs:
the program under Pulumi mocks (`pulumi_mocks`) and the manifest scanner (`scan`, its waivers and
its own locked environment in `scanner/`). They live under tools/, not tests/, because tools use
them and tools never import tests."""
