"""Networks and how they learn: the architecture registry, the U-Net and U²-Net families,
losses and training.

Importing the package registers every family's architectures (as timm's model modules do),
so ``seg_core.models.registry.create_model(name)`` knows them all.
"""

from seg_core.models import blend, u2net, unet  # noqa: F401  (registrations)
