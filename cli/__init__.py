"""ray-platform's command line for data scientists: submit jobs to a stack's RayCluster."""
