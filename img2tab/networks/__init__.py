"""Network architectures: StyleGAN2 (rosinality layout), e4e / pSp encoders, StyleSpace layout."""
