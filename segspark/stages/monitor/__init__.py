"""The monitor stage: who moved between segments from one snapshot to the next, and how far each snapshot's
features have drifted from the model's training snapshot."""
