"""Networks and how they learn: the architecture registry, builders, losses and training."""
