"""Plain PyTorch proxy models (the DeepSpeed backend's model, Megatron-compatible state dicts)."""
