"""Stage 6, prediction: predicting one image (the path shared by rule predict and the segment command), a
shard of images, instances from the prediction, the predictions folder (writer and reader), and the model
bundle (writer and reader) with the segment command that applies it outside the pipeline."""
