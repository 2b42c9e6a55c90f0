"""Stage 5, prediction: predicting a shard of images and the predictions folder (writer and reader)."""
