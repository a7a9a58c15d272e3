"""Built-in workloads that need no download (each imports its heavy dependencies itself)."""
