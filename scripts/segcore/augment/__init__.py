"""Stage 3, augmentation: offline elastic and mirror copies of the training subset, class weights and
U-Net border weight maps."""
