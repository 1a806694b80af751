"""The segmentation model shared by train, score and report: the Spark ML pipeline and its parts."""
