"""Stage 4, the model: U-Net blocks, the config spec, the network, the model file (writer and reader),
overlap-tile prediction with test-time augmentation (used by validation during training and by prediction),
and padding any side to a multiple of 2**depth for the net (used by training)."""
