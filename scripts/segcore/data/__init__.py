"""Stage 1, data: the canonical data folder (writer and reader), image files and mask encodings as tools
write them, importers, unlabelled image sets to segment, verified downloads and archives, the embedded
shapes generator, and the train/val/test split."""
