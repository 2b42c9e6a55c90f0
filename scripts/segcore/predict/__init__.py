"""Stage 6, prediction: predicting a shard of images, instances from the prediction, and the predictions
folder (writer and reader)."""
