"""The user the rayproject/ray images run Ray as, which every cloud's shared storage is owned by."""

RAY_UID = 1000
# The rayproject/ray images create their `ray` user with uid 1000 and primary group 100
# (`users`). One gid everywhere (pods, the EFS access point, GCS FUSE mounts) keeps files the
# head writes readable by the workers and by the image's own user.
RAY_GID = 100
