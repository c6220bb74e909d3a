"""Wire protocols shared by the API server and the node agent."""
