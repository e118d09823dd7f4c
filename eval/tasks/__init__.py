"""Evaluation tasks: local tasks from a corpus's held-out split, and OpenSeek's benchmark suite."""
