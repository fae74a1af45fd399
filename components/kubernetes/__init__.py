"""Plain Kubernetes components (type tokens `ray-platform:kubernetes:*`): the shared volume and
the Job that hands its root to Ray's user; the labels every object carries (`labels.py`)."""
