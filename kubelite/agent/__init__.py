"""The node agent (kubelet): pod workers, status, probes, volumes, images, logs, CRI, containerd."""
