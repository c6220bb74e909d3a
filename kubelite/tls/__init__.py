"""Certificates, keys and kubeconfig files shared by the server, the agent and the CLI."""
