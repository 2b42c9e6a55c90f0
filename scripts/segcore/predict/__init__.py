"""Stage 6, prediction: predicting one image (the path shared by rule predict and the segment command), a
shard of test or inference-set images, instances from the prediction, the predictions folder (writer and
reader), an inference set's table and stacks (writer and reader), and the model bundle (writer and reader)
with the segment command that applies it outside the pipeline."""
