"""Stage 3, the model: U-Net blocks, the config spec, the network, the model file (writer and reader), and
overlap-tile prediction with test-time augmentation (used by validation during training and by prediction)."""
