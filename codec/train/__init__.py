"""The codec training recipe (EnCodec/audiocraft style): data, losses, discriminator, loss balancer, trainer."""
